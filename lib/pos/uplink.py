"""The uplink: sends unsent records to the back end over HTTPS and acks the queue.

A minimal HTTP/1.1 client on asyncio streams: one POST per batch with Content-Length, the
reply read with bounded header and body sizes, strict parsing, and a timeout on every step.
TLS pins the back end's CA (DER), with CERT_REQUIRED and the host name checked; micropython-
lib's requests turns verification off, so it is not used. A reply that does not parse, or
an ack outside what was sent, changes nothing: the batch is simply sent again later.
"""

import asyncio
import json

from pos.compat import const

BATCH_BYTES = const(2048)  # about 40 records of 49 bytes on the wire
MAX_HEADER_BYTES = const(1024)
MAX_BODY_BYTES = const(512)
TIMEOUT_S = const(10)


class UplinkError(Exception):
    """A batch that did not get through; the message says why (for the fault log)."""


def tls_context(ca_der):
    """An SSLContext that trusts only the back end's CA and checks its certificate."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.verify_mode = ssl.CERT_REQUIRED  # MicroPython starts with CERT_NONE
    context.load_verify_locations(cadata=ca_der)
    return context


class Uplink:
    def __init__(self, queue, host, port, terminal_id, context):
        self.queue = queue
        self.host = host
        self.port = port
        self.context = context
        self._path = "/v1/terminals/%s/records" % terminal_id
        # The heartbeat: a function giving "name=value;..." for the X-OneTill-Status header
        # (queue depth, oldest unsent age, DUKPT counter, free heap, reset cause, signal,
        # firmware), sent with every batch.
        self.status = None
        self._batch = bytearray(BATCH_BYTES)
        self.server_time = 0
        self.timeout_s = TIMEOUT_S

    def _fill(self):
        """Copy the oldest unsent frames into the batch buffer; (size, highest counter)."""
        size = top = 0
        for counter, frame in self.queue.unsent():
            if size + len(frame) > BATCH_BYTES:
                break
            self._batch[size : size + len(frame)] = frame
            size += len(frame)
            top = counter
        return size, top

    async def sync(self):
        """Send one batch; returns the number of records acked (0 when nothing was unsent).
        Raises UplinkError when the batch did not get through."""
        size, top = self._fill()
        if not size:
            return 0
        try:
            status, body = await asyncio.wait_for(self._post(size), self.timeout_s)
        except UplinkError:
            raise
        except Exception as exc:  # OSError, TLS errors, a timeout: the link is down
            raise UplinkError("no answer: %r" % (exc,)) from None
        if status != 200:
            raise UplinkError("back end answered %d" % status)
        try:
            reply = json.loads(body)
            ack = reply["ack"]
            self.server_time = int(reply.get("server_time", 0))
        except (ValueError, KeyError, TypeError):
            raise UplinkError("reply does not parse") from None
        if not isinstance(ack, int) or ack > top or ack < 0:
            raise UplinkError("ack %r outside the batch" % (ack,))
        before = self.queue.unsent_count()
        if ack > self.queue.ack_watermark:
            self.queue.ack(ack)
        return before - self.queue.unsent_count()

    async def _post(self, size):
        if self.context is None:  # plain TCP: tests only, the device always pins a CA
            reader, writer = await asyncio.open_connection(self.host, self.port)
        else:
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.context, server_hostname=self.host
            )
        try:
            status = self.status() if self.status is not None else ""
            head = (
                "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\n"
                "X-OneTill-Status: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                % (self._path, self.host, status[:200], size)
            )
            writer.write(head.encode())
            writer.write(memoryview(self._batch)[:size])
            await writer.drain()
            return await read_response(reader)
        finally:
            writer.close()
            await writer.wait_closed()


async def read_response(reader):
    """(status, body) of an HTTP/1.1 reply with Content-Length, within the size bounds."""
    line = await reader.readline()
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise UplinkError("not an HTTP reply")
    try:
        status = int(parts[1])
    except ValueError:
        raise UplinkError("bad status line") from None
    length = None
    seen = len(line)
    while True:
        line = await reader.readline()
        seen += len(line)
        if seen > MAX_HEADER_BYTES:
            raise UplinkError("reply headers too long")
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                raise UplinkError("bad Content-Length") from None
    if length is None or length < 0 or length > MAX_BODY_BYTES:
        raise UplinkError("reply body missing or too long")
    body = b""
    while len(body) < length:
        chunk = await reader.read(length - len(body))
        if not chunk:
            raise UplinkError("reply cut short")
        body += chunk
    return status, body
