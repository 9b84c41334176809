"""pos.app: the clock's floor, the newest sale's time: neither the back end nor NTP puts the
clock before it, the daily limits hold when the time moves back, and a restart keeps it.
The app is given its ledger as start() makes it, without the config (the clock needs none)."""

from appkit import Board
from pos.app import App
from pos.ledger import Ledger
from pos.record import CASH, SALE, Record
from pos.risk import today
from pos.txq import TxQueue
from sealcheck import STORAGE_KEY

NOW = 1_795_000_000
DAY = 86400


def clock_app(unix=NOW):
    """An app whose board clock reads unix and keeps what it is set to."""
    board = Board(None)
    app = App(board)
    app.ledger = Ledger(TxQueue(board.bdev), board.statelog, STORAGE_KEY)
    board.set_to = []
    board.set_time = board.set_to.append
    board.unix_time = lambda: unix
    return app, board


def book_sale(app, unix):
    app.ledger.book(Record(SALE, 1, 500, 978, method=CASH, time=unix))


def test_the_back_end_never_puts_the_clock_before_the_newest_sale():
    app, board = clock_app()
    book_sale(app, NOW - 120)
    app.set_clock(NOW - 4 * 60)  # within the bound, but before the sale: up to it
    assert board.set_to == [NOW - 120]
    board.unix_time = lambda: 0  # and on an unset clock, not far before it either
    app.set_clock(NOW - DAY)
    assert board.set_to == [NOW - 120] and "refused" in board.faults[-1]


def test_a_day_back_from_the_back_end_keeps_the_daily_limit():
    app, board = clock_app()
    book_sale(app, NOW)
    book_sale(app, NOW)
    merchant = 1
    assert today(app.ledger, merchant, NOW)[0] == 2
    app.set_clock(NOW - DAY)
    assert board.set_to == []  # refused: the clock still says today, the count stays 2
    assert today(app.ledger, merchant, board.unix_time())[0] == 2
    assert today(app.ledger, merchant, NOW - DAY)[0] == 2  # even if it had been taken


def test_ntp_sets_only_an_unset_clock_and_never_before_the_floor():
    app, board = clock_app()
    app.set_clock(NOW + 500, False)  # the clock is set: NTP is not asked
    assert board.set_to == [] and "refused" in board.faults[-1]
    book_sale(app, NOW)
    board.unix_time = lambda: 0
    app.set_clock(NOW - 60, False)  # an earlier time than the newest sale: refused
    assert board.set_to == []
    app.set_clock(NOW + 60, False)
    assert board.set_to == [NOW + 60]


def test_the_floor_survives_a_restart():
    app, board = clock_app()
    book_sale(app, NOW)
    app = App(board)  # a restart: the floor is read back from the ledger's stored state
    app.ledger = Ledger(TxQueue(board.bdev), board.statelog, STORAGE_KEY)
    board.unix_time = lambda: 0  # the clock was lost with the power
    app.set_clock(NOW - 60, False)
    app.set_clock(NOW - DAY)
    assert board.set_to == []
    app.set_clock(NOW + 5)
    assert board.set_to == [NOW + 5]
