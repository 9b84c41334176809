"""An ESC/POS thermal receipt printer on a UART it is given (9600 8N1, lib/board/pins.py).

Every slip starts with ESC @ and the code page: the printer has its own supply and may have
restarted since the last slip, losing both. Text goes out in Windows-1252 (ESC t 16 on
Epson-compatible 58 mm printers), so a merchant name with Latin-1 letters prints as typed;
a character the code page lacks, and any control character (an ESC in a pushed merchant
name would otherwise reach the printer as a command), prints as "?". The slip's first line
(the merchant or report heading) and its AMOUNT line are bold; GS V feeds and cuts.
"""

from micropython import const

_INIT = b"\x1b@"  # ESC @: initialise (clears modes, the code page too)
_CODE_PAGE = b"\x1bt\x10"  # ESC t 16: Windows-1252
_BOLD_ON = b"\x1bE\x01"  # ESC E 1
_BOLD_OFF = b"\x1bE\x00"  # ESC E 0
_CUT = b"\x1dV\x42\x03"  # GS V 66 3: feed three lines and cut
_NEWLINE = b"\n"
_LINE_BYTES = const(48)  # the widest receipt; longer text goes out in pieces
_EURO = const(0x20AC)
_UNPRINTABLE = const(0x3F)  # "?"


def encode_1252(text, out):
    """Text into out (a bytearray at least len(text) long) in Windows-1252; the length."""
    for index, char in enumerate(text):
        code = ord(char)
        if code == _EURO:
            code = 0x80
        elif code < 0x20 or 0x7F <= code < 0xA0 or code > 0xFF:
            code = _UNPRINTABLE
        out[index] = code
    return len(text)


class Printer:
    def __init__(self, uart):
        self.uart = uart  # public: the smoke test asks the printer its status
        self._line = bytearray(_LINE_BYTES)  # reused for every line
        self._view = memoryview(self._line)

    def print_lines(self, lines):
        uart = self.uart
        uart.write(_INIT)
        uart.write(_CODE_PAGE)
        # The lines are made as they are taken (pos.receipt): an error while one is made
        # (no heap for it) ends the slip where it is, bold off and cut, and goes on up.
        try:
            for index, text in enumerate(lines):
                bold = index == 0 or text.startswith("AMOUNT")
                if bold:
                    uart.write(_BOLD_ON)
                for start in range(0, len(text), _LINE_BYTES):
                    length = encode_1252(text[start : start + _LINE_BYTES], self._line)
                    uart.write(self._view[:length])
                if bold:
                    uart.write(_BOLD_OFF)
                uart.write(_NEWLINE)
        except BaseException:
            uart.write(_BOLD_OFF)
            uart.write(_CUT)
            raise
        uart.write(_CUT)
