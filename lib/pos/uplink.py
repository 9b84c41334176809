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
        self.base_path = "/v1/terminals/%s" % terminal_id
        # The heartbeat: a function giving "name=value;..." for the X-OneTill-Status header
        # (queue depth, oldest unsent age, DUKPT counter, free heap, reset cause, signal,
        # firmware), sent with every batch.
        self.status = None
        self._batch = bytearray(BATCH_BYTES)
        self.server_time = 0
        # What the back end holds for this terminal, from its last reply: the newest config
        # version, blacklist version and command id (pos.downlink fetches what is newer).
        self.versions = (0, 0, 0)
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
        ack = self._reply(status, body).get("ack")
        if not isinstance(ack, int) or ack > top or ack < 0:
            raise UplinkError("ack %r outside the batch" % (ack,))
        before = self.queue.unsent_count()
        if ack > self.queue.ack_watermark:
            self.queue.ack(ack)
        return before - self.queue.unsent_count()

    async def poll(self):
        """Ask the back end for its versions (and the time) without a batch: the heartbeat
        and the downlink of a terminal that has nothing to send. UplinkError on failure."""
        try:
            status, body = await asyncio.wait_for(
                self._request("GET", "versions", 0), self.timeout_s
            )
        except UplinkError:
            raise
        except Exception as exc:
            raise UplinkError("no answer: %r" % (exc,)) from None
        self._reply(status, body)

    def _reply(self, status, body):
        """The decoded JSON reply; its time and versions kept. UplinkError if it is not one."""
        if status != 200:
            raise UplinkError("back end answered %d" % status)
        try:
            reply = json.loads(body)
            self.server_time = int(reply.get("server_time", 0))
            versions = (
                reply.get("config", 0),
                reply.get("blacklist", 0),
                reply.get("commands", 0),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UplinkError("reply does not parse") from None
        for version in versions:
            if not isinstance(version, int) or version < 0:
                raise UplinkError("reply does not parse")
        self.versions = versions
        return reply

    async def connect(self):
        """(reader, writer) of a new connection to the back end."""
        if self.context is None:  # plain TCP: tests only, the device always pins a CA
            return await asyncio.open_connection(self.host, self.port)
        return await asyncio.open_connection(
            self.host, self.port, ssl=self.context, server_hostname=self.host
        )

    async def _post(self, size):
        return await self._request("POST", "records", size)

    async def _request(self, method, name, size, body=None):
        reader, writer = await self.connect()
        try:
            status = self.status() if self.status is not None else ""
            head = (
                "%s %s/%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\n"
                "X-OneTill-Status: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                % (method, self.base_path, name, self.host, status[:200], size)
            )
            writer.write(head.encode())
            if size:
                writer.write(memoryview(self._batch if body is None else body)[:size])
            await writer.drain()
            return await read_response(reader)
        finally:
            writer.close()
            await writer.wait_closed()

    async def send(self, name, body):
        """POST a small body (the fault log) to NAME under the terminal's path; UplinkError
        unless the back end answers 200."""
        try:
            status, _ = await asyncio.wait_for(
                self._request("POST", name, len(body), body), self.timeout_s
            )
        except UplinkError:
            raise
        except Exception as exc:
            raise UplinkError("no answer: %r" % (exc,)) from None
        if status != 200:
            raise UplinkError("back end answered %d" % status)


async def read_response(reader):
    """(status, body) of an HTTP/1.1 reply with Content-Length, within the size bounds."""
    status, length = await read_head(reader, MAX_BODY_BYTES)
    body = b""
    while len(body) < length:
        chunk = await reader.read(length - len(body))
        if not chunk:
            raise UplinkError("reply cut short")
        body += chunk
    return status, body


async def read_head(reader, max_body):
    """(status, Content-Length) of an HTTP/1.1 reply, the body left to read (at most
    max_body bytes: pos.downlink streams larger ones to a file)."""
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
    if length is None or length < 0 or length > max_body:
        raise UplinkError("reply body missing or too long")
    return status, length
