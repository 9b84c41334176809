"""pos.app and what the downlink brought: a pushed config waits for an idle moment and is then
in force (and after a restart); a command runs once, across restarts too.

CPython only: on the 64-bit unix port's 96 KiB test heap, the app with a sale made leaves too
little room to load the config parser again for a pushed config (tried: the restarts here are
tests of their own, the documents are bytes constants, and still 3 of 5 fail there). The
fetching itself (pos.downlink over HTTP) runs on both runtimes in core/test_downlink, and the
firmware itself, at 96 KiB on MicroPython, against the real back end in test_downlink_sim.
"""

import json

from appkit import Board, config_folder
from pos.app import App
from pos.compat import unload
from pos.states import AMOUNT, METHOD


class Offered:
    """The uplink as far as the app's downlink bookkeeping sees it: the versions on offer."""

    def __init__(self, versions):
        self.versions = versions


def started_app(board=None):
    app = App(board or Board(config_folder()))
    app.start()
    return app


def keys(app, text):
    for key in text.split():
        app.feed(("key", key))


# Merchant 1 renamed Noodles, with a 10.00 sale cap; cashier Ana (PIN 1234) keeps merchant
# 1. One bytes constant: the same as dict literals would keep their strings on the heap.
_PUSHED = (
    b'{"merchants": {"merchants": [{"number": 1, "merchant_id": "42", "name": "Noodles",'
    b' "currency": "EUR", "limits": {"max_sale_minor": 1000}}]}, "cashiers": {"pin_salt":'
    b' "0000000000000000", "pin_rounds": 5, "cashiers": [{"number": 1, "name": "Ana",'
    b' "role": "cashier", "merchants": [1]}]}}'
)


def pushed_doc(version):
    from binascii import hexlify

    from pos.cashiers import hash_pin

    doc = json.loads(_PUSHED)
    doc["version"] = version
    doc["cashiers"]["cashiers"][0]["pin_hash"] = hexlify(hash_pin("1234", bytes(8), 5)).decode()
    return doc


def push_config(app, version):
    """Install a pushed config as pos.downlink leaves it: the file, and the parsed tables."""

    from pos import config
    from pos.compat import unload

    doc = pushed_doc(version)
    with open(app.board.config_folder + "/pushed.json", "w") as out:
        json.dump(doc, out)
    parsed = config.parse_pushed(doc)
    config = None
    unload("pos.config")
    app.config_version = parsed[0]
    received(app).config = parsed[1], parsed[2], parsed[3]


def received(app):
    if app.received is None:
        from pos.received import Received

        app.received = Received()
        unload("pos.received")
    return app.received


def idle_moment(app):
    """What the app's clock does on each tick when something was received."""
    if app.received.waiting(app.terminal):
        from pos import received as module

        module.at_idle(app)
        module = None
        unload("pos.received")


def wanted(app):
    return app.wanted()


def test_pushed_config_waits_for_the_sale_then_is_in_force():
    app = started_app()
    terminal = app.terminal
    keys(app, "1 2 3 4 # 1 # 5")  # logged in, amount being keyed: mid-sale
    push_config(app, 1)
    idle_moment(app)
    assert terminal.merchants.get(1).name == "Soup"  # not mid-sale
    keys(app, "# 4 #")  # cash, confirm: the sale goes through under the old config
    assert terminal.screen.text()[1] == "APPROVED"
    keys(app, "#")  # back to the merchant menu: idle
    idle_moment(app)
    assert terminal.merchants.get(1).name == "Noodles" and app.received.config is None
    assert terminal.cashier is not None  # same cashier, same PIN: still logged in
    keys(app, "1 # 2 0 0 0")  # 20.00 is over the new 10.00 cap: the last 0 is refused
    assert terminal.state == AMOUNT and terminal.screen.text()[6] == "Max 10.00"
    keys(app, "#")  # 2.00 is within it
    assert terminal.state == METHOD
    app.board.uplink = Offered((1, 0, 0, 0, 0, 0))
    assert "cfg=1" in app.heartbeat() and not wanted(app)[0]  # not fetched again


def test_a_restart_starts_with_the_pushed_config():
    # What the test above leaves in the config folder (a restart is a test of its own: a
    # terminal restarts on a whole heap, and two apps do not fit one 96 KiB heap).
    board = Board(config_folder())
    with open(board.config_folder + "/pushed.json", "w") as out:
        json.dump(pushed_doc(1), out)
    app = started_app(board)
    assert app.config_version == 1 and app.terminal.merchants.get(1).name == "Noodles"
    assert app.terminal.merchants.get(1).limit("max_sale_minor") == 1000


def test_a_cashier_the_new_config_drops_is_logged_out():
    app = started_app()
    keys(app, "1 2 3 4 #")
    push_config(app, 1)
    app.received.config[1]._list[0].pin_hash = bytes(32)  # Ana's PIN changed
    idle_moment(app)
    assert app.terminal.cashier is None and app.terminal.screen.text()[6] == "Config updated"


def test_settle_command_runs_once():
    app = started_app()
    keys(app, "1 2 3 4 # 1 # 5 0 0 # 4 # #")  # a sale, back to the menu
    unsent = app.ledger.unsent_count()
    received(app).commands = [(1, "settle")]
    keys(app, "1 #")  # a sale being keyed: the command waits
    idle_moment(app)
    assert app.received.commands and app.ledger.unsent_count() == unsent
    keys(app, "*")
    idle_moment(app)
    assert app.ledger.unsent_count() == unsent + 1  # the Z record
    assert (
        app.ledger.totals.sum(1, 1)[0] == 0 and app.command_done == 1 and not app.received.commands
    )
    app.board.uplink = Offered((0, 0, 1, 0, 0, 0))  # the back end still lists it: not fetched
    assert wanted(app) == (False, False, False, False)
    idle_moment(app)
    assert app.ledger.unsent_count() == unsent + 1
    assert app.board.store.read("command.id") == b"\x00\x00\x00\x01"  # taken, for a restart


def test_a_restart_knows_the_last_command_taken():
    board = Board(config_folder())
    board.store.write("command.id", b"\x00\x00\x00\x07")  # what a settle left behind
    assert started_app(board).command_done == 7


class TimedUplink:
    """The uplink as the clock command sees it: the back end's time of the last reply."""

    def __init__(self, server_time):
        self.server_time = server_time
        self.versions = (0, 0, 1, 0)


def test_the_clock_command_lets_the_back_end_move_the_clock_once_never_before_a_sale():
    from pos.record import CASH, SALE, Record

    now = 1_795_000_000
    day = 86400
    board = Board(config_folder())
    board.set_to = []
    board.set_time = board.set_to.append
    app = started_app(board)
    app.ledger.book(Record(SALE, 1, 500, 978, method=CASH, time=now - 2 * day))
    app.set_clock(now - day)  # a clock a day ahead: the back end alone moves it 5 min at most
    assert board.set_to == [] and "refused" in board.faults[-1]
    board.uplink = TimedUplink(now - day)
    received(app).commands = [(1, "clock")]
    idle_moment(app)
    assert board.uplink.server_time == 0  # the time that came before the command is stale
    assert "the clock takes the back end's next time" in board.faults[-1]
    app.set_clock(now - day)
    assert board.set_to == [now - day]
    app.set_clock(now - 2 * day + 600)  # once: the next is bound by the 5 minutes again
    assert board.set_to == [now - day] and "refused" in board.faults[-1]
    received(app).commands = [(2, "clock")]
    idle_moment(app)
    app.set_clock(now - 3 * day)  # never before the newest sale: to it
    assert board.set_to == [now - day, now - 2 * day]
    assert app.board.store.read("command.id") == b"\x00\x00\x00\x02"


def test_without_a_downlink_key_what_is_offered_is_refused_and_said():
    """A terminal whose downlink key is gone (the uplink signs with the key it took at start,
    so a key lost since then reaches here) fetches nothing: what is offered is refused, the
    fault log and the heartbeat say why, and the versions count as handled, so the refusal
    is not repeated at every contact."""
    from pos import downlink
    from pos.compat import run

    app = started_app()
    assert app.board.store.read("downlink.key") is None
    versions = (3, 2, 0, 0, 0, 0)
    app.board.uplink = Offered(versions)  # no connect: a fetch would fail loudly
    run(downlink.catch_up(app))
    assert app.received.refused == [3, 2, 0, 0]
    assert app.board.faults[-1].endswith("no downlink key: provision this terminal again")
    assert app._handled == versions
    assert "refused" in app.heartbeat()
