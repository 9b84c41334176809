"""pos.app: a terminal that cannot sell says why: a bad config, no keys."""

from appkit import Board, config_folder
from pos.app import App


def test_bad_config_shows_and_sells_nothing():
    board = Board(config_folder(merchants_ok=False), events=[("key", "1")] * 4)
    app = App(board)
    app.start()
    assert board.last_screen[1] == "CONFIG ERROR"
    assert "merchant_id" in "".join(board.last_screen[3:7])
    assert board.faults and "merchant_id" in board.faults[0]


def test_unprovisioned_terminal_says_so():
    board = Board(config_folder(), provisioned=False)
    app = App(board)
    app.start()
    assert board.last_screen[1] == "TERMINAL FAULT"
    assert "provision" in "".join(board.last_screen[3:7])
