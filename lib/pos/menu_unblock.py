"""The function menu's "lift a block" screen (pos.functions loads this module while it is in
use, after a supervisor's PIN): the supervisor keys the card's number, and its automatic
block (pos.autoblock) is lifted with a sealed BLOCK record that says so."""

from pos.card import MAX_CARD_DIGITS, MIN_CARD_DIGITS, luhn_ok
from pos.compat import const, unload

# pos.states' screens and outcomes as private constants (inlined at no heap cost;
# host_tests/test_states.py checks them).
_UNBLOCK_CARD = const(21)
_DONE = const(3)
_BACK = const(4)
_TITLE = const(0)
_HINT = const(7)

_TEXT = (
    b"Unblock card\0\0\0\0"  # 0
    b"Card number\0\0\0\0\0"  # 1
    b"Not blocked\0\0\0\0\0"  # 2
    b"UNBLOCKED\0\0\0\0\0\0\0"  # 3
    b"Invalid card no."  # 4
    b"#OK *back\0\0\0\0\0\0\0"  # 5
)
_T_UNBLOCK_CARD = const(0)
_T_CARD_NUMBER = const(1)
_T_NOT_BLOCKED = const(2)
_T_UNBLOCKED = const(3)
_T_INVALID_CARD_NO = const(4)
_T_OK_BACK = const(5)


def _text(number):
    return memoryview(_TEXT)[number << 4 : (number + 1) << 4]  # row `number`


def key(fn, key):
    t = fn.t
    card = t.card
    outcome = t.edit(card, key, MAX_CARD_DIGITS)
    if outcome == _BACK:
        t.open_menu()
    if outcome != _DONE:
        return
    if not MIN_CARD_DIGITS <= card.length or not luhn_ok(card.view()):
        card.wipe()
        t.say(_text(_T_INVALID_CARD_NO))
        return
    token = bytearray(6)
    t._tokenizer.token(card.view(), token)
    last_four = card.last_four()
    card.wipe()
    from pos import autoblock

    # The record names the terminal's first merchant: a block is the whole terminal's.
    for merchant in t.merchants:  # noqa: B007 (the first one is wanted)
        break
    record = autoblock.lift(
        t.risk,
        token,
        merchant.number,
        merchant.currency_numeric,
        fn.supervisor.number,
        t.now(),
        t.flags(),
    )
    autoblock = None
    unload("pos.autoblock")
    if record is None:
        t.say(_text(_T_NOT_BLOCKED))
        return
    record.last_four = last_four
    t.go(_UNBLOCK_CARD, merchant)
    t.book(record)


def draw(fn, screen):
    screen.put(_TITLE, _text(_T_UNBLOCK_CARD))
    screen.put(2, _text(_T_CARD_NUMBER))
    screen.put(3, fn.t.card.view(), right=True)
    screen.put(_HINT, _text(_T_OK_BACK))
    screen.focus = 2


def settled(fn, record):
    """The lifting BLOCK record is stored: the result screen's (headline, detail)."""
    fn.t.effects.append(("beep", "ok"))
    return (_text(_T_UNBLOCKED), "**** %04d" % record.last_four)
