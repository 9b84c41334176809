"""Automatic blocking: a card that collects too many fraud declines on this terminal is put on
the terminal's own block list at once, and a supervisor can lift it.

Loaded only when a fraud decline has just been booked or a supervisor lifts a block, and
unloaded after (pos.runner, pos.functions); the lookup on the sale path is pos.risk's.

The rule (terminal.json, and pushable): a card whose token collects auto_block_declines
declines of the fraud kind (pos.risk's CARD_BLOCKED, TOO_MANY_USES, UNUSUAL_AMOUNT: a
blacklisted card, velocity, an unusual amount refused or left without a supervisor) within
auto_block_window_min minutes is blocked on every merchant of the terminal, and a sealed
BLOCK record (pos.record) tells the back end the token and the reasons. The window follows
velocity's rule for the clock: with the clock not set every decline remembered counts;
once it is set, declines of unknown time no longer do.

Two files in the state store, each written whole by a rename when it changes (a fraud
decline is rare, so a write each is cheap), and small, so the heap holds them only for the
moment (the block list stays in pos.risk's hands, 6 bytes a card):

    blocked    up to 32 tokens of 6 bytes, the oldest first
    declines   up to 16 declines of 12 bytes, the oldest first: token (6), time (4,
               big-endian, 0: clock not set), reason (1), merchant (1)

A full block list drops its oldest entry (the back end's fleet list, by the operator's
policy, is where blocks last); a full decline list drops its oldest decline. A power cut
after the decline's record and before the files are written loses that decline's count (the
record reached the queue: the back end sees it); the BLOCK record is booked before the
block list is written, so the back end never misses a block the terminal holds.
"""

import struct

from pos.compat import const
from pos.record import FLAG_OFFLINE, Record

BLOCK = const(6)  # the record type (pos.record keeps only its number, to stay small)
FLAG_LIFTED = const(8)  # a BLOCK record that lifts the block
BLOCKED_FILE = "blocked"  # pos.risk reads it at start (the same name there)
DECLINES_FILE = "declines"


def auto_blocked(blocked, token):
    """True if token is on the terminal's own block list (its tokens, 6 bytes each, or
    None): pos.risk's lookup, for the code here."""
    if blocked is None:
        return False
    for at in range(0, len(blocked) - 5, 6):
        if _same(blocked, at, token):
            return True
    return False


_MAX_BLOCKED = const(32)
_MAX_DECLINES = const(16)
_ENTRY = const(12)


def _same(data, at, token):
    for i in range(6):
        if data[at + i] != token[i]:
            return False
    return True


def after_decline(runner, decline):
    """pos.runner, after a fraud decline was booked: count it, and when its card is now
    blocked, book the BLOCK record and put the card on the list. Faults go to the log."""
    from pos.reports import TotalsFull
    from pos.txq import QueueError

    terminal = runner.terminal
    settings = terminal.settings
    risk = terminal.risk
    faults = runner.faults or _ignore
    if risk is None or risk.store is None:
        return
    try:
        block = note_decline(
            risk, decline, settings.auto_block_declines, settings.auto_block_window_min
        )
        if block is None:
            return
        try:
            runner.ledger.book(block)
        except (QueueError, TotalsFull, ValueError) as exc:
            # Blocked here all the same; the back end sees the declines.
            faults("auto-block: block record not stored: %r" % (exc,))
        add_block(risk, block.token)
        faults("auto-block: card ****%04d blocked" % block.last_four)
    except OSError as exc:  # the sale's outcome stands; this decline is not counted
        faults("auto-block: decline not counted: %r" % (exc,))


def _ignore(text):
    pass


def note_decline(risk, record, declines_allowed, window_min):
    """Count a fraud decline just booked: the BLOCK record to book if its card is now
    blocked, else None. The declines are written here; after booking the BLOCK record the
    caller calls add_block(). A card blocked already, or a decline without a card, is not
    counted."""
    token = record.token
    store = risk.store
    if not declines_allowed or auto_blocked(risk.blocked, token) or not any(token):
        return None
    old = store.read(DECLINES_FILE) or b""
    start = max(0, len(old) // _ENTRY - (_MAX_DECLINES - 1)) * _ENTRY
    entry = bytearray(_ENTRY)
    entry[:6] = token
    struct.pack_into(">IBB", entry, 6, record.time, record.reason, record.merchant)
    declines = old[start : len(old) // _ENTRY * _ENTRY] + entry
    old = entry = None
    now = record.time
    since = now - window_min * 60 if now else 0
    found = 0
    reasons = 0
    kept = b""
    for at in range(0, len(declines), _ENTRY):
        time, reason = struct.unpack_from(">IB", declines, at + 6)
        if _same(declines, at, token):
            if time >= since:
                found += 1
                reasons |= 1 << reason
        else:
            kept += declines[at : at + _ENTRY]
    if found < declines_allowed:
        store.write(DECLINES_FILE, declines)
        return None
    # Its declines are the block's evidence now: they leave the list with it.
    store.write(DECLINES_FILE, kept)
    return Record(
        BLOCK,
        record.merchant,
        found,
        record.currency,
        cashier=record.cashier,
        time=record.time,
        reason=record.reason,
        reference=reasons,
        flags=record.flags & FLAG_OFFLINE,
        token=bytes(token),
        last_four=record.last_four,
    )


def add_block(risk, token):
    """Put token on the terminal's own block list (written at once)."""
    blocked = risk.blocked or b""
    if len(blocked) >= _MAX_BLOCKED * 6:
        blocked = blocked[6:]
    blocked = bytes(blocked) + bytes(token)
    risk.store.write(BLOCKED_FILE, blocked)
    risk.blocked = blocked


def lift(risk, token, merchant, currency, cashier, time, flags):
    """Take token off the terminal's own block list: the BLOCK record (FLAG_LIFTED) to book,
    or None when it is not on the list. The list is written at once."""
    blocked = risk.blocked
    if not auto_blocked(blocked, token):
        return None
    kept = b""
    for at in range(0, len(blocked), 6):
        if not _same(blocked, at, token):
            kept += blocked[at : at + 6]
    if kept:
        risk.store.write(BLOCKED_FILE, kept)
    else:
        risk.store.remove(BLOCKED_FILE)
    risk.blocked = kept or None
    return Record(
        BLOCK,
        merchant,
        0,
        currency,
        cashier=cashier,
        time=time,
        flags=flags & FLAG_OFFLINE | FLAG_LIFTED,
        token=bytes(token),
    )
