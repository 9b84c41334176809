"""The reference board's parts faked at the pins, for tools/emu/smoke.py on the unix port
(which has no Pin, UART or PWM): the real keypad, printer and buzzer drivers of lib/board
over fake pins that press a few keys on a schedule, a UART that answers the printer's status
request, and a PWM channel; the display only counts what it was shown."""

from board.buzzer import Buzzer
from board.keypad import KEYMAP, Keypad
from board.printer import Printer
from pos.compat import ticks_diff, ticks_ms

# (key, pressed from ms, released at ms) after the keypad is first scanned.
PRESSES = (("1", 100, 200), ("#", 400, 500), ("D", 700, 800))


class _Keys:
    """Which (row, column) the schedule holds down now."""

    def __init__(self):
        self.started = None
        self.rows = [_Row() for _ in range(4)]

    def pressed(self):
        if self.started is None:
            self.started = ticks_ms()
        now = ticks_diff(ticks_ms(), self.started)
        for key, down, up in PRESSES:
            if down <= now < up:
                code = KEYMAP.index(key)
                return code // 4, code % 4
        return None


class _Row:
    def __init__(self):
        self.level = 1

    def value(self, level=None):
        if level is None:
            return self.level
        self.level = level


class _Column:
    def __init__(self, keys, index):
        self.keys = keys
        self.index = index

    def value(self):
        pressed = self.keys.pressed()
        if pressed is None or pressed[1] != self.index:
            return 1
        return 0 if self.keys.rows[pressed[0]].level == 0 else 1


class _Uart:
    """Keeps what is written; answers DLE EOT 1 as an online printer does (0x12)."""

    def __init__(self):
        self.sent = bytearray()
        self._answer = b""

    def write(self, data):
        self.sent += data
        if bytes(data) == b"\x10\x04\x01":
            self._answer = b"\x12"
        return len(data)

    def any(self):
        return len(self._answer)

    def read(self, count=None):
        answer, self._answer = self._answer, b""
        return answer or None


class _Pwm:
    def freq(self, hz):
        pass

    def duty_u16(self, duty):
        pass


class _Display:
    def __init__(self):
        self.shown = 0

    def show(self, screen):
        self.shown += 1


def make_parts():
    keys = _Keys()
    keypad = Keypad(keys.rows, [_Column(keys, index) for index in range(4)])
    return keypad, _Display(), Printer(_Uart()), Buzzer(_Pwm()), "-"
