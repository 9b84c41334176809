"""Seal and open one record: AES-128-CBC with the data key, then an AES-CMAC tag.

A sealed body is   counter (4 bytes, big-endian) | ciphertext | tag (TAG_SIZE bytes)
and is what the queue stores and the uplink sends. The tag is AES-CMAC (NIST SP 800-38B,
RFC 4493) under the MAC key over counter | ciphertext (encrypt-then-MAC), truncated to 8
bytes. The CBC IV is zero: every data key comes from its own DUKPT transaction key and seals
exactly one record, so no key ever sees two messages under the same IV.

CMAC rather than HMAC-SHA256: it needs nothing but the AES block that both runtimes have, the
MAC-generation key's algorithm is AES-128 in DUKPT, and MicroPython has no hmac module.
"""

import struct
from os import urandom

from pos.compat import AES_CBC, AES_ECB, aes, const, why

TAG_SIZE = const(8)
_BLOCK = const(16)
_ZERO_IV = bytes(16)


# The messages, "|" between them, in one bytes constant: each str literal longer than about
# 10 characters would be a heap object of its own (about 35 bytes on the 64-bit port).
_WHY = (
    b"record must be a multiple of 16 bytes|"  # 0
    b"sealed body has the wrong size|"  # 1
    b"record tag does not match: wrong key or altered record|"  # 2
    b"device storage key must be 16 bytes|"  # 3
    b"sealed state has the wrong size|"  # 4
    b"sealed state does not match the storage key or was altered|"  # 5
    b"sealed state has a bad length"  # 6
)


class SealError(ValueError):
    """A body that does not open: wrong key, changed byte, or wrong size."""


class Cmac:
    """AES-CMAC with its working buffers allocated once."""

    def __init__(self):
        self._k1 = bytearray(_BLOCK)
        self._k2 = bytearray(_BLOCK)
        self._state = bytearray(_BLOCK)
        self._block = bytearray(_BLOCK)

    def digest(self, key, data, out=None):
        """Return the 16-byte CMAC of data under key (into out when given). key may also be
        an AES-ECB object, so a fixed key need not build a new one (and its garbage) each
        time: ECB keeps no state between calls."""
        cipher = key if hasattr(key, "encrypt") else aes(key, AES_ECB)
        state, block = self._state, self._block
        for i in range(_BLOCK):
            state[i] = 0
        cipher.encrypt(state, block)  # L = AES(K, 0)
        _double(block, self._k1)
        _double(self._k1, self._k2)
        length = len(data)
        full_blocks = (length - 1) // _BLOCK if length else 0
        offset = 0
        for _ in range(full_blocks):
            for i in range(_BLOCK):
                state[i] ^= data[offset + i]
            cipher.encrypt(state, state)
            offset += _BLOCK
        rest = length - offset
        if length and rest == _BLOCK:
            subkey = self._k1
            for i in range(_BLOCK):
                state[i] ^= data[offset + i] ^ subkey[i]
        else:
            subkey = self._k2
            for i in range(_BLOCK):
                if i < rest:
                    byte = data[offset + i]
                elif i == rest:
                    byte = 0x80
                else:
                    byte = 0
                state[i] ^= byte ^ subkey[i]
        if out is None:
            out = bytearray(_BLOCK)
        cipher.encrypt(state, out)
        return out


def _double(block, out):
    """Multiply by x in GF(2^128), the CMAC subkey step."""
    carry = block[0] >> 7
    for i in range(_BLOCK - 1):
        out[i] = (block[i] << 1 | block[i + 1] >> 7) & 0xFF
    out[_BLOCK - 1] = (block[_BLOCK - 1] << 1) & 0xFF
    if carry:
        out[_BLOCK - 1] ^= 0x87


class Sealer:
    """Seals and opens record bodies, reusing its buffers on the sale path."""

    def __init__(self):
        self._cmac = Cmac()
        self._tag = bytearray(_BLOCK)

    def body_size(self, plain_size):
        return 4 + plain_size + TAG_SIZE

    def seal(self, plain, counter, data_key, mac_key, out=None):
        """Encrypt plain (a multiple of 16 bytes) and tag it; returns the sealed body."""
        size = len(plain)
        if not size or size % _BLOCK:
            raise SealError(why(_WHY, 0))
        if out is None:
            out = bytearray(self.body_size(size))
        view = memoryview(out)
        struct.pack_into(">I", out, 0, counter)
        aes(data_key, AES_CBC, _ZERO_IV).encrypt(plain, view[4 : 4 + size])
        self._cmac.digest(mac_key, view[: 4 + size], self._tag)
        view[4 + size : 4 + size + TAG_SIZE] = memoryview(self._tag)[:TAG_SIZE]
        return out

    def open(self, body, data_key, mac_key):
        """Check the tag (in constant time), then decrypt; returns the plaintext."""
        size = len(body) - 4 - TAG_SIZE
        if size <= 0 or size % _BLOCK:
            raise SealError(why(_WHY, 1))
        view = memoryview(body)
        self._cmac.digest(mac_key, view[: 4 + size], self._tag)
        difference = 0
        for i in range(TAG_SIZE):
            difference |= self._tag[i] ^ view[4 + size + i]
        if difference:
            raise SealError(why(_WHY, 2))
        return aes(data_key, AES_CBC, _ZERO_IV).decrypt(view[4 : 4 + size])


class StateSealer:
    """Seals the terminal's own state files with the device storage key.

    blob = IV (16, random) | AES-CBC(length (2) | data | zero padding) | AES-CMAC (16)
    The CBC and CMAC keys are derived from the storage key (AES of two constant blocks), so
    one provisioned 16-byte key serves both. A fresh IV per write keeps two versions of a file
    from showing which parts stayed the same. Sealing works in place in the caller's buffer,
    so the sale path allocates nothing for it.
    """

    DATA_OFFSET = 18  # where the caller writes its data in the buffer handed to seal_into()

    def __init__(self, storage_key):
        if len(storage_key) != 16:
            raise SealError(why(_WHY, 3))
        derive = aes(storage_key, AES_ECB)
        self._data_key = derive.encrypt(b"\x01" * _BLOCK)
        self._mac_key = aes(derive.encrypt(b"\x02" * _BLOCK), AES_ECB)
        self._cmac = Cmac()
        self._tag = bytearray(_BLOCK)

    @staticmethod
    def blob_size(data_size):
        return _BLOCK + (2 + data_size + _BLOCK - 1) // _BLOCK * _BLOCK + _BLOCK

    def seal_into(self, buf, data_size):
        """buf[DATA_OFFSET : DATA_OFFSET + data_size] holds the data; seal it in place and
        return a memoryview of the blob (buf must hold blob_size(data_size) bytes)."""
        size = self.blob_size(data_size) - 2 * _BLOCK
        view = memoryview(buf)
        struct.pack_into(">H", buf, _BLOCK, data_size)
        for i in range(_BLOCK + 2 + data_size, _BLOCK + size):
            buf[i] = 0
        view[:_BLOCK] = urandom(_BLOCK)
        body = view[_BLOCK : _BLOCK + size]
        aes(self._data_key, AES_CBC, view[:_BLOCK]).encrypt(body, body)
        self._cmac.digest(self._mac_key, view[: _BLOCK + size], self._tag)
        view[_BLOCK + size : 2 * _BLOCK + size] = self._tag
        return view[: 2 * _BLOCK + size]

    def seal(self, data):
        buf = bytearray(self.blob_size(len(data)))
        buf[self.DATA_OFFSET : self.DATA_OFFSET + len(data)] = data
        return bytes(self.seal_into(buf, len(data)))

    def open_in_place(self, buf, blob_size):
        """Check and decrypt the blob held in buf[:blob_size] where it lies; returns
        (start, length) of the data within buf."""
        size = blob_size - 2 * _BLOCK
        if size <= 0 or size % _BLOCK or blob_size > len(buf):
            raise SealError(why(_WHY, 4))
        view = memoryview(buf)
        tag = self._cmac.digest(self._mac_key, view[: _BLOCK + size], self._tag)
        difference = 0
        for i in range(_BLOCK):
            difference |= tag[i] ^ view[_BLOCK + size + i]
        if difference:
            raise SealError(why(_WHY, 5))
        body = view[_BLOCK : _BLOCK + size]
        aes(self._data_key, AES_CBC, bytes(view[:_BLOCK])).decrypt(body, body)
        length = struct.unpack_from(">H", buf, _BLOCK)[0]
        if length > size - 2:
            raise SealError(why(_WHY, 6))
        return _BLOCK + 2, length

    def open(self, blob):
        """The data of a blob (a copy is opened, so blob may be read-only)."""
        buf = bytearray(blob)
        start, length = self.open_in_place(buf, len(buf))
        return bytes(buf[start : start + length])
