"""The 4x4 matrix keypad: scanned every few milliseconds, debounced, scan codes into a
preallocated ring, one table from scan codes to the terminal's logical keys."""

from micropython import const

SCAN_MS = const(10)
DEBOUNCE_MS = const(30)  # a key must read the same for this long to count
_RING = const(16)

# Scan code (row * 4 + column) -> logical key, for the usual 4x4 membrane layout:
#   1 2 3 A / 4 5 6 B / 7 8 9 C / * 0 # D
KEYMAP = "123A456B789C*0#D"


class Keypad:
    def __init__(self, rows, cols):
        """rows: 4 output Pins, high when idle (driven low one at a time); cols: 4 input
        Pins with pull-ups (board.pins.keypad_pins() makes both for the reference board)."""
        self._rows = rows
        self._cols = cols
        self._ring = bytearray(_RING)  # scan codes waiting for the app
        self._head = 0
        self._tail = 0
        self._down = 0xFF  # the key held now (0xFF: none)
        self._candidate = 0xFF
        self._stable_ms = 0

    def _read(self):
        """The scan code of the one key pressed now, or 0xFF."""
        found = 0xFF
        for r, row in enumerate(self._rows):
            row.value(0)
            for c, col in enumerate(self._cols):
                if not col.value():
                    found = r * 4 + c
            row.value(1)
        return found

    def held(self, key):
        """Whether `key` is held right now (used by boot.py for safe mode)."""
        code = self._read()
        return code != 0xFF and KEYMAP[code] == key

    def scan(self):
        """One debounce step; call every SCAN_MS. A key is queued once, when it settles."""
        code = self._read()
        if code != self._candidate:
            self._candidate = code
            self._stable_ms = 0
            return
        self._stable_ms += SCAN_MS
        if self._stable_ms < DEBOUNCE_MS or code == self._down:
            return
        self._down = code
        if code != 0xFF:
            following = (self._head + 1) % _RING
            if following != self._tail:  # a full ring drops the key rather than block
                self._ring[self._head] = code
                self._head = following

    def pop(self):
        """The next logical key, or None."""
        if self._tail == self._head:
            return None
        code = self._ring[self._tail]
        self._tail = (self._tail + 1) % _RING
        return KEYMAP[code]
