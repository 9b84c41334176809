"""The signed header of a software release, as the terminal checks a staged update.

A release file (made by tools/release build) is three parts back to back:

    header     52 bytes, >4sHHIII32s:
                 magic b"OTRL", format 1 (the image is a ROMFS image of the core's bytecode
                 .mpy files, as tools/deploy writes to the romfs partition), signature length,
                 code version (1 and up), lowest installed version it may replace,
                 image length, SHA-256 of the image
    signature  an HSS/LMS signature (RFC 8554, pos.lms) of the 52 header bytes
    image      image length bytes

Only the header is signed; it carries the image's length and hash, so the image is covered
without being hashed twice, and the signature can be checked before the image is even
downloaded. Every field is read from unauthenticated bytes until the signature holds, so
the signature length is bounded before anything is allocated for it, and the versions are
judged only after the signature. The image is hashed as it streams from the staging area in
small pieces: the heap never holds it.
"""

import struct
from hashlib import sha256

from pos import lms
from pos.compat import const

HEADER_SIZE = const(52)
MAX_SIGNATURE_SIZE = const(4096)  # one LMS level, W4 or W8, any height: 2,992 at most
FORMAT_ROMFS = const(1)
MAGIC = b"OTRL"
_HEADER_FORMAT = ">4sHHIII32s"
_PIECE = const(512)  # bytes of image hashed per read


class ReleaseError(Exception):
    """A release refused; the message is the one-line reason."""


class Header:
    """The fields of a release header (not yet trusted until check() has passed)."""

    def __init__(self, data):
        if len(data) != HEADER_SIZE:
            raise ReleaseError("not a release: the header is cut short")
        fields = struct.unpack(_HEADER_FORMAT, data)
        if fields[0] != MAGIC:
            raise ReleaseError("not a release file")
        if fields[1] != FORMAT_ROMFS:
            raise ReleaseError("unknown release format %d" % fields[1])
        if not 0 < fields[2] <= MAX_SIGNATURE_SIZE:
            raise ReleaseError("signature length %d out of range" % fields[2])
        self.data = bytes(data)
        self.signature_length = fields[2]
        self.version = fields[3]
        self.min_version = fields[4]
        self.image_length = fields[5]
        self.image_sha256 = fields[6]


def pack_header(signature_length, version, min_version, image_length, image_sha256):
    return struct.pack(
        _HEADER_FORMAT,
        MAGIC,
        FORMAT_ROMFS,
        signature_length,
        version,
        min_version,
        image_length,
        image_sha256,
    )


def check(public_key, header, signature, image, installed_version=None):
    """Check a staged release: the signature of header (a Header) under public_key (an HSS
    public key, 60 bytes), then, if installed_version is given, that the release is newer
    and may replace it, then the image's length and SHA-256, read from image (anything with
    readinto; None: the header alone, before the image is fetched) in small pieces. Raises
    ReleaseError with the reason; returns nothing."""
    if len(signature) != header.signature_length:
        raise ReleaseError("signature cut short")
    if not lms.verify(public_key, signature, header.data):
        raise ReleaseError("bad signature (or another key)")
    if installed_version is not None:
        if header.version <= installed_version:
            raise ReleaseError(
                "version %d is not newer than %d" % (header.version, installed_version)
            )
        if installed_version < header.min_version:
            raise ReleaseError(
                "version %d needs %d or later installed" % (header.version, header.min_version)
            )
    if image is None:
        return
    digest = sha256()
    piece = memoryview(bytearray(_PIECE))
    left = header.image_length
    while left:
        count = image.readinto(piece[: min(left, _PIECE)])
        if not count:
            raise ReleaseError("image cut short: %d bytes missing" % left)
        digest.update(piece[:count])
        left -= count
    if digest.digest() != header.image_sha256:
        raise ReleaseError("image does not match its signed hash")
