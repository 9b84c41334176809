"""Card numbers and payment codes: checked, reduced to a keyed token and the last four
digits, and wiped. Nothing else in the terminal ever holds them.

The token is the first 6 bytes of AES-CMAC under the operator's card-token key (the same key
at every terminal and the back end, so a blocked card is blocked everywhere). Without the key
a token cannot be tied to a card number.
"""

from pos.compat import AES_ECB, aes, const
from pos.seal import Cmac

MIN_CARD_DIGITS = const(12)
MAX_CARD_DIGITS = const(19)
MIN_CODE_DIGITS = const(6)
MAX_CODE_DIGITS = const(24)
TOKEN_SIZE = const(6)


class DigitBuffer:
    """A fixed buffer of ASCII digits that is overwritten, not dropped, when done."""

    def __init__(self, capacity):
        self.buf = bytearray(capacity)
        self.length = 0

    def push(self, digit_char, limit=255):
        """Append an ASCII digit; False (and nothing changed) when limit digits or the
        buffer's capacity are in already."""
        if self.length >= limit or self.length >= len(self.buf):
            return False
        self.buf[self.length] = ord(digit_char)
        self.length += 1
        return True

    def backspace(self):
        if not self.length:
            return False
        self.length -= 1
        self.buf[self.length] = 0
        return True

    def set(self, text):
        """Take digits from a card read or scan; False (and wiped) if any is not a digit."""
        self.wipe()
        if len(text) > len(self.buf):
            return False
        for ch in text:
            if ch < "0" or ch > "9":
                self.wipe()
                return False
            self.push(ch)
        return True

    def wipe(self):
        buf = self.buf
        for i in range(len(buf)):
            buf[i] = 0
        self.length = 0

    def view(self):
        return memoryview(self.buf)[: self.length]

    def last_four(self):
        if self.length < 4:
            return 0
        value = 0
        for i in range(self.length - 4, self.length):
            value = value * 10 + self.buf[i] - 48
        return value


def luhn_ok(digits):
    """The Luhn check over a buffer of ASCII digits."""
    total = 0
    double = False
    for i in range(len(digits) - 1, -1, -1):
        value = digits[i] - 48
        if double:
            value *= 2
            if value > 9:
                value -= 9
        total += value
        double = not double
    return len(digits) > 0 and total % 10 == 0


class Tokenizer:
    def __init__(self, token_key):
        if len(token_key) != 16:
            raise ValueError("card token key must be 16 bytes")
        self._key = aes(bytes(token_key), AES_ECB)  # one cipher object, reused
        self._cmac = Cmac()
        self._out = bytearray(16)

    def token(self, digits, out):
        """Write the 6-byte token of a digit buffer into out."""
        self._cmac.digest(self._key, digits, self._out)
        out[:TOKEN_SIZE] = memoryview(self._out)[:TOKEN_SIZE]
        return out
