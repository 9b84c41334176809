"""pos.money: minor units in and out, and the right-filling amount entry."""

from expect import raises
from pos.money import (
    MAX_AMOUNT_MINOR,
    AmountEntry,
    MoneyError,
    currency,
    currency_code,
    format_minor,
)
from pos.readout import check_amount, parse_minor


def test_format_two_decimals():
    assert format_minor(1234) == "12.34"
    assert format_minor(5) == "0.05"
    assert format_minor(0) == "0.00"
    assert format_minor(100) == "1.00"


def test_format_other_exponents():
    assert format_minor(1234, 0) == "1234"
    assert format_minor(1234, 3) == "1.234"
    assert format_minor(7, 3) == "0.007"


def test_format_negative():
    assert format_minor(-150) == "-1.50"
    raises(MoneyError, format_minor, -1, 2, False)


def test_format_refuses_float():
    raises(MoneyError, format_minor, 12.34)


def test_parse_round_trips():
    for amount in (0, 1, 9, 10, 99, 100, 1234, 100000, MAX_AMOUNT_MINOR):
        assert parse_minor(format_minor(amount)) == amount


def test_parse_short_forms():
    assert parse_minor("12") == 1200
    assert parse_minor("12.3") == 1230
    assert parse_minor(" 0.05 ") == 5
    assert parse_minor("007.50") == 750
    assert parse_minor("5", 0) == 5
    assert parse_minor("1.5", 3) == 1500


def test_parse_refuses_bad_input():
    for bad in ("", " ", ".", "1.", ".5", "1,5", "1.2.3", "-1", "+1", "1e3", "12.345", "abc"):
        raises(MoneyError, parse_minor, bad)
    raises(MoneyError, parse_minor, "1.5", 0)
    raises(MoneyError, parse_minor, 12)


def test_parse_refuses_overflow_without_big_ints():
    assert parse_minor("9999999.99") == MAX_AMOUNT_MINOR
    raises(MoneyError, parse_minor, "10000000.00")
    raises(MoneyError, parse_minor, "9" * 400)


def test_check_amount_bounds():
    assert check_amount(0) == 0
    assert check_amount(MAX_AMOUNT_MINOR) == MAX_AMOUNT_MINOR
    raises(MoneyError, check_amount, -1)
    raises(MoneyError, check_amount, MAX_AMOUNT_MINOR + 1)
    raises(MoneyError, check_amount, 1.0)
    raises(MoneyError, check_amount, True)


def test_currency_lookup():
    assert currency("EUR") == (978, 2)
    assert currency("JPY") == (392, 0)
    assert currency_code(414) == "KWD"
    raises(MoneyError, currency, "XXX")
    raises(MoneyError, currency_code, 999)


def test_entry_fills_from_the_right():
    entry = AmountEntry()
    for digit in "1234":
        entry.push(digit)
    assert entry.amount_minor == 1234
    assert format_minor(entry.amount_minor) == "12.34"


def test_entry_backspace_and_leading_zeros():
    entry = AmountEntry()
    entry.push("0")
    entry.push("0")
    assert entry.amount_minor == 0 and entry.length == 0
    entry.push("5")
    entry.push("0")
    assert entry.amount_minor == 50
    assert entry.backspace()
    assert entry.amount_minor == 5
    assert entry.backspace()
    assert not entry.backspace()
    assert entry.amount_minor == 0


def test_entry_refuses_the_digit_that_passes_the_limit():
    entry = AmountEntry()
    for digit in "5000":
        assert entry.push(digit, 50000)
    assert entry.push("0", 50000)  # 500.00: the cap itself is allowed
    assert not entry.push("0", 50000)  # 5000.00 would pass it: refused, nothing changed
    assert (entry.amount_minor, entry.length) == (50000, 5)
    entry.wipe()
    for digit in "5001":
        assert entry.push(digit, 50000)
    assert not entry.push("0", 50000)  # 500.10
    assert entry.amount_minor == 5001


def test_entry_never_passes_the_maximum():
    entry = AmountEntry()
    for _ in range(12):
        entry.push("9")
    assert entry.amount_minor == MAX_AMOUNT_MINOR and entry.length == 9
    raises(MoneyError, entry.push, ":")
