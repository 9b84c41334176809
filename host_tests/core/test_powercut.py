"""Power cut at every single flash program, erase and state write of a workload, in turn.

After each cut the terminal reboots (everything rebuilt from the flash and the state file)
and must show: every append that returned is present exactly once (queued, or delivered and
acked) and opens with the right keys; nothing acked is offered again beyond the last batch;
no DUKPT counter is used twice; the queue takes new records.
"""

import gc

from norflash import CutStore, NorFlash, PowerCut
from pos.journal import Journal
from pos.record import CASH, SALE, Record
from pos.txq import TxQueue
from sealcheck import IK, IK_ID, STORAGE_KEY, enable_key_cache, open_frame

SECTORS = 6
SECTOR_SIZE = 512  # ten records a sector, so the workload wraps the ring and reclaims
SALES = 70
SYNC_EVERY = 6
BATCH = 4


def sale_of(number):
    return Record(SALE, 1 + number % 3, 100 + number, 978, method=CASH, receipt=number)


def number_of(counter, frame):
    """Open a queued record with the back end's keys; return its receipt number after
    checking every field against what was appended."""
    plain = open_frame(counter, frame)
    number = Record.unpack(plain).receipt
    assert plain == bytes(sale_of(number).pack()), "record %d altered" % counter
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


def workload(journal, world, start_number):
    for number in range(start_number, SALES):
        world.pending = number
        counter = journal.append(sale_of(number))
        assert counter < MAX_COUNTER
        world.confirmed[counter] = number
        world.pending = None
        if number % SYNC_EVERY == SYNC_EVERY - 1:
            sync(journal.queue, world)
    sync(journal.queue, world)


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


def boot(flash, store):
    flash.reboot()
    return Journal(TxQueue(flash), store, STORAGE_KEY)


def check_after_cut(flash, store, world, used_before):
    journal = boot(flash, store)
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
    return journal


def run_with_cut_at(op_number):
    flash = NorFlash(SECTORS, sector_size=SECTOR_SIZE)
    store = CutStore(flash)
    Journal.provision(store, STORAGE_KEY, IK, IK_ID)
    journal = boot(flash, store)
    flash.ops = 0
    flash.cut_at(op_number, seed=op_number + 1)
    world = World()
    try:
        workload(journal, world, 0)
        return False, flash.ops
    except PowerCut:
        pass
    journal = check_after_cut(flash, store, world, journal.last_counter_used)
    # The terminal carries on: new sales are queued and everything reaches the back end.
    workload(journal, world, SALES - 5)
    for _ in range(40):
        if not journal.queue.unsent_count():
            break
        sync(journal.queue, world)
    for counter in range(MAX_COUNTER):
        assert world.delivered[counter] == world.confirmed[counter], "record %d" % counter
    return True, flash.ops


def test_cut_at_every_operation():
    enable_key_cache()
    _, total_ops = run_with_cut_at(-1)
    assert total_ops > 200
    cuts = 0
    for op_number in range(total_ops):
        cut, _ = run_with_cut_at(op_number)
        assert cut
        cuts += 1
        gc.collect()
    assert cuts == total_ops
    print("power cuts injected:", cuts)
