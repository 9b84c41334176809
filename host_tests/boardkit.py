"""Fakes at the edge for lib/board's drivers on CPython: pins, a UART and a PWM channel that
record what the driver did. The drivers take these objects as they take machine's on the
ESP32; only micropython.const needs a stand-in to import them."""

import os
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_driver(monkeypatch, name):
    """board.<name> from lib/, with micropython.const as CPython lacks it."""
    micropython = types.ModuleType("micropython")
    micropython.const = lambda value: value
    monkeypatch.setitem(sys.modules, "micropython", micropython)
    monkeypatch.syspath_prepend(os.path.join(ROOT, "lib"))
    monkeypatch.delitem(sys.modules, "board." + name, raising=False)
    module = __import__("board." + name)
    return getattr(module, name)


class Matrix:
    """A 4x4 key matrix seen through its pins: which (row, column) is pressed."""

    def __init__(self):
        self.pressed = None
        self.rows = [RowPin() for _ in range(4)]
        self.cols = [ColumnPin(self, index) for index in range(4)]


class RowPin:
    """An output the keypad drives low to scan its row."""

    def __init__(self):
        self.level = 1

    def value(self, level=None):
        if level is None:
            return self.level
        self.level = level
        return None


class ColumnPin:
    """An input with a pull-up: low while its pressed key's row is driven low."""

    def __init__(self, matrix, index):
        self.matrix = matrix
        self.index = index

    def value(self, level=None):
        assert level is None, "the keypad never drives a column"
        pressed = self.matrix.pressed
        if pressed is None or pressed[1] != self.index:
            return 1
        return 0 if self.matrix.rows[pressed[0]].level == 0 else 1


class Uart:
    """A UART that keeps every byte written."""

    def __init__(self):
        self.sent = bytearray()

    def write(self, data):
        self.sent += bytes(data)
        return len(data)


class Pwm:
    """A PWM channel that logs each setting as ("freq", hz) or ("duty", u16)."""

    def __init__(self):
        self.log = []

    def freq(self, hz):
        self.log.append(("freq", hz))

    def duty_u16(self, duty):
        self.log.append(("duty", duty))
