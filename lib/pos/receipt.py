"""Receipts as lines of text for 32- or 48-column ESC/POS printers (the board adds the codes).

Only the last four card digits ever reach a receipt; a record holds nothing more.
"""

from pos.clock import format_datetime
from pos.compat import const, why
from pos.money import format_minor
from pos.record import CREDIT, LAST_FOUR_NONE, REFUND, SALE, VOID

# The words of more than 10 letters, "|" between them, in one bytes constant (pos.compat.why):
# a str literal that long is a heap object of its own for the module's life; shorter ones
# are names, which are not.
_TEXT = (
    b"Credit card|"  # 0
    b"MERCHANT COPY|"  # 1
    b"CUSTOMER COPY|"  # 2
    b"Merchant ID |"  # 3
    b"Original receipt|"  # 4
    b"Approval code|"  # 5
    b"OFFLINE - not yet sent|"  # 6
    b"receipts are 32 or 48 columns"  # 7
)
MERCHANT_COPY = const(1)  # which copy: the row of its last line in _TEXT
CUSTOMER_COPY = const(2)
METHOD_TEXT = ("", "", "Debit card", "Mobile/QR", "Cash")  # and CREDIT's, _TEXT row 0
KIND_TEXT = ("", "SALE", "REFUND", "VOID", "DECLINED", "SETTLEMENT")


def pair(left, right, columns):
    """A label on the left and its value on the right edge; the label is cut to make room."""
    space = columns - len(left) - len(right)
    if space < 1:
        keep = columns - len(right) - 1
        if keep < 0:
            # The value alone fills the line: cut it at the edge. (A negative slice of the
            # label would keep part of it and run the line past the paper.)
            return right[:columns]
        left = left[:keep]
        space = 1
    return left + " " * space + right


def center(text, columns):
    text = text[:columns]
    pad = (columns - len(text)) // 2
    return " " * pad + text


def sale_receipt(
    record,
    merchant,
    terminal_id,
    approval_code,
    offline,
    copy,
    columns=32,
    utc_offset_min=0,
    reason_text="",
):
    """The lines of one copy of a sale, refund, void or decline receipt, made one at a time
    as the printer takes them (a copy's 14 lines at once were about 1.4 KiB of heap on the
    64-bit port, two copies of a card sale twice that)."""
    if columns not in (32, 48):
        raise ValueError(why(_TEXT, 7))
    amount = format_minor(record.amount_minor, merchant.exponent)
    kind = record.kind
    if kind == REFUND or kind == VOID:
        amount = "-" + amount
    yield center(merchant.name, columns)
    yield center(why(_TEXT, 3) + merchant.merchant_id, columns)
    yield pair("Terminal", terminal_id, columns)
    yield pair("Date", format_datetime(record.time, utc_offset_min), columns)
    yield pair("Receipt", "%06d" % record.receipt, columns)
    yield "-" * columns
    yield center(KIND_TEXT[kind], columns)
    method = record.method
    yield pair("Method", why(_TEXT, 0) if method == CREDIT else METHOD_TEXT[method], columns)
    if record.last_four != LAST_FOUR_NONE:
        yield pair("Card", "**** %04d" % record.last_four, columns)
    if (kind == REFUND or kind == VOID) and record.reference:
        yield pair(why(_TEXT, 4), "%06d" % record.reference, columns)
    yield pair("AMOUNT " + merchant.currency_code, amount, columns)
    yield "-" * columns
    if kind == SALE or kind == REFUND or kind == VOID:
        yield pair(why(_TEXT, 5), approval_code, columns)
    else:
        yield pair("Reason", reason_text, columns)
    if offline:
        yield center(why(_TEXT, 6), columns)
    yield center(why(_TEXT, copy), columns)
