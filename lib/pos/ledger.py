"""The ledger: what this terminal has booked, for every merchant, kept exact across power cuts.

It owns the journal (sealed records in the flash queue, a copy of each in the state log) and
keeps the per-merchant totals since each Z, the recent records that void and refund look up,
the next receipt number, and with the totals each merchant's activity that the risk rules
judge a sale on (pos.risk). Every change comes with a record; the state is stored as a
checkpoint now and then (journal.py) and rebuilt at start from the last one and the records
booked after it, so after a power cut the totals match the queue: a record is counted once
or, if its append never finished, not at all.
"""

import struct

from pos.journal import CHECKPOINT_EVERY, Journal
from pos.record import SALE, SETTLEMENT, Record
from pos.reports import (
    MERCHANT_TOTALS_BYTES,
    RECENT_BYTES,
    RECENT_SIZE,
    RecentRecords,
    Totals,
)
from pos.risk import count_activity
from pos.statelog import LogError

LEDGER_VERSION = 2  # 1: no activity in the totals and no UTC offset (read, written as 2)


class Ledger:
    def __init__(self, queue, log_bdev, storage_key, every=CHECKPOINT_EVERY):
        # Room for a full recent-records ring and four merchants' totals, so the state
        # buffer never grows on the sale path of a typical terminal (a busier one grows it
        # once per merchant beyond that).
        room = 9 + RECENT_SIZE * RECENT_BYTES + 4 * MERCHANT_TOTALS_BYTES
        # The recent-records ring (1 KiB in one piece) before the journal's replay, whose
        # start-up code (pos.logscan) leaves holes when it is unloaded. (The queue, made
        # before, has loaded pos.logscan already for its own recovery: the queue made
        # unrecovered and recovered here, after the ring, was measured worse, tools/bench
        # heap's day with the back end failing at 91 KiB on three terminals of three.)
        self.recent = RecentRecords()
        self.totals = Totals()
        self.journal = Journal(queue, log_bdev, storage_key, room, every)
        self.queue = queue
        self.next_receipt = 1
        # The offset "today" is told at (the terminal sets it from its settings). Kept in
        # the state, so a record replayed after a power cut counts in the day it was made.
        self.utc_offset_min = 0
        from pos import logscan  # loaded by the journal; its end_replay() unloads it

        logscan.load_ledger(self, self.journal.app_state)
        for counter, watermark, plain in logscan.replay(self.journal):
            self._apply(Record.unpack(plain), counter, watermark)
        logscan = None
        self.journal.end_replay()

    # The journal stores the ledger's state through these two, into its own buffer.
    def packed_size(self):
        return 7 + self.totals.packed_size() + self.recent.packed_size()

    def pack_into(self, buf, offset):
        buf[offset] = LEDGER_VERSION
        struct.pack_into(">Ih", buf, offset + 1, self.next_receipt, self.utc_offset_min)
        offset = self.totals.pack_into(buf, offset + 7)
        return self.recent.pack_into(buf, offset)

    def _apply(self, record, counter, watermark):
        slots = self.totals.apply(record)
        count_activity(slots, record, counter, watermark, self.utc_offset_min)
        self.recent.apply(record)
        if record.kind == SALE:  # declines, voids, refunds and Z never push a sale out
            self.recent.add(record, counter)
        if record.receipt >= self.next_receipt:
            self.next_receipt = record.receipt + 1

    def book(self, record):
        """Give record the next receipt number, store it durably, count it; return counter.

        Raises (and changes nothing) on a full queue, full totals, a bad field or a flash
        fault: the cashier is told the sale was not taken.
        """
        record.receipt = self.next_receipt
        self.totals.check(record)
        # The watermark the journal stores with the record, so a replay counts it alike.
        watermark = self.queue.ack_watermark
        counter = self.journal.append(record, self)
        self._apply(record, counter, watermark)
        if record.kind == SETTLEMENT:
            try:
                self.journal.checkpoint(self)  # a Z: the next start replays nothing before it
            except (LogError, MemoryError):
                pass  # the record is stored; the next booking writes the checkpoint
        return counter

    def unsent_count(self):
        return self.queue.unsent_count()

    def oldest_unsent_time(self):
        """Time of the oldest sale not yet acked (of the first few records waiting, which
        may be declines or voids): 0 if none or unknown."""
        for counter, _ in self.queue.unsent(4):
            time = self.recent.time_of(counter)
            if time is not None:
                return time
        return 0

    @staticmethod
    def approval_code(counter):
        return "%06d" % (counter % 1000000)
