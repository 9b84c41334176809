"""Money as integer minor units: format and key in amounts without ever using floats (amounts
typed as text are parsed by pos.readout, off the terminal)."""

from pos.compat import const, why

# The largest amount the terminal handles, in minor units. It stays inside MicroPython's
# small-int range (2**30 - 1 on 32-bit ports), so arithmetic on it never allocates.
MAX_AMOUNT_MINOR = const(999_999_999)

# ISO 4217: alphabetic code, numeric code, minor-unit exponent, seven characters a currency,
# in one string (a dict of tuples would cost kilobytes of heap). Add currencies as needed.
_CURRENCIES = (
    "EUR9782USD8402GBP8262CHF7562SGD7022HKD3442CNY1562AUD0362NZD5542CAD1242SEK7522NOK5782"
    "DKK2082PLN9852CZK2032HUF3482INR3562MYR4582THB7642ZAR7102JPY3920KRW4100VND7040ISK3520"
    "KWD4143BHD0483JOD4003OMR5123TND7883"
)


# The messages, "|" between them, in one bytes constant: each str literal longer than about
# 10 characters would be a heap object of its own (about 35 bytes on the 64-bit port).
_WHY = (
    b"unknown currency |"  # 0
    b"amount must be an integer|"  # 1
    b"amount below zero|"  # 2
    b"amount too large|"  # 3
    b"amount must be text|"  # 4
    b"amount is empty|"  # 5
    b"no digits after the point|"  # 6
    b"no digits before the point|"  # 7
    b"not an amount: |"  # 8
    b"too many decimals|"  # 9
    b"not a digit"  # 10
)


class MoneyError(ValueError):
    """An amount or currency that the terminal refuses; the message is fit for a screen."""


def currency(code):
    """Return (numeric code, exponent) for an ISO 4217 alphabetic code."""
    if isinstance(code, str) and len(code) == 3:
        for start in range(0, len(_CURRENCIES), 7):
            if _CURRENCIES[start : start + 3] == code:
                entry = _CURRENCIES[start + 3 : start + 7]
                return int(entry[:3]), int(entry[3])
    raise MoneyError(why(_WHY, 0) + str(code))


def currency_code(numeric):
    """Return the alphabetic code for an ISO 4217 numeric code."""
    if isinstance(numeric, int):
        for start in range(0, len(_CURRENCIES), 7):
            if int(_CURRENCIES[start + 3 : start + 6]) == numeric:
                return _CURRENCIES[start : start + 3]
    raise MoneyError(why(_WHY, 0) + str(numeric))


def format_minor(amount_minor, exponent=2, sign=True):
    """Format minor units as text: 1234 -> '12.34', 5 -> '0.05', -150 -> '-1.50'.

    Negative amounts are allowed here (refund totals, net figures) with sign=True.
    """
    if not isinstance(amount_minor, int):
        raise MoneyError(why(_WHY, 1))
    negative = amount_minor < 0
    if negative and not sign:
        raise MoneyError(why(_WHY, 2))
    digits = str(-amount_minor if negative else amount_minor)
    if exponent > 0:
        if len(digits) <= exponent:
            digits = "0" * (exponent + 1 - len(digits)) + digits
        digits = digits[:-exponent] + "." + digits[-exponent:]
    return "-" + digits if negative else digits


class AmountEntry:
    """The amount the cashier keys in: digits fill from the right, so 1 2 3 4 shows 12.34.

    Holds an int and never allocates on a keystroke. It has DigitBuffer's (pos.card) entry
    methods, so the terminal's one key rule (Terminal.edit) serves both.
    """

    def __init__(self):
        self.amount_minor = 0
        self.length = 0  # digits typed (leading zeros are not)

    def wipe(self):
        self.amount_minor = 0
        self.length = 0

    def push(self, digit_char, limit=MAX_AMOUNT_MINOR):
        """Append a digit ("0".."9"); return False (and change nothing) when the amount would
        pass limit (the merchant's cap) or MAX_AMOUNT_MINOR."""
        digit = ord(digit_char) - 48
        if digit < 0 or digit > 9:
            raise MoneyError(why(_WHY, 10))
        if self.length == 0 and digit == 0:
            return True  # leading zeros change nothing
        amount = self.amount_minor * 10 + digit
        if amount > MAX_AMOUNT_MINOR or amount > limit:
            return False
        self.amount_minor = amount
        self.length += 1
        return True

    def backspace(self):
        """Delete the last digit; return False when there was none."""
        if self.length == 0:
            return False
        self.amount_minor //= 10
        self.length -= 1
        return True
