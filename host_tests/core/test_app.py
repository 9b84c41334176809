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


class _Contact:
    """The uplink at the network's edge: every contact gets through, and the back end
    offers these versions (config, blacklist, commands, whole, release, keys)."""

    def __init__(self, versions):
        self.versions = versions
        self.server_time = 0
        self.status = None

    def authenticate(self, link_key, store=None):
        pass

    async def poll(self):
        pass

    async def sync(self):
        return 0


def _first_contact(versions):
    """(app, its board, how many times pos.downlink was loaded) once the app's first
    contact with a back end offering `versions` has been dealt with."""
    board = Board(config_folder())
    board.uplink = _Contact(versions)
    app = App(board)
    app.start()
    loaded = []
    with_downlink = app._with_downlink

    def counted():
        loaded.append(1)
        return with_downlink()

    app._with_downlink = counted

    async def main():
        task = asyncio.create_task(app.uplink())
        for _ in range(300):
            await asyncio.sleep(0.01)
            if app._handled is not None:
                break
        task.cancel()
        await asyncio.sleep(0)

    asyncio.run(main())
    return app, board, len(loaded)


def test_nothing_new_from_the_back_end_loads_no_downlink():
    versions = (0, 0, 0, 0, 0, 0)  # what a freshly provisioned terminal has
    app, board, loaded = _first_contact(versions)
    assert app._handled == versions
    assert loaded == 0
    assert app.terminal.link_up


def test_a_newer_config_loads_the_downlink():
    versions = (3, 0, 0, 0, 0, 0)
    app, board, loaded = _first_contact(versions)
    assert loaded == 1
    assert app._handled == versions
    # This board has no downlink key, so the config is refused, and said so.
    assert [f for f in board.faults if "no downlink key" in f], board.faults
