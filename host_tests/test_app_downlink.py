"""pos.app and what the downlink brought: a pushed config waits for an idle moment and is then
in force (and after a restart); a command runs once, across restarts too.

CPython only: the app, the test kit and the runner together leave no room in the 96 KiB
test heap of the 64-bit unix port for the downlink's modules (about 4 KiB is left with the
app started). The fetching itself (pos.downlink over HTTP) runs on both runtimes in
core/test_downlink, and the firmware itself, at 96 KiB on MicroPython, against the real back
end in test_downlink_sim.
"""

import json

from downkit import cashiers, merchants

from appkit import Board, config_folder
from pos.app import App
from pos.compat import unload
from pos.terminal import AMOUNT, METHOD


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


def push_config(app, version):
    """Install a pushed config as pos.downlink leaves it: the file, and the parsed tables."""
    from pos import config
    from pos.compat import unload

    doc = {
        "version": version,
        "merchants": merchants("Noodles", max_sale=1000),
        "cashiers": cashiers(merchant=1),
    }
    with open(app.board.config_folder + "/pushed.json", "w") as out:
        json.dump(doc, out)
    parsed = config.parse_pushed(doc)
    config = None
    unload("pos.config")
    app.config_version = parsed[0]
    received(app).config = parsed[1], parsed[2]


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
    result = app._with_downlink().wanted(app)
    unload("pos.downlink")
    return result


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
    keys(app, "1 # 2 0 0 0 #")  # 20.00 is over the new 10.00 cap: refused at the amount
    assert terminal.state == AMOUNT and terminal.screen.text()[6] == "Max 10.00"
    keys(app, "B #")  # 2.00 is within it
    assert terminal.state == METHOD
    app.board.uplink = Offered((1, 0, 0))
    assert "cfg=1" in app.heartbeat() and not wanted(app)[0]  # not fetched again
    board = app.board
    app = terminal = None
    again = started_app(board)  # a restart starts with the pushed config
    assert again.config_version == 1 and again.terminal.merchants.get(1).name == "Noodles"


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
    app.board.uplink = Offered((0, 0, 1))  # the back end still lists it: not fetched again
    assert wanted(app) == (False, False, False)
    idle_moment(app)
    assert app.ledger.unsent_count() == unsent + 1
    assert started_app(app.board).command_done == 1  # after a restart too
