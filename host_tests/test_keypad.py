"""lib/board/keypad.py on CPython over fake pins it is given: scanning, debounce, the ring
and the map."""

import pytest

from boardkit import Matrix, import_driver


@pytest.fixture()
def keypad_module(monkeypatch):
    return import_driver(monkeypatch, "keypad")


@pytest.fixture()
def matrix():
    return Matrix()


def make(keypad_module, matrix):
    return keypad_module.Keypad(matrix.rows, matrix.cols)


def press(keypad_module, matrix, keypad, key, scans):
    index = keypad_module.KEYMAP.index(key)
    matrix.pressed = (index // 4, index % 4)
    for _ in range(scans):
        keypad.scan()


def release(matrix, keypad, scans):
    matrix.pressed = None
    for _ in range(scans):
        keypad.scan()


def test_a_settled_press_is_one_key(keypad_module, matrix):
    keypad = make(keypad_module, matrix)
    press(keypad_module, matrix, keypad, "7", 10)
    assert keypad.pop() == "7"
    assert keypad.pop() is None  # held down: still one key
    release(matrix, keypad, 10)
    press(keypad_module, matrix, keypad, "#", 10)
    assert keypad.pop() == "#"


def test_a_bounce_shorter_than_the_debounce_is_ignored(keypad_module, matrix):
    keypad = make(keypad_module, matrix)
    scans_to_settle = keypad_module.DEBOUNCE_MS // keypad_module.SCAN_MS
    press(keypad_module, matrix, keypad, "5", scans_to_settle)  # one scan short of settling
    release(matrix, keypad, 1)
    assert keypad.pop() is None
    press(keypad_module, matrix, keypad, "5", scans_to_settle + 1)
    assert keypad.pop() == "5"


def test_every_key_maps_and_the_ring_keeps_order(keypad_module, matrix):
    keypad = make(keypad_module, matrix)
    for key in "123A456B789C*0#":
        press(keypad_module, matrix, keypad, key, 5)
        release(matrix, keypad, 5)
    assert "".join(iter(keypad.pop, None)) == "123A456B789C*0#"


def test_a_full_ring_drops_keys_rather_than_overwrite(keypad_module, matrix):
    keypad = make(keypad_module, matrix)
    for _ in range(20):  # more presses than the ring holds, none taken
        press(keypad_module, matrix, keypad, "1", 5)
        release(matrix, keypad, 5)
    assert len(list(iter(keypad.pop, None))) == 15  # 16 slots, one kept free


def test_rows_are_left_high_after_every_scan(keypad_module, matrix):
    keypad = make(keypad_module, matrix)
    press(keypad_module, matrix, keypad, "9", 3)
    assert [row.level for row in matrix.rows] == [1, 1, 1, 1]


def test_held_star_is_seen_for_safe_mode(keypad_module, matrix):
    keypad = make(keypad_module, matrix)
    assert not keypad.held("*")
    press(keypad_module, matrix, keypad, "*", 0)
    assert keypad.held("*")
    assert not keypad.held("#")
