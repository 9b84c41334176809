"""Receipts as lines of text for 32- or 48-column ESC/POS printers (the board adds the codes).

Only the last four card digits ever reach a receipt; a record holds nothing more.
"""

from pos.clock import format_datetime
from pos.money import format_minor
from pos.record import LAST_FOUR_NONE, REFUND, SALE, VOID

MERCHANT_COPY = "MERCHANT COPY"
CUSTOMER_COPY = "CUSTOMER COPY"
METHOD_TEXT = ("", "Credit card", "Debit card", "Mobile/QR", "Cash")
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
        raise ValueError("receipts are 32 or 48 columns")
    amount = format_minor(record.amount_minor, merchant.exponent)
    kind = record.kind
    if kind == REFUND or kind == VOID:
        amount = "-" + amount
    yield center(merchant.name, columns)
    yield center("Merchant ID " + merchant.merchant_id, columns)
    yield pair("Terminal", terminal_id, columns)
    yield pair("Date", format_datetime(record.time, utc_offset_min), columns)
    yield pair("Receipt", "%06d" % record.receipt, columns)
    yield "-" * columns
    yield center(KIND_TEXT[kind], columns)
    yield pair("Method", METHOD_TEXT[record.method], columns)
    if record.last_four != LAST_FOUR_NONE:
        yield pair("Card", "**** %04d" % record.last_four, columns)
    if (kind == REFUND or kind == VOID) and record.reference:
        yield pair("Original receipt", "%06d" % record.reference, columns)
    yield pair("AMOUNT " + merchant.currency_code, amount, columns)
    yield "-" * columns
    if kind == SALE or kind == REFUND or kind == VOID:
        yield pair("Approval code", approval_code, columns)
    else:
        yield pair("Reason", reason_text, columns)
    if offline:
        yield center("OFFLINE - not yet sent", columns)
    yield center(copy, columns)
