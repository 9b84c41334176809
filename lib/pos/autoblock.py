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

The state, in the state store as "autoblock" (pos.risk.AUTO_FILE), written whole by a
rename when it changes (a fraud decline is rare, so a write each is cheap):

    0    version (1)
    1    blocked count B (0..32)
    2    decline count D (0..16)
    3    32 blocked tokens of 6 bytes, the oldest first (slots from B on are zero)
    195  16 declines of 12 bytes, the oldest first: token (6), time (4, big-endian,
         0: clock not set), reason (1), merchant (1)

A full block list drops its oldest entry (the back end's fleet list, by the operator's
policy, is where blocks last); a full decline list drops its oldest decline. A power cut
after the decline's record and before this file is written loses that decline's count (the
record reached the queue: the back end sees it); the BLOCK record is booked before the file
is written, so the back end never misses a block the terminal holds.
"""

import struct

from pos.compat import const
from pos.record import BLOCK, FLAG_LIFTED, FLAG_OFFLINE, Record
from pos.risk import AUTO_BYTES, AUTO_FILE, AUTO_VERSION, auto_blocked

_TOKENS = const(3)
_MAX_BLOCKED = const(32)
_DECLINES = const(195)
_MAX_DECLINES = const(16)
_DECLINE_BYTES = const(12)


def _state(risk):
    auto = risk.auto
    if auto is None:
        auto = risk.auto = bytearray(AUTO_BYTES)
        auto[0] = AUTO_VERSION
    return auto


def _same(auto, at, token):
    for i in range(6):
        if auto[at + i] != token[i]:
            return False
    return True


def _drop(auto, first, size, count, index):
    """Remove entry index of count entries of size bytes from first on (the rest move up)."""
    start = first + index * size
    end = first + count * size
    auto[start : end - size] = auto[start + size : end]
    for i in range(end - size, end):
        auto[i] = 0


def note_decline(risk, record, declines_allowed, window_min):
    """Count a fraud decline just booked: (counted, the BLOCK record to book if its card is
    now blocked, else None). The caller books that record, then save()s a counted state.
    A card blocked already, or a decline without a card, is not counted."""
    token = record.token
    if not declines_allowed or auto_blocked(risk.auto, token) or not any(token):
        return False, None
    auto = _state(risk)
    count = auto[2]
    if count == _MAX_DECLINES:
        _drop(auto, _DECLINES, _DECLINE_BYTES, count, 0)
        count -= 1
    at = _DECLINES + count * _DECLINE_BYTES
    auto[at : at + 6] = token
    struct.pack_into(">IBB", auto, at + 6, record.time, record.reason, record.merchant)
    count += 1
    auto[2] = count
    now = record.time
    since = now - window_min * 60 if now else 0
    found = 0
    reasons = 0
    for entry in range(count):
        at = _DECLINES + entry * _DECLINE_BYTES
        time, reason = struct.unpack_from(">IB", auto, at + 6)
        if _same(auto, at, token) and time >= since:
            found += 1
            reasons |= 1 << reason
    block = None
    if found >= declines_allowed:
        # Its declines are the block's evidence now: they leave the list with it.
        entry = 0
        while entry < auto[2]:
            if _same(auto, _DECLINES + entry * _DECLINE_BYTES, token):
                _drop(auto, _DECLINES, _DECLINE_BYTES, auto[2], entry)
                auto[2] -= 1
            else:
                entry += 1
        if auto[1] == _MAX_BLOCKED:
            _drop(auto, _TOKENS, 6, _MAX_BLOCKED, 0)
            auto[1] -= 1
        at = _TOKENS + auto[1] * 6
        auto[at : at + 6] = token
        auto[1] += 1
        block = Record(
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
    return True, block


def save(risk, store):
    """Write the state (after the BLOCK record, if any, was booked)."""
    store.write(AUTO_FILE, risk.auto)


def lift(risk, token, store, merchant, currency, cashier, time, flags):
    """Take token off the terminal's own block list: the BLOCK record (FLAG_LIFTED) to book,
    or None when it is not on the list. The state is written at once."""
    auto = risk.auto
    if not auto_blocked(auto, token):
        return None
    for entry in range(auto[1]):
        if _same(auto, _TOKENS + entry * 6, token):
            _drop(auto, _TOKENS, 6, auto[1], entry)
            auto[1] -= 1
            break
    store.write(AUTO_FILE, auto)
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
