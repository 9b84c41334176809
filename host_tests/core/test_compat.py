"""pos.compat: the AES work-alike agrees with cryptolib on NIST SP 800-38A vectors."""

from binascii import unhexlify

from expect import raises
from pos.compat import AES_CBC, AES_ECB, aes, crc32, ticks_add, ticks_diff

# NIST SP 800-38A (2001), appendix F.1.1 (ECB-AES128.Encrypt) and F.2.1 (CBC-AES128.Encrypt).
NIST_KEY = unhexlify("2b7e151628aed2a6abf7158809cf4f3c")
NIST_IV = unhexlify("000102030405060708090a0b0c0d0e0f")
NIST_PLAIN = unhexlify(
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710"
)
NIST_ECB = unhexlify(
    "3ad77bb40d7a3660a89ecaf32466ef97"
    "f5d3d58503b9699de785895a96fdbaaf"
    "43b1cd7f598ece23881b00e3ed030688"
    "7b0c785e27e8ad3f8223207104725dd4"
)
NIST_CBC = unhexlify(
    "7649abac8119b246cee98e9b12e9197d"
    "5086cb9b507219ee95db113a917678b2"
    "73bed6b8e3c1743b7116e69e22229516"
    "3ff1caa1681fac09120eca307586e1a7"
)


def test_ecb_encrypt_matches_nist():
    assert aes(NIST_KEY, AES_ECB).encrypt(NIST_PLAIN) == NIST_ECB


def test_ecb_decrypt_matches_nist():
    assert aes(NIST_KEY, AES_ECB).decrypt(NIST_ECB) == NIST_PLAIN


def test_cbc_encrypt_matches_nist():
    assert aes(NIST_KEY, AES_CBC, NIST_IV).encrypt(NIST_PLAIN) == NIST_CBC


def test_cbc_decrypt_matches_nist():
    assert aes(NIST_KEY, AES_CBC, NIST_IV).decrypt(NIST_CBC) == NIST_PLAIN


def test_cbc_chaining_carries_over_between_calls():
    cipher = aes(NIST_KEY, AES_CBC, NIST_IV)
    first = cipher.encrypt(NIST_PLAIN[:32])
    second = cipher.encrypt(NIST_PLAIN[32:])
    assert first + second == NIST_CBC


def test_encrypt_into_output_buffer():
    out = bytearray(64)
    aes(NIST_KEY, AES_ECB).encrypt(NIST_PLAIN, out)
    assert bytes(out) == NIST_ECB


def test_one_object_one_direction():
    cipher = aes(NIST_KEY, AES_ECB)
    cipher.encrypt(NIST_PLAIN[:16])
    raises(ValueError, cipher.decrypt, NIST_ECB[:16])


def test_rejects_partial_block():
    raises(ValueError, aes(NIST_KEY, AES_ECB).encrypt, bytes(15))


def test_rejects_bad_key_and_iv_and_mode():
    raises(ValueError, aes, bytes(8), AES_ECB)
    raises(ValueError, aes, NIST_KEY, AES_CBC)
    raises(ValueError, aes, NIST_KEY, AES_CBC, bytes(8))
    raises(ValueError, aes, NIST_KEY, 3)


def test_crc32_is_the_zip_crc():
    assert crc32(b"123456789") == 0xCBF43926


def test_ticks_diff_handles_wrap():
    # The tick period differs by port (2**30 on the ESP32, 2**62 on the 64-bit unix port),
    # so step across the wrap with ticks_add rather than a literal.
    before_wrap = ticks_add(0, -5)
    assert before_wrap > 0
    assert ticks_diff(ticks_add(before_wrap, 10), before_wrap) == 10
    assert ticks_diff(before_wrap, ticks_add(before_wrap, 10)) == -10
    assert ticks_diff(100, 40) == 60
    assert ticks_diff(40, 100) == -60
