"""Key rotation on the terminal: a new DUKPT initial key and downlink key from the back end,
checked, staged, and installed at an idle moment in one power-safe step.

Loaded only when a rotation document arrives or a staged rotation waits for its install
(pos.downlink, pos.app), and unloaded after: no heap while the terminal sells.

The document (pos.downlink kind "R", version = the key generation, sealed as every document
is with the terminal's current downlink key) carries, 72 bytes:

    0   "OTKR"
    4   the terminal ID (16, NUL-padded): a document made for another terminal is refused
        (its MAC fails first: the key is the other terminal's)
    20  the generation (4, big-endian): the same as the document's version, above the one
        in force (an older generation is refused)
    24  the new IK ID (8): the new BDK's ID and a fresh derivation ID
    32  RFC 3394 AES key wrap (40) of the new initial key (16) and the new downlink key (16)
        under the KEK below

The KEK is derived from the current downlink key (NIST SP 800-108 counter mode, AES-CMAC,
label "OneTill key wrap", context the generation): both ends hold that key already and it
does not change under the terminal's feet, whereas a key from the DUKPT registers would be
a counter's, which moves with every sale between the making and the fetching of the
document, and would use that counter up. The KEK is a key of its own (its own label), not
the document's encryption or MAC key, and the wrap's integrity check refuses a wrong KEK or
an altered wrap before a byte of it is used.
"""

import struct

from pos.compat import const

KIND = "R"
PAYLOAD_SIZE = const(72)
_MAGIC = b"OTKR"
_WRAPPED = const(40)


class RotationError(ValueError):
    """A rotation document that is refused; the message says why. Nothing changed."""


def derive_kek(downlink_key, generation):
    """The key-encryption key of a generation's rotation, from the current downlink key."""
    from pos.seal import Cmac

    data = b"\x01OneTill key wrap\x00" + struct.pack(">I", generation) + b"\x00\x80"
    return bytes(Cmac().digest(bytes(downlink_key), data))


def pack_payload(terminal_id, generation, ik_id, wrapped):
    """The document's payload (the back end makes it; the tests too)."""
    tid = terminal_id.encode()
    if len(tid) > 16 or len(ik_id) != 8 or len(wrapped) != _WRAPPED:
        raise ValueError("terminal ID, IK ID or wrapped keys of the wrong size")
    return _MAGIC + tid + bytes(16 - len(tid)) + struct.pack(">I", generation) + ik_id + wrapped


def open_payload(payload, terminal_id, version, in_force, downlink_key):
    """(generation, new IK ID, new initial key, new downlink key) of a checked payload;
    RotationError unless it is for this terminal, of the document's version, newer than the
    generation in force, and its wrap opens under the KEK."""
    from pos.keywrap import KeyWrapError, unwrap

    if len(payload) != PAYLOAD_SIZE or payload[:4] != _MAGIC:
        raise RotationError("keys %d: not a rotation document" % version)
    tid = terminal_id.encode()
    if payload[4:20] != tid + bytes(16 - len(tid)):
        raise RotationError("keys %d: made for another terminal" % version)
    generation = struct.unpack_from(">I", payload, 20)[0]
    if generation != version:
        raise RotationError("keys %d: says it is generation %d" % (version, generation))
    if generation <= in_force:
        raise RotationError("keys %d: generation %d is in force" % (version, in_force))
    try:
        keys = unwrap(derive_kek(downlink_key, generation), payload[32:])
    except KeyWrapError as exc:
        raise RotationError("keys %d: %s" % (version, exc)) from None
    return generation, bytes(payload[24:32]), keys[:16], keys[16:]
