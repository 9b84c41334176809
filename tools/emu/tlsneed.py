"""The heap TLS takes on the unix port, for tools/bench heap.

    mp_boot.py IMAGE APP_HEAP tlsneed STATE PORT ROOM

makes the terminal's TLS context (pos.uplink.tls_context with the CA of STATE's back end)
and prints "CONTEXT N" (the bytes it holds), then fills the heap so that only a room of
ROOM bytes at its top is free, and in that room connects over TLS to the simulator's back
end at 127.0.0.1:PORT, sends a request and reads the reply: "OK" when the back end
answered. On the unix port mbedTLS allocates from the MicroPython heap, on the ESP32 from
ESP-IDF's own, so the bench gives the firmware its context and the lowest room that passes
(found by bisection) on top of its app heap, and the simulator keeps that room for TLS's
connections (tools/emu/simboard.py, TlsRoom). The room also holds the exchange's few Python
objects (its Link and the TLS socket object, pos.link), which on the device are the app's:
the figure errs on TLS's side by those.
"""

import gc


def main(argv):
    from simboard import TlsRoom

    from pos.compat import run  # the app's scheduler
    from pos.link import open_link  # its code is the app's on the device
    from pos.uplink import tls_context

    state, port, room_size = argv[0], int(argv[1]), int(argv[2])
    with open(state + "/backend/ca.der", "rb") as source:
        ca_der = source.read()
    gc.collect()
    free = gc.mem_free()
    context = tls_context(ca_der)
    gc.collect()
    print("CONTEXT %d" % (free - gc.mem_free()))
    ca_der = None

    async def exchange():
        reader, writer = await open_link("127.0.0.1", port, context, 10)  # as the app does
        writer.write(b"GET /v1/health HTTP/1.0\r\n\r\n")
        await writer.drain()
        answer = await reader.read(64)
        writer.close()
        await writer.wait_closed()
        return answer

    # The room at the top of the heap, as the simulator holds it, then everything below it
    # taken.
    room = TlsRoom(room_size)
    full = None
    for size in (4096, 1024, 256, 64, 16, 1):
        while True:
            try:
                full = (full, bytearray(size))
            except MemoryError:
                break
    room.release()
    try:
        answer = run(exchange())
    except MemoryError:
        answer = None
    full = None
    if answer:
        print("OK")
