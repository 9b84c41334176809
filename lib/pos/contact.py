"""The uplink's protocol (pos.uplink's docstring): the signed request, the batch, the
checked reply. Its functions take the uplink's state (pos.uplink.Uplink):

    authenticate(uplink, link_key, store)   the keys, and the request counter's file
    await sync(uplink)                      one batch sent; the number of records acked
    await request(uplink, method, name, body)   the checked reply to a signed request
    head(uplink, method, name, body)        a request's signed head (pos.downlink, pos.update)

Loaded for a contact and unloaded by pos.app when the contact is over, as pos.link is:
between contacts the sales have its heap, and only the uplink's state (pos.uplink) stays
resident, with no methods of its own but the connection's seam.

Its globals are kept few, 17 with __name__ and __file__ (imports inside the functions that
need them; its errors made by _error): the module is loaded at every contact on a worn heap,
where its globals table is one block, of 17 slots (272 bytes on the 64-bit port) for 13 to
17 names, 23 (368 bytes) for 18 to 23 and 29 (464) for 24 to 29. test_uplink.py counts
them. Those imports are plain `import X` on the paths each request takes: on MicroPython a
`from X import Y` run in a function makes a small list of the names each time (garbage).
"""

from pos.compat import const

_TAG_SIZE = const(16)
_CHUNK = const(256)  # a batch goes out in pieces of this many bytes (a TLS record each)


# The messages, "|" between them, in one bytes constant: each str literal longer than about
# 10 characters would be a heap object of its own (about 40 bytes on the 64-bit port);
# split and decoded only when an error is raised.
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


def _error(index, args=()):
    """UplinkError with message `index` of _WHY, formatted with args when given."""
    from pos.compat import why
    from pos.uplink import UplinkError

    text = why(_WHY, index)
    return UplinkError(text % args if args else text)


def link_keys(link_key):
    """(request key, reply key) of a terminal's 16-byte link key (its downlink key)."""
    from pos.compat import AES_ECB, aes

    derive = aes(bytes(link_key), AES_ECB)
    return derive.encrypt(b"\x13" * 16), derive.encrypt(b"\x14" * 16)


def authenticate(uplink, link_key, store=None):
    """Give the uplink its terminal's link key (/state/downlink.key) and the state store
    that keeps the request counter (None: the counter is kept in RAM only, for tests). A
    key that is not 16 bytes leaves it unprovisioned: nothing is sent."""
    if link_key is None or len(link_key) != 16:
        uplink._keys = None
        return
    from pos.uplink import NONCE_FILE

    uplink._keys = link_keys(link_key)
    uplink._store = store
    stored = store.read(NONCE_FILE) if store is not None else None
    # Counters up to the stored one may have been used: the first request reserves more.
    uplink.nonce = uplink._reserved = int.from_bytes(stored or b"", "big")


def signed_message(method, path, nonce, body_hash, status):
    """What a request tag covers: method, path with its query, the counter, the body's
    SHA-256 (32 bytes) and the heartbeat, in one unambiguous byte string."""
    return ("%s %s\n%d\n" % (method, path, nonce)).encode() + bytes(body_hash) + status.encode()


def reply_tag(reply_key, request_tag, body):
    """The back end's tag of a reply body, bound to the request's tag (16 bytes)."""
    import pos.seal

    return bytes(pos.seal.Cmac().digest(reply_key, bytes(request_tag) + bytes(body)))


def head(uplink, method, path, body, digest=None):
    """The request head for `path` under the terminal's base path, signed over the body
    (bytes or a memoryview; or, with `digest` its SHA-256 taken piece by piece, its length)
    and the heartbeat. UplinkError without a key."""
    # The connection's code first, before the head's objects, so it takes the heap's lowest
    # holes; and never during a connection (the downlink's and an update's too), where it
    # could only take the heap that TLS has on the device (the simulator's TLS room).
    import pos.link  # noqa: F401

    keys = uplink._keys
    if keys is None:
        raise _error(0)
    import binascii
    import hashlib

    import pos.seal

    status = uplink.status()[:200] if uplink.status is not None else ""
    path = uplink.base_path + "/" + path
    uplink.nonce += 1
    if uplink.nonce > uplink._reserved:  # reserved in flash before it is used
        from pos.uplink import NONCE_FILE, NONCE_STEP

        uplink._reserved = uplink.nonce + NONCE_STEP
        if uplink._store is not None:
            uplink._store.write(NONCE_FILE, uplink._reserved.to_bytes(4, "big"))
    if digest is None:
        body_hash, length = hashlib.sha256(body).digest(), len(body)
    else:
        body_hash, length = digest, body
    # A Cmac of its own each time: nothing long-lived on the heap for it.
    tag = pos.seal.Cmac().digest(
        keys[0],
        signed_message(method, path, uplink.nonce, body_hash, status),
        uplink._request_tag,
    )
    # Made as bytes, not as a str then encoded: one block of about 600 bytes, not two.
    return (
        b"%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\n"
        b"X-OneTill-Status: %s\r\nX-OneTill-Auth: %d:%s:%s\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n"
        % (
            method.encode(),
            path.encode(),
            uplink.host.encode(),
            status.encode(),
            uplink.nonce,
            binascii.hexlify(body_hash),
            binascii.hexlify(tag),
            length,
        )
    )


def measure(uplink):
    """(frames, bytes, highest counter, SHA-256) of the batch: the oldest unsent frames
    that fit BATCH_BYTES, read from the queue (nothing is copied: exchange reads them again
    as it sends them)."""
    import hashlib

    import pos.uplink

    batch_bytes = pos.uplink.BATCH_BYTES
    digest = hashlib.sha256()
    frames = size = top = 0
    for counter, frame in uplink.queue.unsent():
        if size + len(frame) > batch_bytes:
            break
        digest.update(frame)
        size += len(frame)
        top = counter
        frames += 1
    return frames, size, top, digest.digest()


async def sync(uplink):
    """Send one batch; returns the number of records acked (0 when nothing was unsent).
    Raises UplinkError when the batch did not get through."""
    frames, size, top, digest = measure(uplink)
    if not frames:
        return 0
    answer = await request(uplink, "POST", "records", frames, size, digest)
    ack = answer.get("ack")
    if not isinstance(ack, int) or ack > top or ack < 0:
        raise _error(1, (ack,))
    queue = uplink.queue
    before = queue.unsent_count()
    if ack > queue.ack_watermark:
        queue.ack(ack)
    return before - queue.unsent_count()


def reply(uplink, status, body, tag):
    """The decoded JSON reply, its time and versions kept, once its tag proves that the
    back end made it for this request. UplinkError otherwise, and nothing changes."""
    import binascii
    import json

    if status not in (200, 401):
        raise _error(2, (status,))
    try:
        tag = binascii.unhexlify(tag) if tag else b""
    except ValueError:
        tag = b""
    expected = reply_tag(uplink._keys[1], uplink._request_tag, body)
    difference = len(tag) ^ _TAG_SIZE  # in constant time
    for i in range(min(len(tag), _TAG_SIZE)):
        difference |= tag[i] ^ expected[i]
    if difference:
        raise _error(3, (status,))
    try:
        answer = json.loads(body)
        if status == 401:
            last = answer["last"]
            if not isinstance(last, int) or last < 0 or last > 0xFFFFFFFF:
                raise ValueError
        server_time = int(answer.get("server_time", 0))
        versions = (
            answer.get("config", 0),
            answer.get("blacklist", 0),
            answer.get("commands", 0),
            1 if answer.get("blacklist_whole") is True else 0,
            answer.get("release", 0),  # a release offered to this terminal (pos.update)
            answer.get("keys", 0),  # the key generation offered (pos.keyrot)
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _error(4) from None
    if status == 401:  # the counter is behind the back end's: move past it
        uplink.nonce = max(uplink.nonce, last)
        raise _error(5, (last,))
    for version in versions:
        if not isinstance(version, int) or version < 0:
            raise _error(4)
    uplink.server_time = server_time
    if versions != uplink.versions:  # the same ones kept: no new tuple for the day
        uplink.versions = versions
    return answer


async def request(uplink, method, name, body, size=0, digest=None):
    """The checked reply to a signed request (pos.uplink's docstring) to NAME under the
    terminal's path; UplinkError unless the back end answers 200 with a good tag. The body
    is bytes, or a number of the oldest unsent frames: then `size` bytes with SHA-256
    `digest`. A GET of "versions" with no body is the heartbeat and the downlink's poll of
    a terminal with nothing to send."""
    # head() loads pos.link; it is unloaded before the reply's tag is checked, so the
    # reply's cipher object (320 bytes in one piece) finds the hole the request's had
    # (README "Memory").
    import pos.compat
    import pos.uplink

    try:
        answer = await exchange(  # within timeout_s (pos.link)
            uplink,
            head(uplink, method, name, body)
            if digest is None
            else head(uplink, method, name, size, digest),
            body,
        )
    except pos.uplink.UplinkError:
        raise
    except Exception as exc:  # OSError, TLS errors, a timeout: the link is down
        raise _error(6, (exc,)) from None
    pos.compat.unload("link")  # pos.app unloads it too, when a contact fails or fetches more
    return reply(uplink, *answer)


async def send_frames(uplink, writer, count):
    """The batch: the oldest `count` unsent frames, the ones measure hashed (a sale booked
    meanwhile only adds frames after them), read from the queue again and sent in pieces of
    up to _CHUNK bytes, so no 2 KiB buffer for it stays on the heap. Each piece is a view
    of the one buffer, not a copy: a writer has sent or copied what it was given once its
    drain returns (pos.link; its CPython side copies, as asyncio's transport keeps what it
    is given)."""
    chunk = bytearray(_CHUNK)
    used = 0
    for _, frame in uplink.queue.unsent(count):
        if used + len(frame) > _CHUNK:
            # The frame is a view of the queue's read buffer, which whatever runs while
            # this waits (a booking, the status screen) may read into: copied first.
            frame = bytes(frame)
            writer.write(memoryview(chunk)[:used])
            await writer.drain()
            used = 0
        chunk[used : used + len(frame)] = frame
        used += len(frame)
    if used:
        writer.write(memoryview(chunk)[:used])  # drained by exchange


async def exchange(uplink, signed, body):
    """(status, body, reply tag) of one request: its head `signed`, then its body."""
    reader, writer = await uplink.connect()
    try:
        writer.write(signed)
        signed = None
        await writer.drain()  # alone: joined to the batch's first piece it is a copy
        if isinstance(body, int):
            await send_frames(uplink, writer, body)
        elif len(body):
            writer.write(body)
        await writer.drain()
        # The reply: its head, then its body (Content-Length, within the size bounds).
        import pos.uplink

        status, length, tag = await read_head(reader, pos.uplink.MAX_BODY_BYTES)
        body = b""
        while len(body) < length:
            chunk = await reader.read(length - len(body))
            if not chunk:
                raise _error(7)
            body += chunk
        return status, body, tag
    finally:
        writer.close()
        await writer.wait_closed()


async def read_head(reader, max_body):
    """(status, Content-Length, X-OneTill-Reply value or None) of an HTTP/1.1 reply, the
    body left to read (at most max_body bytes: pos.downlink streams larger ones to a file)."""
    import pos.uplink

    line = await reader.readline()
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise _error(8)
    try:
        status = int(parts[1])
    except ValueError:
        raise _error(9) from None
    length = tag = None
    seen = len(line)
    while True:
        line = await reader.readline()
        seen += len(line)
        if seen > pos.uplink.MAX_HEADER_BYTES:
            raise _error(10)
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                raise _error(11) from None
        elif name == b"x-onetill-reply":
            tag = value.strip()
    if length is None or length < 0 or length > max_body:
        raise _error(12)
    return status, length, tag
