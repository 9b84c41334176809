"""Power cut at every single flash program and erase of a workload, in turn: the queue's
and the state log's, across the log's checkpoints and its wrap.

After each cut the terminal reboots (the ledger rebuilt from the state log and the queue)
and must show: every booking that returned is present exactly once (queued, or delivered
and acked) and opens with the right keys; nothing acked is offered again beyond the last
batch; no DUKPT counter is used twice; the totals are exactly those of the records queued;
the queue takes new records; the clock's floor (the newest sale's time, pos.app) is that of
the newest record kept.
"""

import gc

from flashregion import Region

from expect import scratch
from norflash import NorFlash, PowerCut
from pos.journal import Journal
from pos.ledger import Ledger
from pos.record import CASH, SALE, Record
from pos.txq import TxQueue
from sealcheck import IK, IK_ID, STORAGE_KEY, enable_key_cache, open_frame

SECTORS = 6
SECTOR_SIZE = 512  # ten records a sector, so the workload wraps the ring and reclaims
LOG_BLOCKS = 12  # the state log: 12 blocks of two sectors, wrapped by the workload
CHECKPOINT_EVERY = 9
SALES = 48
SYNC_EVERY = 6
BATCH = 4
NOW = 1_795_000_000  # sale number n is made at NOW + n: the newest kept gives the floor


def sale_of(number):
    return Record(SALE, 1 + number % 3, 100 + number, 978, method=CASH, time=NOW + number)


def number_of(counter, frame):
    """Open a queued record with the back end's keys; return its number (from the amount)
    after checking every field but the receipt number against what was booked."""
    plain = open_frame(counter, frame)
    record = Record.unpack(plain)
    number = record.amount_minor - 100
    expected = sale_of(number)
    expected.receipt = record.receipt
    assert plain == bytes(expected.pack()), "record %d altered" % counter
    return number


MAX_COUNTER = 256
NONE = 0xFF  # receipt numbers stay below it


class World:
    """What outlives the terminal: the back end's store and what the cashier was told.

    Receipt numbers (below 255) stand for the records, as every field follows from the
    number. They sit in byte arrays indexed by DUKPT counter: fixed memory, so a long run
    does not fragment a 96 KiB heap.
    """

    def __init__(self):
        self.confirmed = bytearray(b"\xff" * MAX_COUNTER)  # appends that returned
        self.delivered = bytearray(b"\xff" * MAX_COUNTER)  # as the back end holds them
        self.pending = None  # number of the append in progress
        self.durable_ack = 0  # watermark of the last ack() that returned True
        self.sent_twice = 0


def workload(ledger, world, start_number):
    for number in range(start_number, SALES):
        world.pending = number
        counter = ledger.book(sale_of(number))
        assert counter < MAX_COUNTER
        world.confirmed[counter] = number
        world.pending = None
        if number % SYNC_EVERY == SYNC_EVERY - 1:
            sync(ledger.queue, world)
    sync(ledger.queue, world)


def sync(queue, world):
    top = 0
    for counter, frame in queue.unsent(BATCH):
        number = number_of(counter, frame)
        if world.delivered[counter] != NONE:
            world.sent_twice += 1
            assert world.delivered[counter] == number
        world.delivered[counter] = number
        top = counter
    if top and queue.ack(top):
        world.durable_ack = top


def boot(flash):
    flash.reboot()
    queue_bdev = Region(flash, 0, SECTORS)
    log_bdev = Region(flash, SECTORS, LOG_BLOCKS, 2)
    return Ledger(TxQueue(queue_bdev), log_bdev, STORAGE_KEY, every=CHECKPOINT_EVERY)


def check_totals(ledger, world):
    """The ledger counts exactly the records the queue holds or has delivered."""
    for merchant in (1, 2, 3):
        count = total = 0
        for counter in range(MAX_COUNTER):
            number = world.confirmed[counter]
            if number != NONE and 1 + number % 3 == merchant:
                count += 1
                total += 100 + number
        assert ledger.totals.sum(merchant, SALE) == (count, total), "merchant %d" % merchant


def check_after_cut(flash, world, used_before):
    ledger = boot(flash)
    journal = ledger.journal
    queue = journal.queue
    queued = bytearray(b"\xff" * MAX_COUNTER)
    previous = 0
    for counter, _, frame in queue.records():
        assert counter > previous, "counter %d queued twice or out of order" % counter
        previous = counter
        queued[counter] = number_of(counter, frame)
    for counter in range(MAX_COUNTER):
        number = world.confirmed[counter]
        if number == NONE:
            if queued[counter] != NONE:
                # Stored in full as the power went: it must be the record being appended.
                assert queued[counter] == world.pending, "unknown record %d" % counter
                world.confirmed[counter] = queued[counter]
        elif queued[counter] != NONE:
            assert queued[counter] == number
        else:
            assert world.delivered[counter] == number, "lost record %d" % counter
    assert queue.ack_watermark >= world.durable_ack
    for counter, _ in queue.unsent():
        assert counter > world.durable_ack, "acked record %d offered again" % counter
    assert journal.next_counter > used_before, "counter %d could be reused" % used_before
    check_totals(ledger, world)
    newest = -1
    for counter in range(MAX_COUNTER):
        if world.confirmed[counter] != NONE:
            newest = world.confirmed[counter]  # counters rise with the numbers until the cut
    sale = ledger.recent.last_sale()
    assert (sale[2] if sale else -1) == (NOW + newest if newest >= 0 else -1), "clock floor"
    return ledger


_chip = []


def run_with_cut_at(op_number):
    if not _chip:
        # The chip's bytes in a file, as a device's are on flash, not in the 96 KiB heap.
        path = scratch("powercut")
        _chip.append(NorFlash(SECTORS + 2 * LOG_BLOCKS, sector_size=SECTOR_SIZE, path=path))
    flash = _chip[0]
    flash.erase_all()
    Journal.provision(Region(flash, SECTORS, LOG_BLOCKS, 2), STORAGE_KEY, IK, IK_ID)
    ledger = boot(flash)
    flash.ops = 0
    log_erases = sum(flash.erase_counts[SECTORS:])
    flash.cut_at(op_number, seed=op_number + 1)
    world = World()
    try:
        workload(ledger, world, 0)
        check_totals(ledger, world)
        # The workload crosses checkpoints and wraps the state log: it opens more sectors
        # than the log has, reclaiming (erasing) the oldest.
        log = ledger.journal.log
        assert log.head_seq > LOG_BLOCKS
        assert sum(flash.erase_counts[SECTORS:]) > log_erases
        assert log.checkpoint_as_of > 3 * CHECKPOINT_EVERY
        return False, flash.ops
    except PowerCut:
        pass
    used_before = ledger.journal.last_counter_used
    ledger = None  # a restart: two ledgers never share a 96 KiB heap
    gc.collect()
    ledger = check_after_cut(flash, world, used_before)
    # The terminal carries on: new sales are queued and everything reaches the back end.
    workload(ledger, world, SALES - 5)
    for _ in range(40):
        if not ledger.queue.unsent_count():
            break
        sync(ledger.queue, world)
    for counter in range(MAX_COUNTER):
        assert world.delivered[counter] == world.confirmed[counter], "record %d" % counter
    check_totals(ledger, world)
    return True, flash.ops


# The cuts are shared out over six tests (the operations n with n % 6 == part), so that
# tools/test, which runs tests side by side, is not held up by one long one.
PARTS = 6


def cut_at_every_operation_of(part):
    enable_key_cache()
    _, total_ops = run_with_cut_at(-1)
    assert total_ops > 200
    cuts = 0
    for op_number in range(part, total_ops, PARTS):
        cut, _ = run_with_cut_at(op_number)
        assert cut  # the workload did not finish: the cut came, at this operation
        cuts += 1
        gc.collect()
    print("power cuts injected:", cuts, "of", total_ops)


def test_cut_at_every_operation_part_1_of_6():
    cut_at_every_operation_of(0)


def test_cut_at_every_operation_part_2_of_6():
    cut_at_every_operation_of(1)


def test_cut_at_every_operation_part_3_of_6():
    cut_at_every_operation_of(2)


def test_cut_at_every_operation_part_4_of_6():
    cut_at_every_operation_of(3)


def test_cut_at_every_operation_part_5_of_6():
    cut_at_every_operation_of(4)


def test_cut_at_every_operation_part_6_of_6():
    cut_at_every_operation_of(5)
