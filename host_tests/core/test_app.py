"""pos.app: the start-up a board gets (keys, config, faults) and the event loop."""

import asyncio
import json
import os
from binascii import hexlify

from norflash import CutStore, NorFlash
from pos.app import DEVICE_KEY, App
from pos.cashiers import hash_pin
from pos.journal import Journal
from sealcheck import IK, IK_ID, STORAGE_KEY

_chip = []


def chip():
    """One flash chip for every test, erased for each: a 96 KiB heap fragments fast."""
    if not _chip:
        _chip.append(NorFlash(6, sector_size=256))
    else:
        _chip[0].erase_all()
    return _chip[0]


def config_folder(merchants_ok=True):
    folder = (os.getenv("TMPDIR") or "/tmp") + "/onetill-app-" + hexlify(os.urandom(5)).decode()
    os.mkdir(folder)
    docs = {
        "terminal.json": {"terminal_id": "T0042", "card_token_key": "00" * 16},
        "merchants.json": {
            "merchants": [
                {"number": 1, "merchant_id": "42", "name": "Soup", "currency": "EUR"}
                if merchants_ok
                else {"number": 1, "name": "Soup"}
            ]
        },
        "cashiers.json": {
            "pin_salt": "00" * 8,
            "pin_rounds": 5,
            "cashiers": [
                {
                    "number": 1,
                    "name": "Ana",
                    "role": "cashier",
                    "merchants": "all",
                    "pin_hash": hexlify(hash_pin("1234", bytes(8), 5)).decode(),
                }
            ],
        },
    }
    for name, doc in docs.items():
        with open(folder + "/" + name, "w") as out:
            out.write(json.dumps(doc))
    return folder


class Board:
    """A board at the edge: events from a list, everything shown or printed kept."""

    def __init__(self, folder, provisioned=True, events=()):
        self.bdev = chip()
        self.store = CutStore(self.bdev)
        if provisioned:
            self.store.write(DEVICE_KEY, STORAGE_KEY)
            Journal.provision(self.store, STORAGE_KEY, IK, IK_ID)
        self.config_folder = folder
        self.events = list(events)
        self.shown = 0
        self.printed = 0
        self.faults = []

    async def next_event(self):
        await asyncio.sleep(0)
        return self.events.pop(0) if self.events else None

    def show(self, screen):
        self.shown += 1
        self.last_screen = screen.text()

    def print_lines(self, lines):
        self.printed += 1

    def beep(self, kind):
        pass

    def fault(self, text):
        self.faults.append(text)

    def unix_time(self):
        return 1_795_000_000

    def feed_watchdog(self):
        pass


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
