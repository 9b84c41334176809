"""What signing requests and checking replies cost the terminal, on the MicroPython unix
port (run by tools/bench uplink): heap kept, heap garbage and time per request."""

import gc
import time

from pos.contact import authenticate, head, reply, reply_tag
from pos.uplink import Uplink

HEARTBEAT = (
    "depth=10;oldest_s=12;counter=80;heap=8000;reset=power;rssi=-60;fw=0.1.0;cfg=1;bl=1;cmd=0"
)
KEY = b"link-key-bench16"


def main():
    import pos.link  # noqa: F401  # loaded by a contact's first head: code, not its garbage
    import pos.seal  # noqa: F401  # loaded on a terminal for its life (pos.journal's)

    uplink = Uplink(None, "127.0.0.1", 1, "T0001", None)
    uplink.status = lambda: HEARTBEAT
    batch = memoryview(bytearray(2048))
    gc.collect()
    free = gc.mem_free()  # pos.contact is loaded (Uplink): what is kept is its keys
    authenticate(uplink, KEY)
    gc.collect()
    print("uplink_auth_heap_kept_bytes: %d bytes" % (free - gc.mem_free()))
    body = b'{"ack":80,"stored":10,"duplicates":0,"quarantined":0,"refused":0,"config":1,'
    body += b'"blacklist":1,"commands":0,"server_time":1795000000}'
    rounds = 50
    gc.collect()
    gc.disable()
    allocated = gc.mem_alloc()
    head(uplink, "POST", "records", batch)
    tag = reply_tag(uplink._keys[1], uplink._request_tag, body)
    signing = gc.mem_alloc() - allocated
    allocated = gc.mem_alloc()
    reply(uplink, 200, body, tag.hex().encode())
    checking = gc.mem_alloc() - allocated
    gc.enable()
    print(
        "uplink_auth_garbage_bytes: %d bytes (sign %d, check %d)"
        % (signing + checking, signing, checking)
    )
    start = time.ticks_us()
    for _ in range(rounds):
        head(uplink, "POST", "records", batch)
    sign_us = time.ticks_diff(time.ticks_us(), start) // rounds
    tag = reply_tag(uplink._keys[1], uplink._request_tag, body).hex().encode()
    start = time.ticks_us()
    for _ in range(rounds):
        reply(uplink, 200, body, tag)
    check_us = time.ticks_diff(time.ticks_us(), start) // rounds
    print("uplink_auth_sign_us: %d us (a 2 KiB batch)" % sign_us)
    print("uplink_auth_check_us: %d us (a batch reply)" % check_us)
