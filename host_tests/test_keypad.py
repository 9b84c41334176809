"""lib/board/keypad.py on CPython with fake pins: scanning, debounce, the ring and the map."""

import os
import sys
import types

import pytest

ROOT_LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib")


class Matrix:
    """A 4x4 key matrix: which key (row, col) is pressed, seen through the pins."""

    def __init__(self):
        self.pressed = None
        self.rows = {}


class FakePin:
    OUT = 1
    IN = 0
    PULL_UP = 2
    matrix = None

    def __init__(self, number, mode=0, pull=None, value=None):
        self.number = number
        self.mode = mode
        self.level = 1 if value is None else value

    def value(self, level=None):
        matrix = FakePin.matrix
        if level is not None:  # a row being driven
            self.level = level
            matrix.rows[self.number] = level
            return None
        # A column reads low when its pressed key's row is driven low.
        if matrix.pressed is None:
            return 1
        row_pin, col_pin = matrix.pressed
        return 0 if col_pin == self.number and matrix.rows.get(row_pin) == 0 else 1


@pytest.fixture()
def keypad_module(monkeypatch):
    FakePin.matrix = Matrix()
    machine = types.ModuleType("machine")
    machine.Pin = FakePin
    micropython = types.ModuleType("micropython")
    micropython.const = lambda value: value
    monkeypatch.setitem(sys.modules, "machine", machine)
    monkeypatch.setitem(sys.modules, "micropython", micropython)
    monkeypatch.syspath_prepend(ROOT_LIB)
    for name in ("board.keypad", "board.pins", "board"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import board.keypad

    return board.keypad


def press(keypad_module, keypad, key, scans):
    from board import pins

    index = keypad_module.KEYMAP.index(key)
    FakePin.matrix.pressed = (pins.KEYPAD_ROWS[index // 4], pins.KEYPAD_COLS[index % 4])
    for _ in range(scans):
        keypad.scan()


def release(keypad, scans):
    FakePin.matrix.pressed = None
    for _ in range(scans):
        keypad.scan()


def test_a_settled_press_is_one_key(keypad_module):
    keypad = keypad_module.Keypad()
    press(keypad_module, keypad, "7", 10)
    assert keypad.pop() == "7"
    assert keypad.pop() is None  # held down: still one key
    release(keypad, 10)
    press(keypad_module, keypad, "#", 10)
    assert keypad.pop() == "#"


def test_a_bounce_shorter_than_the_debounce_is_ignored(keypad_module):
    keypad = keypad_module.Keypad()
    scans_to_settle = keypad_module.DEBOUNCE_MS // keypad_module.SCAN_MS
    press(keypad_module, keypad, "5", scans_to_settle)  # one scan short of settling
    release(keypad, 1)
    assert keypad.pop() is None
    press(keypad_module, keypad, "5", scans_to_settle + 1)
    assert keypad.pop() == "5"


def test_every_key_maps_and_the_ring_keeps_order(keypad_module):
    keypad = keypad_module.Keypad()
    for key in "123A456B789C*0#":
        press(keypad_module, keypad, key, 5)
        release(keypad, 5)
    assert "".join(iter(keypad.pop, None)) == "123A456B789C*0#"


def test_held_star_is_seen_for_safe_mode(keypad_module):
    keypad = keypad_module.Keypad()
    assert not keypad.held("*")
    press(keypad_module, keypad, "*", 0)
    assert keypad.held("*")
    assert not keypad.held("#")
