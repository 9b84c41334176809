"""Starts the terminal on the ESP32: builds the board and runs pos.app. An uncaught error is
written to the fault log and shown, then the terminal restarts."""

import gc
import sys

import machine

from board import safemode

# Held before the app's code is imported, let go just before it starts (see pos.app).
_early_reserve = bytearray(16 * 1024)  # type: bytearray | None


def start():
    global _early_reserve
    from board.esp32board import Esp32Board, log_fault

    board = None
    try:
        board = Esp32Board()
        from pos.app import App

        app = App(board)
        _early_reserve = None
        gc.collect()
        app.start()
        if app.ledger is not None:
            board.connect(app.ledger.queue)
        from pos.compat import run

        run(app.main())
    except Exception as exc:  # anything at all: log it, show it, restart
        log_fault("crash: %r" % (exc,))
        sys.print_exception(exc)
        if board is not None:
            from pos.screen import Screen

            screen = Screen()
            screen.put(1, b"TERMINAL FAULT")
            screen.put(2, b"Restarting...")
            screen.put(3, str(exc)[:16])
            board.show(screen)
        machine.reset()


if not safemode.ACTIVE:
    start()
