"""Test kit for pos.app: a config folder on disk and a board at the edge (events from a list)."""

import json
import os
from binascii import hexlify

from flashregion import Region
from testkeys import IK, IK_ID, STORAGE_KEY

from expect import scratch
from norflash import CutStore, NorFlash
from pos.app import DEVICE_KEY
from pos.cashiers import hash_pin
from pos.compat import sleep_ms
from pos.journal import Journal

_chip = []


def chip():
    """One flash chip for every test, erased for each; its bytes in a file, as a device's
    are on its flash chip, not in the 96 KiB heap the app is tested in."""
    if not _chip:
        # The queue, then the state log.
        _chip.append(NorFlash(6 + 48, sector_size=256, path=scratch("chip")))
    else:
        _chip[0].erase_all()
    return _chip[0]


def config_folder(merchants_ok=True):
    folder = scratch("app")
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
    """A board at the edge: events from a list, everything shown or printed kept. It has
    every member of the board contract (pos/board_contract.pyi): pos.app reads them all."""

    def __init__(self, folder, provisioned=True, events=()):
        self.flash = chip()
        self.bdev = Region(self.flash, 0, 6)
        self.statelog = Region(self.flash, 6, 12, 4)
        self.store = CutStore(self.flash)
        if provisioned:
            self.store.write(DEVICE_KEY, STORAGE_KEY)
            Journal.provision(self.statelog, STORAGE_KEY, IK, IK_ID)
        self.config_folder = folder
        self.blacklist_path = None
        self.fault_log_path = None
        self.uplink = None
        self.reset_cause = "power"
        self.events = list(events)
        self.shown = 0
        self.printed = 0
        self.faults = []

    async def next_event(self):
        await sleep_ms(0)
        return self.events.pop(0) if self.events else None

    def show(self, screen):
        self.shown += 1
        self.last_screen = screen.text()

    def print_lines(self, lines):
        for _ in lines:  # taken whole, as a printer takes them: the core makes each line
            pass
        self.printed += 1

    def beep(self, kind):
        pass

    def fault(self, text):
        self.faults.append(text)

    def unix_time(self):
        return 1_795_000_000

    def feed_watchdog(self):
        pass

    def set_time(self, unix):
        pass

    def start(self, app):
        pass

    def rssi(self):
        return -61

    def restart(self):
        self.restarted = True
