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
    """The lines of one copy of a sale, refund, void or decline receipt."""
    if columns not in (32, 48):
        raise ValueError("receipts are 32 or 48 columns")
    rule = "-" * columns
    amount = format_minor(record.amount_minor, merchant.exponent)
    if record.kind in (REFUND, VOID):
        amount = "-" + amount
    lines = [
        center(merchant.name, columns),
        center("Merchant ID " + merchant.merchant_id, columns),
        pair("Terminal", terminal_id, columns),
        pair("Date", format_datetime(record.time, utc_offset_min), columns),
        pair("Receipt", "%06d" % record.receipt, columns),
        rule,
        center(KIND_TEXT[record.kind], columns),
        pair("Method", METHOD_TEXT[record.method], columns),
    ]
    if record.last_four != LAST_FOUR_NONE:
        lines.append(pair("Card", "**** %04d" % record.last_four, columns))
    if record.kind in (REFUND, VOID) and record.reference:
        lines.append(pair("Original receipt", "%06d" % record.reference, columns))
    lines.append(pair("AMOUNT " + merchant.currency_code, amount, columns))
    lines.append(rule)
    if record.kind == SALE or record.kind == REFUND or record.kind == VOID:
        lines.append(pair("Approval code", approval_code, columns))
    else:
        lines.append(pair("Reason", reason_text, columns))
    if offline:
        lines.append(center("OFFLINE - not yet sent", columns))
    lines.append(center(copy, columns))
    return lines
