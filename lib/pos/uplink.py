"""The uplink: sends unsent records to the back end over HTTPS and acks the queue.

A minimal HTTP/1.1 client on a pos.link connection: one POST per batch with Content-Length,
the reply read with bounded header and body sizes, strict parsing, and every step within
one timeout (TIMEOUT_S) of the connection's start.
TLS pins the back end's CA (DER), with CERT_REQUIRED and the host name checked; micropython-
lib's requests turns verification off, so it is not used. A reply that does not parse, or
an ack outside what was sent, changes nothing: the batch is simply sent again later.

Every request is signed, and every reply the terminal acts on is checked (TLS alone trusts
anyone holding the server's certificate, or a TLS-terminating proxy). The keys:

    request key = AES-128(link key, 0x13 x 16)    reply key = AES-128(link key, 0x14 x 16)

where the link key is /state/downlink.key, derived from the BDK and the IK ID
(pos.downlink.derive_downlink_key): the back end recomputes all three, nothing is
registered and no key is in its database. Two keys, so a reply tag is never a request tag.
The request header

    X-OneTill-Auth: NONCE:SHA256HEX:TAGHEX

carries a request counter (NONCE, decimal, above every one the back end has seen from this
terminal), the SHA-256 of the body (64 hex digits, of b"" when there is none) and
TAG = AES-CMAC(request key, signed_message(method, path, nonce, body hash, heartbeat)), 32
hex digits; the heartbeat is the X-OneTill-Status header exactly as sent. The back end
checks the tag and the counter before it reads the body, then the body against its hash.
Its reply carries

    X-OneTill-Reply: AES-CMAC(reply key, request tag | reply body), 32 hex digits

so a reply is bound to the request it answers: a replayed or forged reply changes nothing.
A 401 with a good reply tag and {"last": N} says the counter is behind (a lost counter
file, a copied terminal): the counter moves past N and the next request goes through.

The counter lives in /state/request.counter as a reservation: at start, and every
NONCE_STEP requests, the file is moved NONCE_STEP ahead before those counters are used, so
a power cut never reuses one and the flash sees one small write per NONCE_STEP requests.
"""

import json
from binascii import hexlify, unhexlify
from hashlib import sha256

from pos.compat import AES_ECB, aes, const, why
from pos.seal import Cmac

BATCH_BYTES = const(2048)  # about 40 records of 49 bytes on the wire
MAX_HEADER_BYTES = const(1024)
MAX_BODY_BYTES = const(512)
TIMEOUT_S = const(10)
NONCE_STEP = const(64)
NONCE_FILE = "request.counter"
_TAG_SIZE = const(16)
_CHUNK = const(256)  # a batch goes out in pieces of this many bytes (a TLS record each)


# The messages, "|" between them, in one bytes constant: each str literal longer than about
# 10 characters would be a heap object of its own for the terminal's life (about 40 bytes
# on the 64-bit port); split and decoded only when an error is raised.
_WHY = (
    b"no link key: provision this terminal again|"  # 0
    b"ack %r outside the batch|"  # 1
    b"back end answered %d|"  # 2
    b"back end answered %d, not tagged for this request|"  # 3
    b"reply does not parse|"  # 4
    b"request counter moved to %d|"  # 5
    b"no answer: %r|"  # 6
    b"reply cut short|"  # 7
    b"not an HTTP reply|"  # 8
    b"bad status line|"  # 9
    b"reply headers too long|"  # 10
    b"bad Content-Length|"  # 11
    b"reply body missing or too long"  # 12
)


class UplinkError(Exception):
    """A batch that did not get through; the message says why (for the fault log)."""


def link_keys(link_key):
    """(request key, reply key) of a terminal's 16-byte link key (its downlink key)."""
    derive = aes(bytes(link_key), AES_ECB)
    return derive.encrypt(b"\x13" * 16), derive.encrypt(b"\x14" * 16)


def signed_message(method, path, nonce, body_hash, status):
    """What a request tag covers: method, path with its query, the counter, the body's
    SHA-256 (32 bytes) and the heartbeat, in one unambiguous byte string."""
    return ("%s %s\n%d\n" % (method, path, nonce)).encode() + bytes(body_hash) + status.encode()


def tls_context(ca_der):
    """The TLS context that trusts only the back end's CA (DER), made by pos.link (loaded
    with it, and left loaded until the first contact ends)."""
    from pos.link import tls_context

    return tls_context(ca_der)


def reply_tag(reply_key, request_tag, body):
    """The back end's tag of a reply body, bound to the request's tag (16 bytes)."""
    return bytes(Cmac().digest(reply_key, bytes(request_tag) + bytes(body)))


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
        self.server_time = 0
        # What the back end holds for this terminal, from its last reply: the newest config
        # version, blacklist version and command id (pos.downlink fetches what is newer),
        # 1 when the back end sends the blacklist whole, the release on offer and the key
        # generation offered.
        self.versions = (0, 0, 0, 0, 0, 0)
        self.timeout_s = TIMEOUT_S
        self._keys = None  # (request key, reply key); None: not provisioned, nothing is sent
        self._store = None
        # The request in flight's tag (its reply must name it), filled in place: nothing a
        # request makes outlives it on the heap, where it would split the holes the next
        # connection needs.
        self._request_tag = bytearray(_TAG_SIZE)
        self.nonce = 0
        self._reserved = 0

    def authenticate(self, link_key, store=None):
        """Take the terminal's link key (/state/downlink.key) and the state store that
        keeps the request counter (None: the counter is kept in RAM only, for tests)."""
        if link_key is None or len(link_key) != 16:
            self._keys = None
            return
        self._keys = link_keys(link_key)
        self._store = store
        stored = store.read(NONCE_FILE) if store is not None else None
        # Counters up to the stored one may have been used: the first request reserves more.
        self.nonce = self._reserved = int.from_bytes(stored or b"", "big")

    def head(self, method, path, body, digest=None):
        """The request head for `path` under the terminal's base path, signed over the
        body (bytes or a memoryview; or, with `digest` its SHA-256 taken piece by piece, its
        length) and the heartbeat. UplinkError without a key."""
        keys = self._keys
        if keys is None:
            raise UplinkError(why(_WHY, 0))
        status = self.status()[:200] if self.status is not None else ""
        path = self.base_path + "/" + path
        self.nonce += 1
        if self.nonce > self._reserved:  # reserved in flash before it is used
            self._reserved = self.nonce + NONCE_STEP
            if self._store is not None:
                self._store.write(NONCE_FILE, self._reserved.to_bytes(4, "big"))
        if digest is None:
            body_hash, length = sha256(body).digest(), len(body)
        else:
            body_hash, length = digest, body
        # A Cmac of its own each time: nothing long-lived on the heap for it.
        tag = Cmac().digest(
            keys[0],
            signed_message(method, path, self.nonce, body_hash, status),
            self._request_tag,
        )
        # Made as bytes, not as a str then encoded: one block of about 600 bytes, not two.
        return (
            b"%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\n"
            b"X-OneTill-Status: %s\r\nX-OneTill-Auth: %d:%s:%s\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n"
            % (
                method.encode(),
                path.encode(),
                self.host.encode(),
                status.encode(),
                self.nonce,
                hexlify(body_hash),
                hexlify(tag),
                length,
            )
        )

    def _measure(self):
        """(frames, bytes, highest counter, SHA-256) of the batch: the oldest unsent frames
        that fit BATCH_BYTES, read from the queue (nothing is copied: _exchange reads them
        again as it sends them)."""
        digest = sha256()
        frames = size = top = 0
        for counter, frame in self.queue.unsent():
            if size + len(frame) > BATCH_BYTES:
                break
            digest.update(frame)
            size += len(frame)
            top = counter
            frames += 1
        return frames, size, top, digest.digest()

    async def sync(self):
        """Send one batch; returns the number of records acked (0 when nothing was unsent).
        Raises UplinkError when the batch did not get through."""
        frames, size, top, digest = self._measure()
        if not frames:
            return 0
        reply = await self._request("POST", "records", frames, size, digest)
        ack = reply.get("ack")
        if not isinstance(ack, int) or ack > top or ack < 0:
            raise UplinkError(why(_WHY, 1) % (ack,))
        before = self.queue.unsent_count()
        if ack > self.queue.ack_watermark:
            self.queue.ack(ack)
        return before - self.queue.unsent_count()

    async def poll(self):
        """Ask the back end for its versions (and the time) without a batch: the heartbeat
        and the downlink of a terminal that has nothing to send. UplinkError on failure."""
        await self._request("GET", "versions", b"")

    async def send(self, name, body):
        """POST a small body (the fault log) to NAME under the terminal's path; UplinkError
        unless the back end answers 200 with a good tag."""
        await self._request("POST", name, body)

    def _reply(self, status, body, tag):
        """The decoded JSON reply, its time and versions kept, once its tag proves that the
        back end made it for this request. UplinkError otherwise, and nothing changes."""
        if status not in (200, 401):
            raise UplinkError(why(_WHY, 2) % status)
        try:
            tag = unhexlify(tag) if tag else b""
        except ValueError:
            tag = b""
        expected = reply_tag(self._keys[1], self._request_tag, body)
        difference = len(tag) ^ _TAG_SIZE  # in constant time
        for i in range(min(len(tag), _TAG_SIZE)):
            difference |= tag[i] ^ expected[i]
        if difference:
            raise UplinkError(why(_WHY, 3) % status)
        try:
            reply = json.loads(body)
            if status == 401:
                last = reply["last"]
                if not isinstance(last, int) or last < 0 or last > 0xFFFFFFFF:
                    raise ValueError
            server_time = int(reply.get("server_time", 0))
            versions = (
                reply.get("config", 0),
                reply.get("blacklist", 0),
                reply.get("commands", 0),
                1 if reply.get("blacklist_whole") is True else 0,
                reply.get("release", 0),  # a release offered to this terminal (pos.update)
                reply.get("keys", 0),  # the key generation offered (pos.keyrot)
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UplinkError(why(_WHY, 4)) from None
        if status == 401:  # the counter is behind the back end's: move past it
            self.nonce = max(self.nonce, last)
            raise UplinkError(why(_WHY, 5) % last)
        for version in versions:
            if not isinstance(version, int) or version < 0:
                raise UplinkError(why(_WHY, 4))
        self.server_time = server_time
        if versions != self.versions:  # the same ones kept: no new tuple for the day
            self.versions = versions
        return reply

    async def connect(self, timeout_s=0):
        """(reader, writer) of a new connection to the back end: one pos.link Link, each
        step of it within timeout_s (the uplink's own when 0) of now. Plain TCP without a
        context: tests only, the device always pins a CA."""
        from pos.link import open_link  # loaded for a contact: pos.app unloads it after

        return await open_link(self.host, self.port, self.context, timeout_s or self.timeout_s)

    async def _request(self, method, name, body, size=0, digest=None):
        """The checked reply to a signed request (pos.uplink's docstring). The body is bytes,
        or a number of the oldest unsent frames: then `size` bytes with SHA-256 `digest`."""
        try:
            if digest is None:
                head = self.head(method, name, body)
            else:
                head = self.head(method, name, size, digest)
            reply = await self._exchange(head, body)  # within timeout_s (pos.link)
        except UplinkError:
            raise
        except Exception as exc:  # OSError, TLS errors, a timeout: the link is down
            raise UplinkError(why(_WHY, 6) % (exc,)) from None
        return self._reply(*reply)

    async def _send_frames(self, writer, count):
        """The batch: the oldest `count` unsent frames, the ones _measure hashed (a sale
        booked meanwhile only adds frames after them), read from the queue again and sent
        in pieces of up to _CHUNK bytes, so no 2 KiB buffer for it stays on the heap."""
        chunk = bytearray(_CHUNK)
        used = 0
        for _, frame in self.queue.unsent(count):
            if used + len(frame) > _CHUNK:
                # The frame is a view of the queue's read buffer, which whatever runs while
                # this waits (a booking, the status screen) may read into: copied first.
                frame = bytes(frame)
                # A copy: a writer may keep what it is given (CPython's TLS transport
                # does while its buffer is full), and the piece is reused.
                writer.write(bytes(memoryview(chunk)[:used]))
                await writer.drain()
                used = 0
            chunk[used : used + len(frame)] = frame
            used += len(frame)
        if used:
            writer.write(bytes(memoryview(chunk)[:used]))

    async def _exchange(self, head, body):
        reader, writer = await self.connect()
        try:
            writer.write(head)
            head = None
            await writer.drain()  # alone: joined to the batch's first piece it is a copy
            if isinstance(body, int):
                await self._send_frames(writer, body)
            elif len(body):
                writer.write(body)
            await writer.drain()
            return await read_response(reader)
        finally:
            writer.close()
            await writer.wait_closed()


async def read_response(reader):
    """(status, body, reply tag) of an HTTP/1.1 reply with Content-Length, within the
    size bounds."""
    status, length, tag = await read_head(reader, MAX_BODY_BYTES)
    body = b""
    while len(body) < length:
        chunk = await reader.read(length - len(body))
        if not chunk:
            raise UplinkError(why(_WHY, 7))
        body += chunk
    return status, body, tag


async def read_head(reader, max_body):
    """(status, Content-Length, X-OneTill-Reply value or None) of an HTTP/1.1 reply, the
    body left to read (at most max_body bytes: pos.downlink streams larger ones to a file)."""
    line = await reader.readline()
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise UplinkError(why(_WHY, 8))
    try:
        status = int(parts[1])
    except ValueError:
        raise UplinkError(why(_WHY, 9)) from None
    length = tag = None
    seen = len(line)
    while True:
        line = await reader.readline()
        seen += len(line)
        if seen > MAX_HEADER_BYTES:
            raise UplinkError(why(_WHY, 10))
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                raise UplinkError(why(_WHY, 11)) from None
        elif name == b"x-onetill-reply":
            tag = value.strip()
    if length is None or length < 0 or length > max_body:
        raise UplinkError(why(_WHY, 12))
    return status, length, tag
