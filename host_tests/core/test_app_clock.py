"""pos.app: the one rule for the clock. The back end's time (authenticated) corrects it
forward freely and back five minutes at most; NTP's sets only an unset clock; neither goes
before the newest sale (test_app_floor)."""

from appkit import Board, config_folder
from pos.app import CLOCK_BACK_MAX_S, App

NOW = 1_795_000_000
DAY = 86400


def clock_app(unix=NOW):
    """An app whose board clock reads unix and keeps what it is set to."""
    board = Board(config_folder())
    app = App(board)
    app.start()
    board.set_to = []
    board.set_time = board.set_to.append
    board.unix_time = lambda: unix
    return app, board


def test_clock_is_corrected_only_when_unset_or_drifting():
    app, board = clock_app()
    app.set_clock(NOW + 30)  # 30 s apart: left alone
    app.set_clock(0)  # no time from the back end
    assert board.set_to == []
    app.set_clock(NOW + 500)  # 500 s apart: corrected
    app.set_clock(NOW + DAY)  # forward: any distance
    board.unix_time = lambda: 0
    app.set_clock(NOW + 600)  # unset: set
    assert board.set_to == [NOW + 500, NOW + DAY, NOW + 600]


def test_the_back_end_puts_the_clock_back_five_minutes_at_most():
    app, board = clock_app()
    app.set_clock(NOW - 4 * 60)  # 4 minutes back: taken
    assert board.set_to == [NOW - 4 * 60]
    app.set_clock(NOW - CLOCK_BACK_MAX_S - 1)
    app.set_clock(NOW - DAY)  # a day back: refused, and said
    assert board.set_to == [NOW - 4 * 60]
    assert "refused" in board.faults[-1] and "refused" in board.faults[-2]
