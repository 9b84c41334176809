"""The card blacklist: sorted 6-byte card tokens in a file, searched on flash, not in RAM.

File: "BL" | version (4, big-endian) | count (4) | count x 6-byte tokens in ascending order.
Six bytes an entry on flash and a few dozen bytes of heap whatever the size: 10,000 blocked
cards take 60 KB of the vfs partition and no heap (a set would not fit the app's heap).

A delta from the back end carries a version above the file's and sorted lists of tokens to
add and to remove; it is merged into a new file and renamed into place, so a power cut
leaves the old list or the new one, and a stale or malformed delta changes nothing. A whole
list (replace=True) takes the place of the file, at the same version or a newer one: the
back end sends one when the list's digest (the first 4 bytes of SHA-256 over the file, in
every heartbeat) is not the one it expects.
"""

import os
import struct
from binascii import hexlify
from hashlib import sha256

from pos.compat import const, why

TOKEN_SIZE = const(6)
HEADER_SIZE = const(10)
_MAGIC = b"BL"


# The messages, "|" between them, in one bytes constant (pos.compat.why): each str literal
# longer than about 10 characters would be a heap object of its own for the module's life.
_WHY = (
    b"blacklist file is not a blacklist|"  # 0
    b"blacklist file is cut short or too long|"  # 1
    b"blacklist delta %d is not newer than %d|"  # 2
    b"blacklist delta adds and removes the same token|"  # 3
    b"blacklist delta is not sorted 6-byte tokens"  # 4
)


class BlacklistError(ValueError):
    """A blacklist file or delta that cannot be used; the message says why."""


class Blacklist:
    def __init__(self, path):
        self.path = path
        self._token = bytearray(TOKEN_SIZE)
        self.version = 0
        self.count = 0
        self.digest = "-"  # of the file as it is, 8 hex digits ("-": no list)
        try:
            with open(path, "rb") as source:
                header = source.read(HEADER_SIZE)
                size = source.seek(0, 2)
        except OSError:
            return  # no list yet: nothing is blocked
        if len(header) != HEADER_SIZE or header[:2] != _MAGIC:
            raise BlacklistError(why(_WHY, 0))
        self.version, self.count = struct.unpack_from(">II", header, 2)
        if size != HEADER_SIZE + self.count * TOKEN_SIZE:
            raise BlacklistError(why(_WHY, 1))
        self._digest()

    def _digest(self):
        """The first 4 bytes of SHA-256 over the file, read 60 bytes at a time."""
        hashed = sha256()
        chunk = bytearray(60)
        with open(self.path, "rb") as source:
            while True:
                size = source.readinto(chunk)
                if not size:
                    break
                hashed.update(memoryview(chunk)[:size])
        self.digest = hexlify(hashed.digest()[:4]).decode()

    def contains(self, token):
        """Whether a 6-byte token is blocked: a binary search by seeking in the file."""
        if not self.count:
            return False
        token = bytes(token)
        low, high = 0, self.count - 1
        found = self._token
        with open(self.path, "rb") as source:
            while low <= high:
                middle = (low + high) // 2
                source.seek(HEADER_SIZE + middle * TOKEN_SIZE)
                source.readinto(found)
                if found == token:
                    return True
                if bytes(found) < token:
                    low = middle + 1
                else:
                    high = middle - 1
        return False

    def apply(self, version, add, remove, replace=False):
        """Merge a delta into a new file and swap it in atomically. add and remove are
        iterables of 6-byte tokens in ascending order (lists, or tokens read one at a time
        from a file: nothing here holds more than one of each); they are checked as they
        are merged, and a fault removes the new file and leaves the list as it was. With
        replace, `add` is the whole list, at this version or a newer one."""
        if version < self.version + (not replace):
            raise BlacklistError(why(_WHY, 2) % (version, self.version))
        temporary = self.path + ".new"
        count = 0
        try:
            with open(temporary, "wb") as out:
                out.write(_MAGIC + struct.pack(">II", version, 0))
                current = iter(()) if replace else self._all()
                for token in self._merged(current, _checked(add), _checked(remove)):
                    out.write(token)
                    count += 1
                out.seek(2)
                out.write(struct.pack(">II", version, count))
                out.flush()
        except BaseException:
            try:
                os.remove(temporary)
            except OSError:
                pass
            raise
        os.rename(temporary, self.path)
        self.version, self.count = version, count
        self._digest()

    def _merged(self, current_tokens, add, remove):
        """The current tokens with `add` merged in and `remove` taken out, in order: three
        sorted streams walked once together."""
        current = next(current_tokens, None)
        adding = next(add, None)
        removing = next(remove, None)
        while current is not None or adding is not None:
            added = adding is not None and (current is None or adding <= current)
            if added:
                token = adding
                if current == adding:  # already there
                    current = next(current_tokens, None)
                adding = next(add, None)
            else:
                token = current
                current = next(current_tokens, None)
            while removing is not None and removing < token:
                removing = next(remove, None)
            if removing == token:
                if added:
                    raise BlacklistError(why(_WHY, 3))
                continue
            yield token
        for _ in remove:  # the rest is checked too
            pass

    def _all(self):
        if not self.count:
            return
        with open(self.path, "rb") as source:
            source.seek(HEADER_SIZE)
            for _ in range(self.count):
                yield source.read(TOKEN_SIZE)


def _checked(tokens):
    """The tokens as bytes, refusing any that is not 6 bytes or not above the one before."""
    previous = b""
    for token in tokens:
        token = bytes(token)
        if len(token) != TOKEN_SIZE or token <= previous:
            raise BlacklistError(why(_WHY, 4))
        previous = token
        yield token
