"""AES key unwrap (RFC 3394; NIST SP 800-38F's KW): how a new key reaches the terminal.

The back end wraps with the `cryptography` package's aes_key_wrap; the terminal only ever
unwraps, so only that half is here. Loaded with a key rotation document (pos.keyrot) and
unloaded after it: no heap while the terminal sells.

A wrapped key is n + 1 blocks of 8 bytes (n >= 2): the integrity register A, then the key's
n blocks, mixed by 6n AES steps. Unwrapping runs them backwards; the key is given out only
if A comes back as RFC 3394's initial value A6A6A6A6A6A6A6A6 (compared in constant time),
so a wrong KEK or an altered wrap is refused, never a wrong key used.
"""

from pos.compat import AES_ECB, aes


class KeyWrapError(ValueError):
    """A wrapped key that does not unwrap under this KEK (wrong key, altered, bad length)."""


def unwrap(kek, wrapped):
    """The key data inside `wrapped` (bytes), or KeyWrapError."""
    size = len(wrapped)
    if size < 24 or size % 8:
        raise KeyWrapError("a wrapped key is 24 bytes or more, in 8-byte blocks")
    blocks = size // 8 - 1
    cipher = aes(bytes(kek), AES_ECB)
    data = bytearray(wrapped)  # A, then R[1..n]: unwrapped in place
    block = bytearray(16)
    for step in range(5, -1, -1):
        for index in range(blocks, 0, -1):
            block[0:8] = data[0:8]
            at = index * 8
            block[8:16] = data[at : at + 8]
            counter = blocks * step + index  # t, XORed into A's low bytes
            position = 7
            while counter:
                block[position] ^= counter & 0xFF
                counter >>= 8
                position -= 1
            cipher.decrypt(block, block)
            data[0:8] = block[0:8]
            data[at : at + 8] = block[8:16]
    difference = 0
    for i in range(8):
        difference |= data[i] ^ 0xA6
    key = bytes(data[8:])
    for i in range(size):  # the unwrapped copy goes, whatever the outcome
        data[i] = 0
    for i in range(16):
        block[i] = 0
    if difference:
        raise KeyWrapError("the wrapped key does not unwrap: another KEK, or altered")
    return key
