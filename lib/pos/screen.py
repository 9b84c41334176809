"""The screen value the terminal hands to a display: 8 rows of 16 characters in one buffer.

Row 0 is the title (the merchant's name once one is chosen), rows 1-6 the body, row 7 the key
hints. The terminal redraws into the same preallocated bytearray, so showing a screen costs
no allocation; tests and the simulator read it back as text.

A 128x64 OLED with an 8x8 font shows the 8 rows as they are. A 20x4 character LCD is served
from the same value: row 0, the two body rows starting at `focus` (the rows that matter on
this screen: the amount, the PIN, the result), and row 7; see lcd_rows(). Menus are paged
with `menu_rows` items per page, which the board sets to 2 for an LCD and 5 for the OLED (row 6
is the terminal's message row; pos.config allows 2 to 5).
"""

from pos.compat import const

ROWS = const(8)
COLS = const(16)
TITLE = const(0)
HINT = const(7)
_SPACE = const(32)


class Screen:
    def __init__(self):
        self.buf = bytearray(ROWS * COLS)
        self.focus = 1
        self.clear()

    def clear(self):
        buf = self.buf
        for i in range(ROWS * COLS):
            buf[i] = _SPACE
        self.focus = 1

    def put(self, row, text, col=0, right=False):
        """Write text (str, bytes or a memoryview of bytes) into a row; right=True aligns it
        to the right edge.
        Writing from column 0 replaces the whole row. Text past the edge is cut; characters
        outside printable ASCII show as one '?' each (bytes are taken as UTF-8, as a
        merchant's label is)."""
        if col == 0 and not right:
            base = row * COLS
            for i in range(base, base + COLS):
                self.buf[i] = _SPACE
        if isinstance(text, str):
            # Indexing a str allocates a string per character on MicroPython; one encode
            # does not. The terminal passes bytes literals, which cost nothing.
            text = text.encode()
        # A character beyond ASCII is 2 to 4 bytes in UTF-8 ("Cafe" with an accent is 5
        # bytes): count characters, not bytes, and skip the continuation bytes (10xxxxxx),
        # so the name takes one column per character and stays aligned and clipped right.
        # A NUL ends the text: rows of a module's text table are padded with them.
        size = len(text)
        length = 0
        for i in range(size):
            code = text[i]
            if not code:
                size = i
                break
            if code & 0xC0 != 0x80:
                length += 1
        if length > COLS - col:
            length = COLS - col
        at = row * COLS + (COLS - length if right else col)
        end = at + length
        buf = self.buf
        for i in range(size):
            if at >= end:
                break
            code = text[i]
            if code & 0xC0 == 0x80:
                continue
            buf[at] = code if 32 <= code < 127 else 63
            at += 1
        return self

    def put_digits(self, row, value, exponent=0, end_col=COLS, min_digits=1):
        """Write a non-negative int ending at end_col, with a decimal point before the last
        `exponent` digits and at least min_digits digits (zero-padded), without building a
        string (the amount, on the sale path). Returns the column where the number starts."""
        buf = self.buf
        base = row * COLS
        pos = base + end_col - 1
        digits = 0
        while pos >= base and (value or digits <= exponent or digits < min_digits):
            if exponent and digits == exponent:
                buf[pos] = 46  # "."
                pos -= 1
                if pos < base:
                    break
            buf[pos] = 48 + value % 10
            value //= 10
            digits += 1
            pos -= 1
        return pos + 1 - base

    def row(self, row):
        """One row as text, trailing spaces removed (allocates: for tests and displays)."""
        text = bytes(self.buf[row * COLS : row * COLS + COLS]).decode()
        return text.rstrip()

    def text(self):
        return [self.row(r) for r in range(ROWS)]

    def lcd_rows(self):
        """The four rows a 20x4 LCD shows."""
        return [self.row(TITLE), self.row(self.focus), self.row(self.focus + 1), self.row(HINT)]

    def __str__(self):
        return "\n".join(self.text())
