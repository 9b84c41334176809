"""pos.app: the event loop, and the display updated only when the screen changed."""

import sys

from appkit import Board, config_folder
from pos.app import App
from pos.compat import run, sleep_ms, spawn


def test_start_then_sell_through_the_event_loop():
    keys = "1 2 3 4 # 1 # 5 0 0 # 4 #".split()
    board = Board(config_folder(), events=[("key", k) for k in keys])
    app = App(board)
    app.start()
    assert board.last_screen[2] == "Cashier PIN"
    run(app.main())
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


class _Contact:
    """The uplink at the network's edge: every contact gets through, and the back end
    offers these versions (config, blacklist, commands, whole, release, keys)."""

    def __init__(self, versions):
        self.versions = versions
        self.server_time = 0
        self.status = None
        self.sent = []

    def authenticate(self, link_key, store=None):
        pass

    async def poll(self):
        pass

    async def sync(self):
        return 0

    async def send(self, name, body):
        self.sent.append(name)


def _first_contact(versions, before=None):
    """(app, its board, how many times pos.downlink was loaded) once the app's first
    contact with a back end offering `versions` has been dealt with; before(app) first."""
    board = Board(config_folder())
    board.uplink = _Contact(versions)
    app = App(board)
    app.start()
    if before is not None:
        before(app)
    loaded = []
    with_downlink = app._with_downlink

    def counted():
        loaded.append(1)
        return with_downlink()

    app._with_downlink = counted

    async def main():
        spawn(app.uplink())
        for _ in range(300):
            await sleep_ms(10)
            if app._handled is not None:
                break  # the uplink's task ends with main

    run(main())
    return app, board, len(loaded)


def test_nothing_new_from_the_back_end_loads_no_downlink():
    versions = (0, 0, 0, 0, 0, 0)  # what a freshly provisioned terminal has
    app, board, loaded = _first_contact(versions)
    assert app._handled == versions
    assert loaded == 0
    assert app.terminal.link_up


def test_the_contact_code_leaves_the_heap_after_a_contact():
    """pos.contact (the protocol's code, 2 KiB of heap) and pos.link (the connection's, 1.2
    KiB) are loaded for a contact, by Uplink's methods, and the app unloads both once the
    contact is over: only the uplink's state (pos.uplink) stays."""
    import pos.contact  # noqa: F401  # as a contact loads them
    import pos.link  # noqa: F401

    assert "pos.contact" in sys.modules and "pos.link" in sys.modules
    app, board, loaded = _first_contact((0, 0, 0, 0, 0, 0))
    assert app._handled is not None  # the contact happened
    assert "pos.contact" not in sys.modules and "pos.link" not in sys.modules


def test_a_newer_config_loads_the_downlink():
    versions = (3, 0, 0, 0, 0, 0)
    app, board, loaded = _first_contact(versions)
    assert loaded == 1
    assert app._handled == versions
    # This board has no downlink key, so the config is refused, and said so.
    assert [f for f in board.faults if "no downlink key" in f], board.faults


def _received(app):
    from pos.compat import unload
    from pos.received import Received

    app.received = Received()
    unload("pos.received")
    return app.received


def test_a_config_once_refused_loads_no_downlink():
    versions = (3, 0, 0, 0, 0, 0)

    def refused(app):
        _received(app).refused[0] = 3

    app, board, loaded = _first_contact(versions, refused)
    assert loaded == 0 and app._handled == versions


def test_faults_to_upload_load_the_downlink_which_sends_them():
    def asked(app):
        _received(app).upload_faults = True

    app, board, loaded = _first_contact((0, 0, 0, 0, 0, 0), asked)
    assert loaded == 1
    assert board.uplink.sent == ["faults"] and not app.received.upload_faults


def test_a_release_on_trial_loads_the_downlink():
    def on_trial(app):
        app.board.store.write("update.txt", b"sw=2;trial")

    app, board, loaded = _first_contact((0, 0, 0, 0, 0, 0), on_trial)
    assert loaded == 1
