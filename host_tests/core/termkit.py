"""Test kit: a demo terminal on the NOR-flash model, driven through the real Runner.

Merchants 1 Noodle Bar, 2 Tea House, 3 Dumpling House; cashier PIN 1111 (all merchants),
cashier 2222 (Noodle Bar only), supervisor 9999 (all).
"""

import gc

from flashregion import Region

from expect import scratch
from norflash import CutStore, NorFlash
from pos.card import Tokenizer
from pos.compat import IS_MICROPYTHON, unload
from pos.journal import Journal
from pos.ledger import Ledger
from pos.risk import Risk
from pos.runner import Runner
from pos.terminal import Settings, Terminal
from pos.txq import TxQueue
from sealcheck import IK, IK_ID, STORAGE_KEY

SALT = b"demo-salt-01"
ROUNDS = 10  # tests keep hashing cheap; devices use pos.cashiers.DEFAULT_ROUNDS
TOKEN_KEY = b"card-token-key-1"
CARD = "4111111111111111"  # a Luhn-valid test number


def merchants_doc():
    return {
        "version": 1,
        "merchants": [
            {
                "number": 1,
                "merchant_id": "100000000000001",
                "name": "Noodle Bar",
                "currency": "EUR",
                "limits": {"max_sale_minor": 50000, "max_offline_sale_minor": 20000},
            },
            {
                "number": 2,
                "merchant_id": "100000000000002",
                "name": "Tea House",
                "currency": "EUR",
            },
            {
                "number": 3,
                "merchant_id": "100000000000003",
                "name": "Dumpling House",
                "currency": "EUR",
            },
        ],
    }


def cashiers_doc():
    from pos.config import pin_hash_hex

    def cashier(number, name, role, merchants, pin):
        return {
            "number": number,
            "name": name,
            "role": role,
            "merchants": merchants,
            "pin_hash": pin_hash_hex(pin, SALT, ROUNDS),
        }

    return {
        "version": 1,
        "pin_salt": "64656d6f2d73616c742d3031",  # SALT in hex
        "pin_rounds": ROUNDS,
        "cashiers": [
            cashier(1, "Ana", "cashier", "all", "1111"),
            cashier(2, "Ben", "cashier", [1], "2222"),
            cashier(9, "Sue", "supervisor", "all", "9999"),
        ],
    }


_chips = {}


def chip(sectors, sector_size):
    """A blank flash chip of this geometry, reused across kits. Its bytes are in a file, as
    a device's are on its flash chip, not in the 96 KiB heap the app is tested in."""
    flash = _chips.get((sectors, sector_size))
    if flash is None:
        flash = _chips[(sectors, sector_size)] = NorFlash(
            sectors, sector_size=sector_size, path=scratch("chip")
        )
    else:
        flash.erase_all()
    return flash


LOG_SECTORS = 48  # the state log: 12 blocks of 1 KiB, on the queue's chip after its sectors
LOG_GROUP = 4


class Kit:
    """One terminal with its flash; boot() again to simulate a restart on the same flash."""

    def __init__(self, sectors=8, sector_size=256, limits=None, unix=1_795_000_000, **settings):
        self.flash = chip(sectors + LOG_SECTORS, sector_size)
        self.queue_bdev = Region(self.flash, 0, sectors)
        self.log_bdev = Region(self.flash, sectors, LOG_SECTORS // LOG_GROUP, LOG_GROUP)
        self.store = CutStore(self.flash)
        Journal.provision(self.log_bdev, STORAGE_KEY, IK, IK_ID)
        self.settings = Settings("T0001", TOKEN_KEY, **settings)
        self.printed = []  # the last few slips (all of them would fill a 96 KiB heap)
        self.printed_count = 0
        self.beeps = 0
        self.uploads = 0
        self.now_ms = 0
        self.unix = unix  # 2026-11-17 11:06:40 UTC; 0: the clock is not set
        self.limits = limits  # Tea House's limits (it has none by default)
        self.boot()

    def boot(self):
        # A restart: drop the running terminal before building the next (as a reset does),
        # so two of them never share a 96 KiB heap.
        self.terminal = self.runner = self.ledger = self.risk = None
        self.flash.reboot()  # the power is back, if it was cut
        gc.collect()
        self.ledger = Ledger(TxQueue(self.queue_bdev), self.log_bdev, STORAGE_KEY)
        # As the app does: the terminal, then the config parsed (and the parser unloaded to
        # free its heap), then the terminal configured.
        self.terminal = Terminal(self.settings, None, None, self.ledger, None, None, "starting")
        from pos import config

        doc = merchants_doc()
        if self.limits:
            doc["merchants"][1]["limits"] = self.limits
        merchants = config.parse_merchants(doc)
        doc = None
        cashiers = config.parse_cashiers(cashiers_doc(), merchants)
        config = None
        unload("pos.config")
        self.risk = Risk(None, self.store)
        self.terminal.configure(
            self.settings, merchants, cashiers, Tokenizer(TOKEN_KEY), self.risk
        )
        self.runner = Runner(self.terminal, self.ledger, self._print, self._beep, self._upload)
        # The PIN lockout kept on flash, as pos.app keeps it.
        from pos import lockout

        self.terminal.keep_lockout = self._keep_lockout
        self.lockout_fault = lockout.restore(self.store, STORAGE_KEY, self.terminal, self.now_ms)
        lockout = None
        if IS_MICROPYTHON:
            unload("pos.lockout")
        self.feed(("link", True))
        self.tick(0)

    def _keep_lockout(self, terminal):
        from pos import lockout

        lockout.save(self.store, STORAGE_KEY, terminal)
        lockout = None
        if IS_MICROPYTHON:  # as the app does; CPython's full collection costs ~0.1 s a PIN
            unload("pos.lockout")
        return True

    def _print(self, lines):
        self.printed.append(list(lines))  # the printer takes a slip's lines as they are made
        self.printed_count += 1
        if len(self.printed) > 4:
            self.printed.pop(0)

    def watch_slips(self):
        """A list that gets, for each slip from now on, whether it reached the printer as a
        list or tuple (the core hands it over as lines made one at a time)."""
        slips = []
        printer = self.runner.printer

        def watch(lines):
            slips.append(isinstance(lines, (list, tuple)))
            printer(lines)

        self.runner.printer = watch
        return slips

    def watch_bookings(self, note):
        """A list that gets note(record) for each record handed to the ledger from now on,
        as it is handed over."""
        booked = []
        book = self.ledger.book

        def watch(record):
            booked.append(note(record))
            return book(record)

        self.ledger.book = watch
        return booked

    def _beep(self, kind):
        self.beeps += 1

    def _upload(self):
        self.uploads += 1

    def feed(self, event):
        return self.runner.feed(event)

    def tick(self, ms):
        self.now_ms += ms
        self.feed(("tick", self.now_ms, self.unix + self.now_ms // 1000))

    def keys(self, text):
        """Type space-separated keys; returns the screen rows afterwards."""
        for key in text.split():
            self.feed(("key", key))
        return self.rows()

    def rows(self):
        return self.terminal.screen.text()

    def shows(self, text):
        for row in self.rows():
            if text in row:
                return True
        return False

    def login(self, pin="1111"):
        return self.keys(" ".join(pin) + " #")

    def sale(self, merchant="2", amount="1 2 3 4", method="4"):
        self.keys(merchant + " #")
        self.keys(amount + " #")
        self.keys(method)
        return self.keys("#")

    def card_sale(self, merchant="2", amount="1 2 3 4", card=CARD):
        """A sale keyed with a card number; returns the screen after confirming."""
        self.keys(merchant + " # " + amount + " # 1 " + " ".join(card) + " #")
        return self.keys("#")

    def newest(self):
        """The newest record in the queue, opened."""
        from sealcheck import open_record

        newest = None
        for entry in self.ledger.queue.unsent():
            newest = entry
        return open_record(*newest)

    def at(self, unix):
        """Set the wall clock (0: not set) and let a tick carry it to the terminal."""
        self.unix = unix - self.now_ms // 1000 if unix else 0
        if not unix:
            self.terminal.unix = 0
        self.tick(0)
