"""pos.uplink against an HTTP server on loopback (plain TCP here; TLS is tested on CPython
against the real back end): every request is signed, only a reply tagged by the back end
for that request is acted on, and a bad, missing, forged or replayed answer changes
nothing."""

import asyncio
import struct
from binascii import hexlify, unhexlify
from hashlib import sha256

from expect import loopback_port, raises
from norflash import CutStore, NorFlash
from pos.compat import IS_MICROPYTHON, ticks_diff, ticks_ms
from pos.contact import (
    authenticate,
    head,
    link_keys,
    measure,
    reply_tag,
    send_frames,
    signed_message,
    sync,
)
from pos.seal import Cmac
from pos.txq import TxQueue
from pos.uplink import NONCE_FILE, NONCE_STEP, Uplink, UplinkError

PORT = loopback_port()
LINK_KEY = b"link-key-for-t01"
REQUEST_KEY, REPLY_KEY = link_keys(LINK_KEY)
_cmac = Cmac()


def queue_with(count):
    queue = TxQueue(NorFlash(4, sector_size=512))
    body = bytearray(44)
    for counter in range(1, count + 1):
        struct.pack_into(">I", body, 0, counter)
        queue.append(body)
    return queue


class Request:
    """One request as the fake back end saw it, and whether its signature checks."""

    def __init__(self, line, headers, body):
        self.method, self.path = line.split(b" ")[:2]
        self.headers, self.body = headers, body
        self.status = headers.get(b"x-onetill-status", b"")
        nonce, body_hash, tag = headers[b"x-onetill-auth"].split(b":")
        self.nonce, self.tag = int(nonce), unhexlify(tag)
        message = signed_message(
            self.method.decode(),
            self.path.decode(),
            self.nonce,
            unhexlify(body_hash),
            self.status.decode(),
        )
        expected = _cmac.digest(REQUEST_KEY, message)
        self.signed = bytes(expected) == self.tag and unhexlify(body_hash) == sha256(body).digest()


def tagged(status, body, request, key=REPLY_KEY, tag_of=None):
    """An HTTP reply whose X-OneTill-Reply tag binds it to `request` (or to `tag_of`)."""
    tag = reply_tag(key, request.tag if tag_of is None else tag_of, body)
    return b"HTTP/1.1 %d X\r\nX-OneTill-Reply: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        status,
        hexlify(tag),
        len(body),
        body,
    )


def run(reply, queue, uplink=None, port=PORT):
    """Start a one-shot server that answers reply(request), then sync once; returns
    (result or exception, requests seen)."""
    seen = []

    async def handle(reader, writer):
        line = await reader.readline()
        headers = {}
        while True:
            header = await reader.readline()
            if header in (b"\r\n", b""):
                break
            name, _, value = header.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get(b"content-length", b"0"))
        request = Request(line, headers, await reader.readexactly(length) if length else b"")
        seen.append(request)
        writer.write(reply(request))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    if uplink is None:
        uplink = Uplink(queue, "127.0.0.1", port, "T0001", None)
        authenticate(uplink, LINK_KEY)
    uplink.status = lambda: "depth=%d;fw=test" % queue.unsent_count()

    async def main():
        from pos.contact import sync  # the module loaded now (a test may have reloaded it)

        server = await asyncio.start_server(handle, "127.0.0.1", port)
        try:
            return await sync(uplink)
        except UplinkError as exc:
            return exc
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main()), seen


def test_acked_records_leave_the_queue():
    queue = queue_with(5)
    result, seen = run(lambda r: tagged(200, b'{"ack": 3, "server_time": 1795000000}', r), queue)
    assert result == 3
    assert seen[0].signed and seen[0].path == b"/v1/terminals/T0001/records"
    assert seen[0].status == b"depth=5;fw=test"  # the heartbeat rides with the batch
    assert len(seen[0].body) == 5 * 49  # the frames exactly as stored
    assert [c for c, _ in queue.unsent()] == [4, 5]


def test_a_reply_not_tagged_for_this_request_changes_nothing():
    ack = b'{"ack": 2, "server_time": 1795000000, "config": 7}'
    for reply in (
        lambda r: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(ack), ack),
        lambda r: tagged(200, ack, r, key=REQUEST_KEY),  # a key without the BDK behind it
        lambda r: tagged(200, ack, r, tag_of=bytes(16)),  # made for another request
        lambda r: tagged(200, b'{"ack": 1}', r)[:-10] + ack[-10:],  # body swapped after
    ):
        queue = queue_with(2)
        uplink = Uplink(queue, "127.0.0.1", PORT, "T0001", None)
        authenticate(uplink, LINK_KEY)
        result, _ = run(reply, queue, uplink)
        assert isinstance(result, UplinkError), result
        assert queue.unsent_count() == 2
        assert uplink.server_time == 0 and uplink.versions == (0, 0, 0, 0, 0, 0)


def test_a_replayed_reply_is_refused():
    queue = queue_with(3)
    uplink = Uplink(queue, "127.0.0.1", PORT, "T0001", None)
    authenticate(uplink, LINK_KEY)
    kept = []

    def first(request):
        kept.append(tagged(200, b'{"ack": 1}', request))
        return kept[0]

    result, seen = run(first, queue, uplink)
    assert result == 1
    result, again = run(lambda r: kept[0], queue, uplink)  # the same reply, word for word
    assert isinstance(result, UplinkError) and queue.unsent_count() == 2
    assert again[0].nonce == seen[0].nonce + 1 and again[0].tag != seen[0].tag


def test_the_contact_code_keeps_its_globals_tables_small():
    """pos.contact and pos.link are loaded at every contact, on a worn heap, and a module's
    globals table is one block: pos.contact's has 17 slots (272 bytes on the 64-bit port)
    for 13 to 17 names, 23 (368) for up to 23 and 29 (464) for up to 29; pos.link's 8 (128)
    for up to 8, and 10 (160) for 9 or 10. On MicroPython two of them are __name__ and
    __file__ (CPython has more such names of its own, and keeps const() names as globals
    too)."""
    import pos.contact
    import pos.link

    names = [
        name
        for name in dir(pos.contact)
        if not name.startswith("__") and name not in ("_TAG_SIZE", "_CHUNK")
    ]
    assert len(names) <= 15, names
    if IS_MICROPYTHON:
        assert len(pos.contact.__dict__) <= 17, sorted(pos.contact.__dict__)
        assert len(pos.link.__dict__) <= 8, sorted(pos.link.__dict__)


def test_the_protocol_is_loaded_at_start_and_the_link_let_go_before_the_reply():
    """The uplink's protocol (pos.contact) is loaded when the uplink is made, at start,
    while the heap is whole; pos.link by a request's head, never during its connection, and
    let go once the exchange is over, before the reply's tag (a cipher object of 320 bytes
    in one piece) is checked."""
    import sys

    from pos.compat import unload

    unload("contact")
    unload("link")
    queue = queue_with(2)
    uplink = Uplink(queue, "127.0.0.1", PORT, "T0001", None)
    assert "pos.contact" in sys.modules and "pos.link" not in sys.modules
    authenticate(uplink, LINK_KEY)
    uplink.status = lambda: "fw=test"
    head(uplink, "GET", "versions", b"")  # before its connection, as every request's
    assert "pos.link" in sys.modules
    unload("link")
    contact = sys.modules["pos.contact"]
    checked = contact.reply
    link_loaded = []

    def reply(*args):
        link_loaded.append("pos.link" in sys.modules)
        return checked(*args)

    contact.reply = reply
    try:
        result, seen = run(lambda r: tagged(200, b'{"ack": 2}', r), queue, uplink)
    finally:
        contact.reply = checked
    assert result == 2 and seen[0].signed
    assert link_loaded == [False]


def test_counter_is_reserved_in_the_store_and_never_reused():
    store = CutStore(NorFlash(2, sector_size=512))
    nonces = []
    for _ in range(3):  # three starts, a sync each: a power cut may come at any point
        queue = queue_with(1)
        uplink = Uplink(queue, "127.0.0.1", PORT, "T0001", None)
        authenticate(uplink, LINK_KEY, store)
        _, seen = run(lambda r: tagged(200, b'{"ack": 1}', r), queue, uplink)
        nonces.append(seen[0].nonce)
    assert nonces[0] < nonces[1] < nonces[2]
    assert int.from_bytes(store.read(NONCE_FILE), "big") >= nonces[2]
    writes = store.writes
    for _ in range(3):  # within a reservation, no flash write per request
        head(uplink, "GET", "versions", b"")
    assert store.writes == writes and NONCE_STEP > 3


def test_a_tagged_stale_answer_moves_the_counter_on():
    queue = queue_with(1)
    uplink = Uplink(queue, "127.0.0.1", PORT, "T0001", None)
    authenticate(uplink, LINK_KEY)
    result, _ = run(lambda r: tagged(401, b'{"last": 5000}', r), queue, uplink)
    assert isinstance(result, UplinkError) and "moved" in str(result)
    assert uplink.nonce == 5000
    result, seen = run(lambda r: tagged(200, b'{"ack": 1}', r), queue, uplink)
    assert result == 1 and seen[0].nonce == 5001
    # An untagged 401 (anyone can send one) moves nothing.
    queue = queue_with(1)
    uplink = Uplink(queue, "127.0.0.1", PORT, "T0001", None)
    authenticate(uplink, LINK_KEY)
    body = b'{"last": 90000}'
    result, _ = run(
        lambda r: b"HTTP/1.1 401 X\r\nContent-Length: 15\r\n\r\n" + body, queue, uplink
    )
    assert isinstance(result, UplinkError) and uplink.nonce == 1


def test_without_a_link_key_nothing_is_sent():
    queue = queue_with(1)
    uplink = Uplink(queue, "127.0.0.1", PORT, "T0001", None)
    authenticate(uplink, None)
    result, seen = run(lambda r: tagged(200, b'{"ack": 1}', r), queue, uplink)
    assert isinstance(result, UplinkError) and "link key" in str(result) and seen == []


def test_error_status_changes_nothing():
    queue = queue_with(2)
    result, _ = run(lambda r: tagged(500, b"oops", r), queue)
    assert isinstance(result, UplinkError) and "500" in str(result)
    assert queue.unsent_count() == 2


def test_malformed_replies_change_nothing():
    for reply in (
        lambda r: b"garbage\r\n\r\n",
        lambda r: tagged(200, b"not json", r),
        lambda r: tagged(200, b'{"no_ack": 1}', r),
        lambda r: tagged(200, b'{"ack": 9}', r),  # above anything sent
        lambda r: tagged(200, b'{"ack": 1}', r)[:-3],  # cut short
        lambda r: b"HTTP/1.1 200 OK\r\n\r\n{}",  # no length
    ):
        queue = queue_with(2)
        result, _ = run(reply, queue)
        assert isinstance(result, UplinkError), reply
        assert queue.unsent_count() == 2


def test_nothing_unsent_sends_nothing():
    queue = queue_with(1)
    queue.ack(1)
    result, seen = run(lambda r: tagged(200, b'{"ack": 1}', r), queue)
    assert result == 0 and seen == []  # no batch, no request


def test_no_server_is_a_clear_error():
    queue = queue_with(1)
    uplink = Uplink(queue, "127.0.0.1", PORT + 1, "T0001", None)
    authenticate(uplink, LINK_KEY)

    async def main():
        try:
            await sync(uplink)
        except UplinkError as exc:
            return exc

    result = asyncio.run(main())
    assert isinstance(result, UplinkError) and "no answer" in str(result)
    assert queue.unsent_count() == 1
    raises(ValueError, int, "x")  # expect works here too


def stalled_sync(answer, timeout_s=1):
    """Sync once against a server that reads the request's head, then calls
    answer(writer) and never closes; returns (result, milliseconds it took)."""
    queue = queue_with(1)
    uplink = Uplink(queue, "127.0.0.1", PORT, "T0001", None)
    authenticate(uplink, LINK_KEY)
    uplink.timeout_s = timeout_s
    held = []

    async def handle(reader, writer):
        held.append(writer)
        while await reader.readline() not in (b"\r\n", b""):
            pass
        try:
            await answer(writer)
        except (asyncio.CancelledError, OSError):  # the test is over: the server goes
            pass

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", PORT)
        began = ticks_ms()
        try:
            result = await sync(uplink)
        except UplinkError as exc:
            result = exc
        took = ticks_diff(ticks_ms(), began)
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
        return result, took

    result, took = asyncio.run(main())
    assert queue.unsent_count() == 1  # nothing acked
    return result, took


def test_a_back_end_that_never_answers_ends_the_sync_at_its_timeout():
    async def silent(writer):
        await asyncio.sleep(30)

    result, took = stalled_sync(silent)
    assert isinstance(result, UplinkError) and "timed out" in str(result).lower()
    assert took < 5000  # timeout_s is 1: it did not wait for the server's 30 s


def test_a_reply_trickled_a_line_at_a_time_still_ends_at_the_timeout():
    """One deadline for the whole exchange, not one per read: a server that keeps each
    read busy with a line now and then cannot hold the uplink (and its heap) for ever."""

    async def trickle(writer):
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(100):  # each line well within the timeout, the whole far beyond it
            writer.write(b"X-P: a\r\n")
            await writer.drain()
            await asyncio.sleep(0.2)

    result, took = stalled_sync(trickle)
    assert isinstance(result, UplinkError) and "timed out" in str(result).lower()
    assert took < 5000  # 100 lines at 0.2 s each would take 20 s


def test_a_head_line_without_end_is_refused_before_it_fills_the_heap():
    """A line of a reply's head is read up to 1 KiB (pos.link, on both runtimes): one that
    does not end is refused at once, not gathered until the deadline."""

    async def endless(writer):
        writer.write(b"HTTP/1.1 200 OK\r\nX-P: ")
        for _ in range(8):  # 8 KiB: a heap of 96 KiB would hold it, until the deadline
            writer.write(b"a" * 1024)
            await writer.drain()
        await asyncio.sleep(30)

    result, took = stalled_sync(endless, timeout_s=8)
    assert isinstance(result, UplinkError) and "timed out" not in str(result), result
    assert took < 6000  # refused, not timed out


def test_a_connection_whose_tls_cannot_start_is_closed():
    """The TLS wrapping fails (on the ESP32: no memory for mbedTLS): the error comes back
    and the connection is closed, not left open to the back end."""
    from pos.link import open_link

    class NoTls:
        def wrap_socket(self, *args, **kwargs):
            raise OSError("no memory for TLS")

        wrap_bio = wrap_socket  # what CPython's asyncio asks of a context

    async def main():
        ends = []

        async def handle(reader, writer):
            try:
                ends.append(await asyncio.wait_for(reader.read(1), 3))
            except Exception:  # asyncio's TimeoutError (a builtin on CPython only)
                ends.append("still open")
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", PORT)
        try:
            await open_link("127.0.0.1", PORT, NoTls(), 5)
            error = None
        except Exception as exc:
            error = exc
        for _ in range(400 if IS_MICROPYTHON else 0):  # the handler's answer, within 3 s
            if ends:
                break
            await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()
        return error, ends

    error, ends = asyncio.run(main())
    assert error is not None
    # The device's side: pos.link's own socket, closed at once. (CPython's side is asyncio's,
    # for the host only, where a real context does not fail so: it leaves the connection
    # to the collector.)
    if IS_MICROPYTHON:
        assert ends == [b""], ends


def test_a_long_reply_lets_the_other_tasks_run():
    """While a reply's bytes keep coming (a blacklist, a release), each read gives the
    other tasks (the keypad, the display) their turn."""
    from pos.link import open_link

    async def main():
        async def handle(reader, writer):
            writer.write(b"x" * 32768)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", PORT)
        ticks = [0]
        done = []

        async def ticker():
            while not done:
                ticks[0] += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        reader, writer = await open_link("127.0.0.1", PORT, None, 10)
        await asyncio.sleep(0.2)  # the whole reply waits in the socket
        ticks[0] = 0
        reads = 0
        while reads * 128 < 32768:
            await reader.readexactly(128)
            reads += 1
        done.append(1)
        writer.close()
        await writer.wait_closed()
        await task
        server.close()
        await server.wait_closed()
        return reads, ticks[0]

    reads, ticks = asyncio.run(main())
    assert reads == 256
    assert ticks >= reads // 2  # a turn for every read or two, not none until the end


def test_a_batch_is_sent_as_hashed_while_the_queue_is_read_in_between():
    """The batch goes out in pieces, read from the queue again; while a piece is written,
    whatever else runs (a sale, the status screen) may read the queue into the same buffer:
    what is sent is still exactly the frames its head was signed over."""
    queue = queue_with(30)
    uplink = Uplink(queue, "127.0.0.1", PORT, "T0001", None)

    class Writer:
        """The connection's writer, at the network's edge."""

        def __init__(self):
            self.sent = bytearray()
            self.drains = 0

        def write(self, data):
            self.sent += data

        async def drain(self):
            self.drains += 1
            for _ in queue.unsent():  # another reader of the queue, between two pieces
                pass

    frames, size, top, digest = measure(uplink)
    writer = Writer()
    asyncio.run(send_frames(uplink, writer, frames))
    assert frames == 30 and top == 30 and writer.drains >= 5
    assert len(writer.sent) == size
    assert sha256(writer.sent).digest() == digest
