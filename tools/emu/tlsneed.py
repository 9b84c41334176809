"""The heap a TLS exchange with the back end takes on the unix port, for tools/bench heap.

    mp_boot.py IMAGE APP_HEAP tlsneed STATE PORT 0|1

connects to the simulator's back end at 127.0.0.1:PORT, sends a request and reads the
reply: over TLS with the terminal's CA (pos.uplink.tls_context, as the uplink does) with
1, over plain TCP with 0 (the back end, which speaks only TLS, then closes), and prints
"OK" when the exchange is over: with 1, only when the back end answered. The lowest APP_HEAP at
which each passes differs by what TLS itself takes (mbedTLS's context, the CA, the
handshake and record buffers): on the unix port mbedTLS allocates from the MicroPython
heap, on the ESP32 from ESP-IDF's own, so the bench gives the firmware exactly that much on
top of its app heap, and no more (a larger allowance would lend the app heap it does not
have on the device).
"""

import asyncio


def main(argv):
    from pos.uplink import tls_context  # in both runs: its code is the app's on the device

    state, port, tls = argv[0], int(argv[1]), argv[2] == "1"
    context = None
    if tls:
        with open(state + "/backend/ca.der", "rb") as source:
            context = tls_context(source.read())

    async def exchange():
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost" if tls else None
        )
        writer.write(b"GET /v1/health HTTP/1.0\r\n\r\n")
        await writer.drain()
        answer = await reader.read(64)
        writer.close()
        await writer.wait_closed()
        return answer

    if asyncio.run(exchange()) or not tls:
        print("OK")
