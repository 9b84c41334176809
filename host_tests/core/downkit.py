"""Test kit for pos.downlink: a one-shot HTTP server on loopback that answers a GET with a
document (the edge), and the documents themselves, sealed as the back end seals them."""

import json
from binascii import hexlify

from expect import loopback_port
from pos.cashiers import hash_pin

KEY = b"downlink-key-016"
OTHER_KEY = b"someone-elses-16"
PORT = loopback_port()


def http(status, body):
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n" % (status, len(body)) + body


def serve(replies, work, port=PORT):
    """Run `work()` (a coroutine function) while a server answers each request with the
    next of `replies`; returns (work's result, request lines seen)."""
    import asyncio  # here: the app tests that use this kit have no 4 KiB to spare for it

    seen = []
    replies = list(replies)

    async def handle(reader, writer):
        seen.append(await reader.readline())
        length = 0
        while True:
            line = await reader.readline()
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
            if line in (b"\r\n", b""):
                break
        if length:
            seen.append(await reader.readexactly(length))
        writer.write(replies.pop(0) if replies else http(404, b"none"))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        try:
            return await work()
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main()), seen


def merchants(name="Soup", max_sale=50000):
    return {
        "merchants": [
            {
                "number": 1,
                "merchant_id": "42",
                "name": name,
                "currency": "EUR",
                "limits": {"max_sale_minor": max_sale},
            }
        ]
    }


def cashiers(pin="1234", merchant=1):
    return {
        "pin_salt": "00" * 8,
        "pin_rounds": 5,
        "cashiers": [
            {
                "number": 1,
                "name": "Ana",
                "role": "cashier",
                "merchants": [merchant],
                "pin_hash": hexlify(hash_pin(pin, bytes(8), 5)).decode(),
            }
        ],
    }


def sealed(key, kind, version, payload):
    """A document sealed as the back end seals it. pos.downlink is imported here and let go
    after, as the app does: the app tests have no heap to keep it loaded."""
    from pos.compat import unload
    from pos.downlink import seal_document

    try:
        return seal_document(key, kind, version, payload)
    finally:
        seal_document = None
        unload("pos.downlink")


def config_document(version, key=KEY, says=None, **changes):
    """A sealed config document of `version` (whose payload says `says`, if given)."""
    doc = {"version": says or version, "merchants": merchants(), "cashiers": cashiers()}
    doc.update(changes)
    return sealed(key, "C", version, json.dumps(doc).encode())
