"""pos.app: the event loop, and the display updated only when the screen changed."""

import asyncio

from appkit import Board, config_folder
from pos.app import App


def test_start_then_sell_through_the_event_loop():
    keys = "1 2 3 4 # 1 # 5 0 0 # 4 #".split()
    board = Board(config_folder(), events=[("key", k) for k in keys])
    app = App(board)
    app.start()
    assert board.last_screen[2] == "Cashier PIN"
    asyncio.run(app.main())
    assert board.last_screen[1] == "APPROVED"
    assert board.printed == 1
    assert app.ledger.queue.unsent_count() == 1
    assert board.faults == []


def test_screen_goes_to_the_display_only_when_it_changed():
    board = Board(config_folder())
    app = App(board)
    app.start()
    shown = board.shown
    for _ in range(5):
        app.feed(("tick", 0, 0))
    assert board.shown == shown
    app.feed(("key", "1"))
    assert board.shown == shown + 1
