"""pos.uplink against a real HTTP server on loopback (plain TCP here; TLS is tested on
CPython against the real back end): acks only what the back end answers, and a bad or
missing answer changes nothing."""

import asyncio
import struct

from expect import loopback_port, raises
from norflash import NorFlash
from pos.txq import TxQueue
from pos.uplink import Uplink, UplinkError

PORT = loopback_port()


def queue_with(count):
    queue = TxQueue(NorFlash(4, sector_size=512))
    body = bytearray(44)
    for counter in range(1, count + 1):
        struct.pack_into(">I", body, 0, counter)
        queue.append(body)
    return queue


def run(reply, queue, port=PORT):
    """Start a one-shot server that answers `reply` (bytes, or a function of the request
    body), then sync once; returns (result or exception, request body seen)."""
    seen = []

    async def handle(reader, writer):
        length = 0
        while True:
            line = await reader.readline()
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
            if line.lower().startswith(b"x-onetill-status:"):
                seen.append(line.split(b":", 1)[1].strip())
            if line in (b"\r\n", b""):
                break
        body = await reader.readexactly(length) if length else b""
        seen.append(body)
        writer.write(reply(body) if callable(reply) else reply)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        uplink = Uplink(queue, "127.0.0.1", port, "T0001", None)
        uplink.status = lambda: "depth=%d;fw=test" % queue.unsent_count()
        try:
            return await uplink.sync()
        except UplinkError as exc:
            return exc
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main()), seen


def http(status, body):
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)


def test_acked_records_leave_the_queue():
    queue = queue_with(5)
    result, seen = run(http(200, b'{"ack": 3, "server_time": 1795000000}'), queue)
    assert result == 3
    assert seen[0] == b"depth=5;fw=test"  # the heartbeat rides with the batch
    assert len(seen[1]) == 5 * 49  # the frames exactly as stored
    assert [c for c, _ in queue.unsent()] == [4, 5]


def test_error_status_changes_nothing():
    queue = queue_with(2)
    result, _ = run(http(500, b"oops"), queue)
    assert isinstance(result, UplinkError) and "500" in str(result)
    assert queue.unsent_count() == 2


def test_malformed_replies_change_nothing():
    for reply in (
        b"garbage\r\n\r\n",
        http(200, b"not json"),
        http(200, b'{"no_ack": 1}'),
        http(200, b'{"ack": 9}'),  # above anything sent
        b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"ack": 1}',  # cut short
        b"HTTP/1.1 200 OK\r\n\r\n{}",  # no length
    ):
        queue = queue_with(2)
        result, _ = run(reply, queue)
        assert isinstance(result, UplinkError), reply
        assert queue.unsent_count() == 2


def test_nothing_unsent_sends_nothing():
    queue = queue_with(1)
    queue.ack(1)
    result, seen = run(http(200, b'{"ack": 1}'), queue)
    assert result == 0 and seen == []  # no batch, no request


def test_no_server_is_a_clear_error():
    queue = queue_with(1)
    uplink = Uplink(queue, "127.0.0.1", PORT + 1, "T0001", None)

    async def main():
        try:
            await uplink.sync()
        except UplinkError as exc:
            return exc

    result = asyncio.run(main())
    assert isinstance(result, UplinkError) and "no answer" in str(result)
    assert queue.unsent_count() == 1
    raises(ValueError, int, "x")  # expect works here too
