"""The back end's keyring: every BDK it holds, each named by its 4-byte BDK ID, read from key
files at start and never stored in the database.

A terminal's initial key ID (IK ID, ANSI X9.24-3) is its BDK ID and a 4-byte derivation ID,
so a record, a request or a document of a terminal is opened with the BDK its IK ID names:
records sealed before a key rotation stay readable as long as the old key file is in the
ring. The BDK ID of a key is its check value, the first 4 bytes of AES-CMAC of a zero block
under it (as X9.24-3 makes key check values), so a key file holds nothing but the key (32
hex digits). Terminals provisioned before rotation existed drew the whole IK ID at random:
an IK ID whose first half names no key of the ring belongs to the base key, the first key
file given (the operator's original BDK).
"""

from binascii import unhexlify

from cryptography.hazmat.primitives import cmac as _cmac
from cryptography.hazmat.primitives.ciphers import algorithms

from tools.host.backend.errors import CommandError


def bdk_id(bdk):
    """The 4-byte BDK ID of a BDK (its check value)."""
    mac = _cmac.CMAC(algorithms.AES(bytes(bdk)))
    mac.update(bytes(16))
    return mac.finalize()[:4]


class Keyring:
    """BDKs by BDK ID; the first is the base key (see above), the last the newest."""

    def __init__(self, bdks):
        if isinstance(bdks, (bytes, bytearray)):
            bdks = [bdks]
        self._by_id = {}
        self.order = []  # BDK IDs in the order the key files were given
        for bdk in bdks:
            if len(bdk) != 16:
                raise ValueError("a BDK is 16 bytes")
            ident = bdk_id(bdk)
            if ident in self._by_id:
                raise ValueError("the same BDK twice in the keyring (ID %s)" % ident.hex())
            self._by_id[ident] = bytes(bdk)
            self.order.append(ident)
        if not self.order:
            raise ValueError("an empty keyring")
        self.base = self._by_id[self.order[0]]

    def bdk_for(self, ik_id):
        """The BDK that IK ID names (the base key when it names none of the ring)."""
        return self._by_id.get(bytes(ik_id[:4]), self.base)

    def get(self, ident):
        """The BDK of a BDK ID, or None."""
        return self._by_id.get(bytes(ident))

    def names(self, ik_id):
        """The BDK ID the IK ID is opened with."""
        ident = bytes(ik_id[:4])
        return ident if ident in self._by_id else self.order[0]


def as_keyring(value):
    """None, a Keyring, or one BDK (bytes): what LedgerDB is given."""
    if value is None or isinstance(value, Keyring):
        return value
    return Keyring(value)


def read_key_file(path, what="BDK"):
    """A 16-byte key from a key file of 32 hex digits; CommandError with the reason."""
    try:
        with open(path) as source:
            key = unhexlify(source.read().strip())
    except (OSError, ValueError) as exc:
        raise CommandError("cannot read the %s from %s: %s" % (what, path, exc)) from None
    if len(key) != 16:
        raise CommandError("the %s in %s must be 16 bytes" % (what, path))
    return key


def read_keyring(paths):
    """The keyring of key files (the base key first); CommandError with the reason."""
    if isinstance(paths, str):
        paths = [paths]
    keys = [read_key_file(path) for path in paths]
    try:
        return Keyring(keys)
    except ValueError as exc:
        raise CommandError("%s: %s" % (", ".join(paths), exc)) from None
