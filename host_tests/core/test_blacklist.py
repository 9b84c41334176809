"""pos.blacklist: tokens searched on flash, versioned deltas swapped in whole."""

import struct

from expect import raises, scratch
from pos.blacklist import HEADER_SIZE, TOKEN_SIZE, Blacklist, BlacklistError


def token(number):
    """Tokens in ascending order, made on the fly (no list of thousands in a small heap)."""
    return struct.pack(">HI", 0x7A00, number * 7919)


def tokens(first, count, step=1):
    for number in range(first, first + count * step, step):
        yield token(number)


def test_empty_or_missing_list_blocks_nothing():
    listing = Blacklist(scratch("bl"))
    assert listing.count == 0 and listing.version == 0
    assert not listing.contains(token(1))


def test_lookup_at_and_between_every_boundary():
    listing = Blacklist(scratch("bl"))
    listing.apply(1, list(tokens(0, 300, 2)), [])  # even numbers 0..598
    assert listing.count == 300
    for number in (0, 2, 298, 598):
        assert listing.contains(token(number))
    for number in (1, 299, 597, 599, 10000):
        assert not listing.contains(token(number))
    assert not listing.contains(b"\x00" * 6)  # below the first
    assert not listing.contains(b"\xff" * 6)  # above the last


def test_delta_adds_and_removes_and_survives_reopening():
    path = scratch("bl")
    listing = Blacklist(path)
    listing.apply(1, [token(10), token(20), token(30)], [])
    listing.apply(2, [token(15), token(40)], [token(20), token(99)])
    again = Blacklist(path)
    assert (again.version, again.count) == (2, 4)
    assert [again.contains(token(n)) for n in (10, 15, 20, 30, 40)] == [
        True,
        True,
        False,
        True,
        True,
    ]


def test_stale_or_malformed_delta_changes_nothing():
    path = scratch("bl")
    listing = Blacklist(path)
    listing.apply(5, [token(1)], [])
    raises(BlacklistError, listing.apply, 5, [token(2)], [])  # not newer
    raises(BlacklistError, listing.apply, 6, [token(3), token(2)], [])  # not sorted
    raises(BlacklistError, listing.apply, 6, [b"\x01\x02"], [])  # not a token
    raises(BlacklistError, listing.apply, 6, [token(4)], [token(4)])  # contradictory
    again = Blacklist(path)
    assert (again.version, again.count) == (5, 1) and again.contains(token(1))


def test_corrupt_file_is_refused_clearly():
    path = scratch("bl")
    with open(path, "wb") as out:
        out.write(b"XX" + bytes(8))
    raises(BlacklistError, Blacklist, path)
    with open(path, "wb") as out:
        out.write(b"BL" + struct.pack(">II", 1, 3) + token(1))  # says 3, holds 1
    raises(BlacklistError, Blacklist, path)


def test_bytes_per_entry():
    listing = Blacklist(scratch("bl"))
    listing.apply(1, list(tokens(0, 500)), [])
    import os

    assert os.stat(listing.path)[6] == HEADER_SIZE + 500 * TOKEN_SIZE  # 6 bytes an entry


def test_digest_is_of_the_whole_file_and_follows_every_change():
    from binascii import hexlify
    from hashlib import sha256

    path = scratch("bl")
    listing = Blacklist(path)
    assert listing.digest == "-"  # no list yet
    listing.apply(1, list(tokens(0, 30)), [])
    with open(path, "rb") as source:
        assert listing.digest == hexlify(sha256(source.read()).digest()[:4]).decode()
    first = listing.digest
    listing.apply(2, [], [token(3)])
    assert listing.digest != first and Blacklist(path).digest == listing.digest
    listing.apply(2, list(tokens(0, 30)), [], replace=True)  # the whole list again
    assert listing.digest != first  # the same tokens, but the file says version 2
    assert (listing.version, listing.count) == (2, 30)
