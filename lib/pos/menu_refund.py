"""The function menu's void and refund screens (pos.functions loads this module while one
is in use): the last sale to void, or an original receipt, its amount and confirmation."""

import struct

from pos.compat import const
from pos.money import format_minor
from pos.reports import _RECENT_FORMAT, RECENT_BYTES, RECENT_SIZE
from pos.risk import today

# pos.states' screens and Terminal.edit's outcomes, and pos.record's and pos.reports'
# numbers, as private constants (inlined; host_tests/test_states.py checks them).
_REFUND_RECEIPT = const(12)
_L_MAX_REFUND_DAY_MINOR = const(5)  # pos.merchants' limit by number
_REFUND_AMOUNT = const(13)
_REFUND_CONFIRM = const(14)
_VOID_CONFIRM = const(15)
_DONE = const(3)
_BACK = const(4)
_TITLE = const(0)
_HINT = const(7)
_VOID = const(3)
_REFUND = const(2)
_FLAG_SUPERVISOR = const(2)
_VOIDED = const(1)
_RECEIPT_DIGITS = const(8)

_TEXT = (
    b"No sale to void\0"  # 0
    b"Not assigned\0\0\0\0"  # 1
    b"Merchant removed"  # 2
    b"Not a sale\0\0\0\0\0\0"  # 3
    b"No such receipt\0"  # 4
    b"Already refunded"  # 5
    b"Sale voided\0\0\0\0\0"  # 6
    b"Daily refund cap"  # 7
    b"Refund\0\0\0\0\0\0\0\0\0\0"  # 8
    b"Orig. receipt no"  # 9
    b"#OK *back\0\0\0\0\0\0\0"  # 10
)
_T_NO_SALE_TO_VOID = const(0)
_T_NOT_ASSIGNED = const(1)
_T_MERCHANT_REMOVED = const(2)
_T_NOT_A_SALE = const(3)
_T_NO_SUCH_RECEIPT = const(4)
_T_ALREADY_REFUNDED = const(5)
_T_SALE_VOIDED = const(6)
_T_DAILY_REFUND_CAP = const(7)
_T_REFUND = const(8)
_T_ORIG_RECEIPT_NO = const(9)
_T_OK_BACK = const(10)


def _text(number):
    return memoryview(_TEXT)[number << 4 : (number + 1) << 4]  # row `number`


# What only a void or a refund asks of the ledger's recent sales: here, not on the ledger's
# classes, so that it takes heap only while this item is in use.


def _last_voidable_sale(ledger):
    entry = ledger.recent.last_sale()
    if entry is None or entry[6]:  # voided or settled already
        return None
    if entry[8]:  # partly refunded: refund the rest instead
        return None
    return entry


def _find_sale(recent, receipt):
    offset = recent._sale_offset(receipt)
    return struct.unpack_from(_RECENT_FORMAT, recent._buf, offset) if offset >= 0 else None


def _holds_sales_from(recent, receipt):
    """True when every sale numbered receipt or later is in the ring (it has never been
    full, or its oldest sale is older): a number not found then was no sale."""
    if recent.count < RECENT_SIZE:
        return True
    return struct.unpack_from(">I", recent._buf, recent._next * RECENT_BYTES)[0] < receipt


def start_void(fn):
    """Menu item 1: the last sale, if this cashier may void it."""
    t = fn.t
    original = _last_voidable_sale(t.ledger)
    if original is None:
        t.say(_text(_T_NO_SALE_TO_VOID))
    elif not t.cashier.may_use(original[4]):
        t.say(_text(_T_NOT_ASSIGNED))
    elif t.merchants.get(original[4]) is None:
        t.say(_text(_T_MERCHANT_REMOVED))
    else:
        fn.original = original
        t.go(_VOID_CONFIRM, t.merchants.get(original[4]))


def key(fn, key):
    if fn.t.state == _REFUND_RECEIPT:
        _receipt_key(fn, key)
    else:
        _confirm_key(fn, key)


def draw(fn, screen):
    if fn.t.state == _REFUND_RECEIPT:
        screen.put(_TITLE, _text(_T_REFUND))
        screen.put(2, _text(_T_ORIG_RECEIPT_NO))
        screen.put(3, fn.t.entry.view(), right=True)
        screen.put(_HINT, _text(_T_OK_BACK))
        screen.focus = 2
    else:
        _draw_confirm(fn, screen)


def _receipt_key(fn, key):
    t = fn.t
    entry = t.entry
    outcome = t.edit(entry, key, _RECEIPT_DIGITS)
    if outcome == _BACK:
        t.open_menu()
    if outcome != _DONE:
        return
    receipt = int(bytes(entry.view()).decode())
    entry.wipe()
    ledger = t.ledger
    original = _find_sale(ledger.recent, receipt)
    if original is None:
        # Every receipt number below the next was given to some record: one that the
        # recent sales would hold, were it a sale, was a void, refund, decline or Z.
        issued = 0 < receipt < ledger.next_receipt
        known = issued and _holds_sales_from(ledger.recent, receipt)
        t.say(_text(_T_NOT_A_SALE) if known else _text(_T_NO_SUCH_RECEIPT))
    elif original[6] & _VOIDED:
        t.say(_text(_T_SALE_VOIDED))
    elif t.merchants.get(original[4]) is None:
        t.say(_text(_T_MERCHANT_REMOVED))
    elif not t.cashier.may_use(original[4]) or not fn.supervisor.may_use(original[4]):
        t.say(_text(_T_NOT_ASSIGNED))
    elif original[7] - original[8] <= 0:
        t.say(_text(_T_ALREADY_REFUNDED))
    else:
        fn.original = original
        t.amount.wipe()
        t.go(_REFUND_AMOUNT, t.merchants.get(original[4]))


def refund_amount(fn, value):
    """The refund amount keyed (not zero, within the merchant's refund cap, which the
    amount screen keeps to): check it against the original and the day's refunds."""
    t = fn.t
    merchant = t.merchant
    remaining = fn.original[7] - fn.original[8]
    if value > remaining:
        t.say("Max " + format_minor(remaining, merchant.exponent))
    elif today(t.ledger, merchant.number, t.now())[2] + value > merchant.limit(
        _L_MAX_REFUND_DAY_MINOR
    ):
        t.say(_text(_T_DAILY_REFUND_CAP))
    else:
        t.go(_REFUND_CONFIRM)


def _confirm_key(fn, key):
    t = fn.t
    if key == "*":
        if t.state == _REFUND_CONFIRM:
            t.go(_REFUND_AMOUNT)
        else:
            t.open_menu()
    elif key == "#":
        void = t.state == _VOID_CONFIRM
        kind = _VOID if void else _REFUND
        original = fn.original
        # The terminal's record, the one its sales reuse: a new one was a block of 192 bytes
        # or more, which the void of a busy day missed (tools/bench heap).
        record = t.reused_record
        record.kind = kind
        record.merchant = original[4]
        record.amount_minor = original[7] if void else t.amount.amount_minor
        record.currency = t.merchant.currency_numeric
        record.method = original[5]
        record.cashier = t.cashier.number
        record.time = t.now()
        record.reference = original[0]
        record.reason = 0
        record.flags = t.flags() | (_FLAG_SUPERVISOR if kind == _REFUND else 0)
        record.token = original[9]
        record.last_four = original[10]
        t.book(record)


def _draw_confirm(fn, screen):
    t = fn.t
    original = fn.original
    void = t.state == _VOID_CONFIRM
    # "Refund no. 12", or without "no." once the number needs the room (16 columns).
    text = "%s no. %d" % ("Void" if void else "Refund", original[0])
    if len(text) > 16:
        text = text.replace(" no.", "")
    screen.put(1, text)
    if void:
        screen.put(2, t.merchant.currency_code)
        screen.put_digits(2, original[7], t.merchant.exponent)
    else:
        t.draw_amount_line(2)
    t.draw_card_line(3, original[5], original[10])
    screen.put(_HINT, _text(_T_OK_BACK))
    screen.focus = 1
