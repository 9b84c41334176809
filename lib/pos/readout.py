"""What the back end and the host's tools read out of records and sealed bodies (a record's
kind and method by name, a Z's counts, the counter a body was sealed with), and amounts
typed as text (the back office's forms). Core code: it runs on both runtimes, and the core
tests run it on MicroPython too. Never loaded on the terminal, which only writes records
and takes amounts key by key (pos.money.AmountEntry): there each of these functions was
heap (about 90 bytes each on the 64-bit port) for the terminal's life."""

import struct

from pos.compat import const, why
from pos.money import _WHY as _MONEY_WHY
from pos.money import MAX_AMOUNT_MINOR, MoneyError
from pos.record import _WHY as _RECORD_WHY
from pos.record import SETTLEMENT, RecordError

_BLOCK = const(6)  # pos.record's (pos.autoblock names it)
KIND_NAMES = ("", "sale", "refund", "void", "decline", "settlement")
METHOD_NAMES = ("", "credit", "debit", "mobile", "cash")


def kind_name(record):
    return KIND_NAMES[record.kind] if record.kind < _BLOCK else "block"


def method_name(record):
    return METHOD_NAMES[record.method]


def settlement_counts(record):
    """(sale_count, sale_total, refund_count, refund_total) of a settlement record."""
    if record.kind != SETTLEMENT:
        raise RecordError(why(_RECORD_WHY, 2))
    sale_count, refund_total = struct.unpack(">HI", record.token)
    return sale_count, record.amount_minor, record.last_four, refund_total


def body_counter(body):
    """The DUKPT counter a sealed body (pos.seal) was made with."""
    return struct.unpack_from(">I", body, 0)[0]


def check_amount(amount_minor):
    """Raise MoneyError unless amount_minor is an int in 0..MAX_AMOUNT_MINOR."""
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool):
        raise MoneyError(why(_MONEY_WHY, 1))
    if amount_minor < 0:
        raise MoneyError(why(_MONEY_WHY, 2))
    if amount_minor > MAX_AMOUNT_MINOR:
        raise MoneyError(why(_MONEY_WHY, 3))
    return amount_minor


def parse_minor(text, exponent=2):
    """Parse '12.34' (or '12', '12.3', '0.05') into minor units, refusing anything ambiguous.

    No thousands separators, no sign, no exponent notation, no more decimals than the
    currency has: an operator gets a clear error rather than a guess.
    """
    if not isinstance(text, str):
        raise MoneyError(why(_MONEY_WHY, 4))
    text = text.strip()
    if not text:
        raise MoneyError(why(_MONEY_WHY, 5))
    dot = text.find(".")
    if dot < 0:
        whole, fraction = text, ""
    else:
        whole, fraction = text[:dot], text[dot + 1 :]
        if not fraction:
            raise MoneyError(why(_MONEY_WHY, 6))
    if not whole:
        raise MoneyError(why(_MONEY_WHY, 7))
    if not _all_digits(whole) or (fraction and not _all_digits(fraction)):
        raise MoneyError(why(_MONEY_WHY, 8) + text)
    if len(fraction) > exponent:
        raise MoneyError(why(_MONEY_WHY, 9))
    # Check the length before int() so a very long string never builds a big integer.
    whole = _strip_zeros(whole)
    if len(whole) + exponent > 9:
        raise MoneyError(why(_MONEY_WHY, 3))
    amount = int(whole + fraction + "0" * (exponent - len(fraction)))
    return check_amount(amount)


def _all_digits(text):
    for ch in text:
        if ch < "0" or ch > "9":
            return False
    return True


def _strip_zeros(text):
    start = 0
    while start < len(text) - 1 and text[start] == "0":
        start += 1
    return text[start:]
