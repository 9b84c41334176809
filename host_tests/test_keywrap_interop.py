"""pos.keywrap against the back end's wrapper (cryptography's aes_key_wrap): random keys of
the sizes a rotation sends, wrapped there and unwrapped here."""

import os

from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from pos.keywrap import unwrap


def test_what_cryptography_wraps_pos_keywrap_unwraps():
    for size in (16, 24, 32, 48):
        for _ in range(20):
            kek, key = os.urandom(16), os.urandom(size)
            assert unwrap(kek, aes_key_wrap(kek, key)) == key
