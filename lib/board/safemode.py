"""Safe mode: the app does not start and the REPL is free, so a broken app can be mended and
code deployed. Entered by holding * at power-on, or for one start by the file ONCE, which
`tools/test device` writes before it resets the board (the app's watchdog, once started,
cannot be stopped). boot.py calls check(); main.py reads ACTIVE (the module stays loaded)."""

ACTIVE = False
ONCE = "safemode.once"  # relative: the ESP32 starts in /


def check():
    global ACTIVE
    import os

    try:
        os.remove(ONCE)  # there: this start only
        ACTIVE = True
        return ACTIVE
    except OSError:
        pass
    from board.keypad import Keypad
    from board.pins import keypad_pins

    ACTIVE = Keypad(*keypad_pins()).held("*")
    return ACTIVE
