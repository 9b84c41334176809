"""Heap used by one sale on the MicroPython unix port (run by tools/bench sale).

A terminal is built from the real core on the NOR-flash model, a cashier logs in, then each
sale runs from its first key (the merchant number) to "APPROVED" and back, with the receipt
printed. With the collector off, gc.mem_free() falls by everything the sale allocated and
did not free itself; a collection afterwards shows how much of that was garbage (work for
the GC, and holes in the heap) and how much the sale kept.
"""

import gc
import time

from flashregion import Region

from norflash import NorFlash
from pos.card import Tokenizer
from pos.cashiers import Cashier, Cashiers, hash_pin
from pos.journal import Journal
from pos.ledger import Ledger
from pos.merchants import Merchant, Merchants
from pos.risk import Risk
from pos.runner import Runner
from pos.terminal import Settings, Terminal
from pos.txq import TxQueue

SALES = 20
MAX = 999_999_999


def line(name, value, unit):
    print("%s: %s %s" % (name, value, unit))


def build():
    flash = NorFlash(32, sector_size=1024)
    log = Region(flash, 16, 16)
    Journal.provision(log, bytes(16), bytes(range(16)), bytes(8))
    ledger = Ledger(TxQueue(Region(flash, 0, 16)), log, bytes(16))
    limits = {"max_sale_minor": MAX, "max_refund_minor": MAX, "max_offline_sale_minor": MAX}
    merchants = Merchants(
        [Merchant(n, "10000000000000" + str(n), "Shop %d" % n, "EUR", limits) for n in (1, 2, 3)]
    )
    salt = b"bench-salt"
    cashiers = Cashiers([Cashier(1, "Ana", 1, None, hash_pin("1111", salt, 10))], salt, 10)
    terminal = Terminal(Settings(), merchants, cashiers, ledger, Tokenizer(bytes(16)), Risk())
    printed = []

    def printer(lines):  # as the board's: each line taken as it is made
        printed.append(drain(lines))

    runner = Runner(terminal, ledger, printer)
    # Each sale's records are acked at once, so the queue never fills during the run.
    ledger.queue_ack = lambda: ledger.queue.ack(ledger.queue.last_counter)
    return terminal, runner, printed


def keys(runner, text):
    for key in text.split():
        runner.feed(("key", key))


def measure(runner, printed, text):
    """(garbage bytes, kept bytes, microseconds) per sale for a key sequence."""
    keys(runner, text + " #")  # one sale first, so every buffer already exists
    runner.ledger.queue_ack()
    gc.collect()
    free_at_start = gc.mem_free()
    garbage = 0
    start = time.ticks_us()
    for _ in range(SALES):
        gc.collect()
        gc.disable()
        keys(runner, text + " #")
        printed.clear()
        free_before_collect = gc.mem_free()
        gc.enable()
        gc.collect()
        garbage += gc.mem_free() - free_before_collect
        runner.ledger.queue_ack()
    elapsed = time.ticks_diff(time.ticks_us(), start)
    gc.collect()
    kept = free_at_start - gc.mem_free()
    return garbage // SALES, kept // SALES, elapsed // SALES


def drain(lines):
    """Take a slip's lines one by one, as a printer does; how many there were."""
    count = 0
    for _ in lines:
        count += 1
    return count


def garbage_of(fn, *args):
    gc.collect()
    gc.disable()
    fn(*args)
    free_before_collect = gc.mem_free()
    gc.enable()
    gc.collect()
    return gc.mem_free() - free_before_collect


def parts(terminal, runner):
    """Where a sale's garbage comes from."""
    from pos.receipt import CUSTOMER_COPY, sale_receipt
    from pos.record import CASH, SALE, Record

    keys(runner, "2 #")
    line("key_garbage_bytes", garbage_of(runner.feed, ("key", "5")), "bytes")
    ledger = runner.ledger
    record = Record(SALE, 2, 1234, 978, method=CASH)
    line("book_garbage_bytes", garbage_of(ledger.book, record), "bytes")
    ledger.queue_ack()
    merchant = terminal.merchants.get(2)
    receipt = garbage_of(
        lambda: drain(sale_receipt(record, merchant, "T0001", "000123", False, CUSTOMER_COPY))
    )
    line("receipt_garbage_bytes", receipt, "bytes")
    keys(runner, "* *")


def main():
    terminal, runner, printed = build()
    runner.feed(("link", True))
    keys(runner, "1 1 1 1 #")
    gc.collect()
    line("heap_free_logged_in", gc.mem_free(), "bytes")
    cash = measure(runner, printed, "2 # 1 2 3 4 # 4 #")
    card = measure(runner, printed, "1 # 5 0 0 # 1 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 # #")
    line("cash_sale_garbage_bytes", cash[0], "bytes")
    line("card_sale_garbage_bytes", card[0], "bytes")
    growth = max(0, cash[1] * SALES + card[1] * SALES)
    line("heap_growth_over_%d_sales" % (2 * SALES), growth, "bytes")
    parts(terminal, runner)
    line("cash_sale_us", cash[2], "us")
    line("card_sale_us", card[2], "us")
    gc.collect()
    line("heap_free_after", gc.mem_free(), "bytes")
    assert terminal.screen.row(0).startswith("Merchant?"), terminal.screen.text()


main()
