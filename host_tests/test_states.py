"""The screen numbers: pos.states is the list, and the modules that keep private copies of
some (const() inlines a private copy at no heap cost; an imported name costs heap) agree
with it. Host-only: MicroPython keeps no private constant where a test could read it."""

import pos.received
import pos.states
import pos.terminal


def public_numbers():
    return {name: value for name, value in vars(pos.states).items() if name.isupper()}


def test_terminal_copies_match_pos_states():
    numbers = public_numbers()
    copies = {
        name[1:]: value
        for name, value in vars(pos.terminal).items()
        if name[1:] in numbers and name.startswith("_")
    }
    assert len(copies) >= 20  # every screen the terminal draws, and edit()'s outcomes
    for name, value in copies.items():
        assert numbers[name] == value, name


def test_received_copies_match_pos_states():
    assert pos.received._LOGIN == pos.states.LOGIN
    assert pos.received._MERCHANTS == pos.states.MERCHANTS


def test_screens_are_numbered_once():
    screens = [
        value
        for name, value in public_numbers().items()
        if name not in ("EDITED", "REFUSED", "EMPTY", "DONE", "BACK", "OTHER")
    ]
    assert len(screens) == 21 and len(set(screens)) == len(screens)
