"""A food court's ledger for the back-office tests: two terminals, three merchants (one on
both terminals), a day and a half of sales, voids, refunds and Z settlements sealed by the
real terminal ledger, and one account per role."""

import os

from fastapi.testclient import TestClient
from flashregion import Region

from norflash import NorFlash
from pos.derive import derive_initial_key
from pos.journal import Journal
from pos.ledger import Ledger
from pos.record import CASH, CREDIT, DEBIT, REFUND, SALE, VOID, Record
from pos.txq import TxQueue
from tools.host.backend import LedgerDB, make_app
from tools.host.backend.office.accounts import hash_password
from tools.host.backend.office.store import OfficeStore

BDK = bytes(range(16, 32))
NOODLES = "800000000000001"
TEA = "800000000000002"
DUMPLINGS = "800000000000003"
MERCHANT_IDS = (NOODLES, TEA, DUMPLINGS)
PASSWORD = "correct horse battery"
DAY1 = 1795824000  # 2026-11-28 00:00 UTC
DAY2 = DAY1 + 86400
# Per terminal: (tid, IK ID, [(number, merchant ID, name)]). Noodles are number 1 on the
# first terminal and number 3 on the second: a merchant is its ID, not its menu number.
TERMINALS = (
    (
        "T0001",
        bytes.fromhex("a1a2a3a4a5a6a7a8"),
        [(1, NOODLES, "Noodle Bar"), (2, TEA, "Tea House")],
    ),
    (
        "T0002",
        bytes.fromhex("b1b2b3b4b5b6b7b8"),
        [(1, DUMPLINGS, "Dumpling House"), (3, NOODLES, "Noodle Bar")],
    ),
)


class Terminal:
    def __init__(self, ik_id):
        flash = NorFlash(16, sector_size=1024)
        queue, log = Region(flash, 0, 8), Region(flash, 8, 8)
        Journal.provision(log, b"storage-key-0003", derive_initial_key(BDK, ik_id), ik_id)
        self.ledger = Ledger(TxQueue(queue), log, b"storage-key-0003")

    def book(self, kind, merchant, amount, when, method=CASH, reference=0, last_four=0xFFFF):
        record = Record(
            kind,
            merchant,
            amount,
            978,
            method=method,
            time=when,
            reference=reference,
            cashier=1,
            last_four=last_four,
        )
        self.ledger.book(record)
        return record.receipt

    def settle(self, merchant, when):
        record = self.ledger.totals.settlement(merchant, 978)
        record.time = when
        self.ledger.book(record)

    def batch(self):
        return b"".join(bytes(frame) for _, frame in self.ledger.queue.unsent())


def fill(db):
    """Book a day and a half on both terminals and store it in db; returns the terminals."""
    first = Terminal(TERMINALS[0][1])
    second = Terminal(TERMINALS[1][1])
    h = 3600
    # Day 1 on T0001: noodles and tea, then a Z for noodles.
    first.book(SALE, 1, 1250, DAY1 + 9 * h)
    voided = first.book(SALE, 1, 800, DAY1 + 10 * h, CREDIT, last_four=4242)
    first.book(VOID, 1, 800, DAY1 + 10 * h + 60, CREDIT, reference=voided, last_four=4242)
    first.book(SALE, 2, 450, DAY1 + 11 * h)
    tea = first.book(SALE, 2, 990, DAY1 + 12 * h, DEBIT, last_four=1111)
    first.book(REFUND, 2, 990, DAY1 + 13 * h, DEBIT, reference=tea, last_four=1111)
    first.book(SALE, 1, 2100, DAY1 + 18 * h, DEBIT, last_four=5678)
    first.settle(1, DAY1 + 22 * h)
    # Day 2: noodles on both terminals, dumplings on the second.
    first.book(SALE, 1, 1575, DAY2 + 9 * h)
    second.book(SALE, 3, 3333, DAY2 + 10 * h, CREDIT, last_four=9876)
    second.book(SALE, 1, 1234, DAY2 + 11 * h)
    second.book(SALE, 1, 4321, DAY2 + 12 * h, CREDIT, last_four=1234)
    second.settle(1, DAY2 + 13 * h)
    for (tid, ik_id, merchants), terminal in zip(TERMINALS, (first, second), strict=True):
        db.add_terminal(tid, ik_id, merchants)
        db.ingest(tid, terminal.batch())
    return first, second


_TEMPLATE = []


def make_ledger(path):
    """A filled ledger with its accounts at path, an SQLite file (made once per test run
    and copied: a password hash costs a good part of a second, on purpose) or a PostgreSQL
    URL (made anew)."""
    import shutil
    import tempfile

    if path.startswith("postgresql://"):
        return _make_ledger(path)
    if not _TEMPLATE:
        folder = tempfile.mkdtemp(prefix="onetill-office-")
        template = os.path.join(folder, "backend.db")
        _make_ledger(template).close()
        _TEMPLATE.append(template)
    shutil.copyfile(_TEMPLATE[0], path)
    return LedgerDB(path, BDK)


def _make_ledger(path):
    db = LedgerDB(path, BDK)
    fill(db)
    store = OfficeStore(db)
    store.add_user("op", "operator", None, hash_password(PASSWORD))
    for name, merchant_id in (("noodles", NOODLES), ("tea", TEA), ("dumplings", DUMPLINGS)):
        store.add_user(name, "merchant", merchant_id, hash_password(PASSWORD))
    return db


def client(db, clock=None):
    app = make_app(db, office=True)
    if clock is not None:
        app.state.office.clock = clock
        app.state.office.accounts.clock = clock
    return TestClient(app, base_url="https://testserver", follow_redirects=False)


def login(browser, name, password=PASSWORD):
    page = browser.get("/office/login")
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    return browser.post("/office/login", data={"name": name, "password": password, "csrf": token})


def csrf_of(browser, path):
    page = browser.get(path)
    return page.text.split('name="csrf" value="')[1].split('"')[0]


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
