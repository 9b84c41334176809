"""pos.compat's CPython side: the same names as MicroPython's, for the host and its tests.
Never imported on the device."""

import time as _time
from binascii import crc32  # noqa: F401  (re-exported)

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

AES_ECB = 1  # as in pos.compat, which cannot be imported from here (it imports this)
AES_CBC = 2

_TICKS_PERIOD = 1 << 30  # as on the ESP32 (the 64-bit unix port wraps at 2**62)
_TICKS_HALF = _TICKS_PERIOD // 2


def const(value):
    return value


def ticks_ms():
    return int(_time.monotonic() * 1000) & (_TICKS_PERIOD - 1)


def ticks_add(ticks, delta):
    return (ticks + delta) & (_TICKS_PERIOD - 1)


def ticks_diff(end, start):
    # Signed difference in the wrapped tick space, as MicroPython defines it.
    return ((end - start + _TICKS_HALF) & (_TICKS_PERIOD - 1)) - _TICKS_HALF


def collect_every(nbytes):
    """MicroPython's byte threshold for a collection; CPython's heap is not the device's."""


def mem_free():
    return -1  # CPython has no fixed heap to report


async def sleep_ms(ms):
    import asyncio

    await asyncio.sleep(ms / 1000)


_running = []  # run()'s main task, and an error that ended it


def spawn(coro):
    """A task of run()'s; an error in it ends run() with it, as on MicroPython."""
    import asyncio

    asyncio.get_running_loop().create_task(coro).add_done_callback(_ended)


def _ended(task):
    if not task.cancelled() and task.exception() is not None and _running:
        _running.append(task.exception())
        _running[0].cancel()


def run(main):
    """Run main and the tasks it spawns until main returns (its value): asyncio's loop,
    as pos.compat's run on MicroPython."""
    import asyncio

    async def watched():
        _running[:] = [asyncio.current_task()]
        return await main

    try:
        return asyncio.run(watched())
    except asyncio.CancelledError:
        if len(_running) > 1:
            raise _running[1] from None
        raise
    finally:
        _running.clear()


class aes:
    """A work-alike of MicroPython's cryptolib.aes with the same rules and errors.

    ECB (1) and CBC (2) only; 16- or 32-byte keys; data in 16-byte multiples; one object
    either encrypts or decrypts, never both; in CBC the chaining value carries over
    from one call to the next.
    """

    def __init__(self, key, mode, iv=None):
        if len(key) not in (16, 32):
            raise ValueError("key")
        if mode == AES_ECB:
            chosen = modes.ECB()
        elif mode == AES_CBC:
            if iv is None or len(iv) != 16:
                raise ValueError("IV")
            chosen = modes.CBC(bytes(iv))
        else:
            raise ValueError("mode")
        self._cipher = Cipher(algorithms.AES(bytes(key)), chosen)
        self._context = None
        self._encrypting = None

    def _run(self, encrypting, data, out):
        if len(data) % 16:
            raise ValueError("blksize % 16")
        if self._encrypting is None:
            self._encrypting = encrypting
            if encrypting:
                self._context = self._cipher.encryptor()
            else:
                self._context = self._cipher.decryptor()
        elif self._encrypting != encrypting:
            raise ValueError("can't encrypt & decrypt")
        result = self._context.update(bytes(data))
        if out is None:
            return result
        out[: len(result)] = result
        return out

    def encrypt(self, data, out=None):
        return self._run(True, data, out)

    def decrypt(self, data, out=None):
        return self._run(False, data, out)


# The link to the back end (pos.link's CPython side): asyncio's streams, each step under
# asyncio.wait_for with what is left of the connection's time.


def tls_context(ca_der):
    """A client context that trusts only the back end's CA (DER) and checks its
    certificate and host name."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=ca_der)
    return context


async def open_link(host, port, context, timeout_s):
    import asyncio

    end = _time.monotonic() + timeout_s
    # A line read of at most 1 KiB, as on MicroPython (pos.link's _LINE_MAX).
    if context is None:  # plain TCP: tests only
        opening = asyncio.open_connection(host, port, limit=1024)
    else:
        opening = asyncio.open_connection(
            host, port, ssl=context, server_hostname=host, limit=1024
        )
    try:
        reader, writer = await asyncio.wait_for(opening, timeout_s)
    except TimeoutError:
        raise OSError("timed out") from None
    link = _Link(reader, writer, end)
    return link, link


class _Link:
    def __init__(self, reader, writer, end):
        self._reader, self._writer, self._end = reader, writer, end

    async def _within(self, step):
        import asyncio

        try:
            result = await asyncio.wait_for(step, max(0.0, self._end - _time.monotonic()))
        except TimeoutError:
            raise OSError("timed out") from None  # as MicroPython's side says it
        await asyncio.sleep(0)  # the other tasks' turn, as on MicroPython, data or not
        return result

    def write(self, data):
        # A copy: asyncio's transport keeps what it is given while its buffer is full, and
        # the core reuses its pieces once drain returns (pos.contact.send_frames).
        self._writer.write(bytes(data))

    async def drain(self):
        await self._within(self._writer.drain())

    async def read(self, n):
        return await self._within(self._reader.read(n))

    async def readexactly(self, n):
        return await self._within(self._reader.readexactly(n))

    async def readline(self):
        return await self._within(self._reader.readline())

    def close(self):
        self._writer.close()

    async def wait_closed(self):
        # As on MicroPython, where closing never waits: an exchange done in time does not
        # fail, nor does an error already on its way get hidden, because the close took the
        # last of the time (a second at most, whatever is left).
        import asyncio

        try:
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)
        except (TimeoutError, OSError):
            pass
