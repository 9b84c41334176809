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
