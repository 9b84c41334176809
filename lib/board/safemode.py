"""Safe mode: holding * at power-on starts the REPL only, so a broken app can be mended.
boot.py calls check(); main.py reads ACTIVE (the module stays loaded between the two)."""

ACTIVE = False


def check():
    global ACTIVE
    from board.keypad import Keypad
    from board.pins import keypad_pins

    ACTIVE = Keypad(*keypad_pins()).held("*")
    return ACTIVE
