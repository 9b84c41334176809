"""pos.keywrap: AES key unwrap against RFC 3394's own test vectors (section 4), on CPython and
MicroPython. Vectors copied as data from RFC 3394 (J. Schaad, R. Housley, "Advanced
Encryption Standard (AES) Key Wrap Algorithm", September 2002), sections 4.1, 4.3 and 4.6;
those with a 192-bit KEK (4.2, 4.4, 4.5) are left out: MicroPython's AES takes 128- and
256-bit keys only, and the terminal's KEK is 128 bits."""

from binascii import unhexlify

from expect import raises
from pos.keywrap import KeyWrapError, unwrap

KEK_128 = unhexlify("000102030405060708090A0B0C0D0E0F")
KEK_256 = unhexlify("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
DATA_128 = unhexlify("00112233445566778899AABBCCDDEEFF")
DATA_256 = unhexlify("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
# (KEK, key data, ciphertext): RFC 3394 sections 4.1, 4.3 and 4.6
VECTORS = (
    (KEK_128, DATA_128, "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"),
    (KEK_256, DATA_128, "64E8C3F9CE0F5BA263E9777905818A2A93C8191E7D6E8AE7"),
    (
        KEK_256,
        DATA_256,
        "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21",
    ),
)


def test_rfc3394_vectors_unwrap():
    for kek, data, wrapped in VECTORS:
        assert unwrap(kek, unhexlify(wrapped)) == data


def test_a_wrong_kek_or_an_altered_wrap_is_refused():
    wrapped = bytearray(unhexlify(VECTORS[0][2]))
    raises(KeyWrapError, unwrap, bytes(16), bytes(wrapped))
    for position in (0, 7, 8, 23):
        wrapped[position] ^= 1
        raises(KeyWrapError, unwrap, KEK_128, bytes(wrapped))
        wrapped[position] ^= 1
    assert unwrap(KEK_128, bytes(wrapped)) == DATA_128


def test_lengths_that_are_no_wrapped_key_are_refused():
    for size in (0, 8, 16, 25, 31):
        raises(KeyWrapError, unwrap, KEK_128, bytes(size))
