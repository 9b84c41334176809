"""pos.seal: AES-CMAC known answers (RFC 4493) and sealing that refuses any change."""

from binascii import unhexlify

from expect import raises
from pos.readout import body_counter
from pos.seal import TAG_SIZE, Cmac, Sealer, SealError

# RFC 4493 (AES-CMAC), section 4: key, message prefixes of 0, 16, 40 and 64 bytes.
RFC4493_KEY = unhexlify("2b7e151628aed2a6abf7158809cf4f3c")
RFC4493_MESSAGE = unhexlify(
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710"
)
RFC4493_TAGS = (
    (0, "bb1d6929e95937287fa37d129b756746"),
    (16, "070a16b46b4d4144f79bdd9dd04a287c"),
    (40, "dfa66747de9ae63030ca32611497c827"),
    (64, "51f0bebf7e3b9d92fc49741779363cfe"),
)

DATA_KEY = unhexlify("000102030405060708090a0b0c0d0e0f")
MAC_KEY = unhexlify("f0e0d0c0b0a090807060504030201000")
PLAIN = bytes(range(32))


def test_cmac_rfc4493_vectors():
    cmac = Cmac()
    for length, tag in RFC4493_TAGS:
        assert bytes(cmac.digest(RFC4493_KEY, RFC4493_MESSAGE[:length])) == unhexlify(tag)


def test_cmac_reuses_buffers_across_calls():
    cmac = Cmac()
    out = bytearray(16)
    first = bytes(cmac.digest(RFC4493_KEY, RFC4493_MESSAGE[:40], out))
    cmac.digest(RFC4493_KEY, RFC4493_MESSAGE[:16], out)
    assert first == unhexlify(RFC4493_TAGS[2][1])


def test_seal_then_open():
    sealer = Sealer()
    body = sealer.seal(PLAIN, 77, DATA_KEY, MAC_KEY)
    assert len(body) == 4 + 32 + TAG_SIZE
    assert body_counter(body) == 77
    assert PLAIN not in bytes(body)
    assert bytes(sealer.open(body, DATA_KEY, MAC_KEY)) == PLAIN


def test_every_changed_byte_is_refused():
    sealer = Sealer()
    body = bytes(sealer.seal(PLAIN, 5, DATA_KEY, MAC_KEY))
    for i in range(len(body)):
        altered = bytearray(body)
        altered[i] ^= 0x01
        raises(SealError, sealer.open, altered, DATA_KEY, MAC_KEY)


def test_wrong_keys_are_refused():
    sealer = Sealer()
    body = sealer.seal(PLAIN, 5, DATA_KEY, MAC_KEY)
    raises(SealError, sealer.open, body, DATA_KEY, DATA_KEY)


def test_bad_sizes_are_refused():
    sealer = Sealer()
    raises(SealError, sealer.seal, bytes(20), 1, DATA_KEY, MAC_KEY)
    raises(SealError, sealer.seal, b"", 1, DATA_KEY, MAC_KEY)
    raises(SealError, sealer.open, bytes(30), DATA_KEY, MAC_KEY)


def test_seal_into_buffer():
    sealer = Sealer()
    out = bytearray(44)
    sealer.seal(PLAIN, 1, DATA_KEY, MAC_KEY, out)
    assert bytes(sealer.open(out, DATA_KEY, MAC_KEY)) == PLAIN
