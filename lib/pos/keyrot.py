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


STAGED = "keys.new"  # in the state store: a checked rotation, until it is installed
GENERATION_FILE = "keygen"
DOWNLINK_KEY = "downlink.key"


def stage(app, version, payload, downlink_key):
    """Check a fetched rotation (for this terminal, newer, its wrap opens under the current
    downlink key) and keep it, still wrapped, for the install at an idle moment."""
    tid = app.terminal.settings.terminal_id
    open_payload(payload, tid, version, app.key_generation, downlink_key)
    app.board.store.write(STAGED, bytes(payload))


def install(app):
    """Install the staged rotation, rolling forward whatever a power cut left undone: (1)
    the new registers in place of the old in the state log (commit_registers; from the
    counter the terminal is at, so counters only go up); (2) the new downlink key; (3) the
    generation; (4) the staged file goes. At start a staged file means an install to
    finish, and each step finds out whether it is done (the log's IK ID; whether the key in
    force still opens the wrap)."""
    board = app.board
    store = board.store
    payload = store.read(STAGED)
    if payload is None:
        return
    journal = app.ledger.journal
    key = store.read(DOWNLINK_KEY)
    tid = app.terminal.settings.terminal_id
    generation = struct.unpack_from(">I", payload, 20)[0] if len(payload) >= 24 else 0
    if journal.ik_id != bytes(payload[24:32]):
        try:
            generation, ik_id, initial, link = open_payload(
                payload, tid, generation, app.key_generation, key
            )
        except RotationError as exc:  # damaged on flash since it was checked
            store.remove(STAGED)
            board.fault("keys refused at install: %s" % exc)
            return
        counter = journal.next_counter
        dukpt = _reload(journal._dukpt, initial, ik_id)  # the journal's own, in place
        initial = None
        if counter > 1:
            dukpt.skip_past(counter - 1)
        # A failure from here on leaves the terminal's registers in RAM new and the log's
        # old: it propagates, the terminal restarts (main.py), and the start finishes it.
        commit_registers(journal.log, dukpt)
        store.write(DOWNLINK_KEY, link)
    else:
        try:  # the registers are in; the downlink key may not be yet
            link = open_payload(payload, tid, generation, app.key_generation, key)[3]
            store.write(DOWNLINK_KEY, link)
        except RotationError:
            link = key  # the key in force opens it no more: it is the new one already
    store.write(GENERATION_FILE, struct.pack(">I", generation))
    store.remove(STAGED)
    app.key_generation = generation
    uplink = board.uplink
    if uplink is not None:
        from pos.contact import authenticate

        authenticate(uplink, link, store)  # requests are signed with the new key from now
    board.fault("keys %d installed" % generation)


def commit_registers(log, dukpt):
    """Put dukpt's registers (a new initial key's) in the state log (pos.statelog) in place
    of the old ones, in one power-safe step whose commit is a sector header: the frames of
    the new registers are programmed into the next free sector first, without a header (a
    sector without one is no part of the log: a cut here leaves the old keys), then its
    header, naming the new IK ID (from then on the head names it, and recovery keeps only
    registers of sectors that name the head's IK ID: pos.logscan), then the old registers
    are shredded, lowest counter first (a cut there is finished by the next recovery)."""
    from pos.compat import crc32
    from pos.statelog import HEADER_FORMAT, expected_counter

    # pos.statelog's private constants, as numbers (const() names are not attributes on
    # MicroPython): the header's size, a register frame's tag and size, the log's magic.

    # A sector of its own, with the spare ones behind it (the log opens one and reclaims).
    log.head_closed = True
    log._make_room(1)
    old = []
    for j in range(32):
        if log._reg[j]:
            old.append((log._reg[j], log._reg[32 + j]))
            log._reg[j] = 0
    n = log.sector_count
    sector = (log.head + 1) % n
    seq = (log.head_seq + 1) & 0xFFFFFFFF
    bdev = log._bdev
    bdev.ioctl(6, sector)
    frame = log._frame
    block = log._block
    offset = 20  # pos.statelog's header size
    counter = dukpt.counter
    keys = dukpt._keys
    for j in range(32):
        if not dukpt._in_use[j]:
            continue
        number = expected_counter(counter, j)
        frame[0] = 0x4B  # a register frame: tag, counter, register (CTR), CRC-32
        struct.pack_into(">I", frame, 1, number)
        log.keystream(number, seq, offset, 0x4B, 0)
        for i in range(16):
            frame[5 + i] = keys[j * 16 + i] ^ block[i]
        struct.pack_into("<I", frame, 21, crc32(memoryview(frame)[:21]) & 0xFFFFFFFF)
        bdev.writeblocks(sector, memoryview(frame)[:21], offset)
        bdev.writeblocks(sector, memoryview(frame)[21:25], offset + 21)
        log._reg[j] = number
        log._reg[32 + j] = sector << 16 | offset
        offset += 25
    for i in range(25):
        frame[i] = 0  # no register's bytes left in the scratch frame
    header = log._header
    struct.pack_into(HEADER_FORMAT[:-1], header, 0, 0x4C53, 1, 0, seq, dukpt.ik_id)
    struct.pack_into("<I", header, 16, crc32(memoryview(header)[:16]) & 0xFFFFFFFF)
    bdev.writeblocks(sector, header, 0)  # the commit
    log.ik_id = bytes(dukpt.ik_id)
    log.head = sector
    log.head_seq = seq
    log.head_offset = offset
    log.head_closed = False
    log.sector_in_use += 1
    old.sort()
    for _, location in old:  # lowest counter first, as pos.statelog shreds
        log._shred(location >> 16, location & 0xFFFF)


def _reload(dukpt, initial, ik_id):
    """The standard's Load Initial Key into the terminal's own DukptTerminal, its old
    registers overwritten in RAM as the new ones are derived: a second set of 32 registers
    (512 bytes in one piece) is more than a worn 96 KiB heap can be counted on to give."""
    from pos.compat import AES_ECB, aes

    dukpt.ik_id = bytes(ik_id)
    dukpt._set_counter(0)
    dukpt._derive(aes(initial, AES_ECB), 32, 0)
    dukpt._set_counter(1)
    return dukpt
