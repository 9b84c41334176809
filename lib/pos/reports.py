"""Per-merchant totals since the last Z, recent records for void and refund, and X/Z reports.

All of it is packed bytes kept inside the journal's sealed state file, so it is stored in
the same atomic write as the record it counts (see ledger.py): never counted twice, never lost.
"""

import struct
from array import array

from pos.money import MAX_AMOUNT_MINOR, format_minor
from pos.record import CASH, CREDIT, DECLINE, REFUND, SALE, SETTLEMENT, VOID, Record

# Slots of a merchant's totals: for each of sale, refund, void and each method 1..4 a count
# and a total, then the decline count and the next Z batch number.
_TYPES = (SALE, REFUND, VOID)
_SLOTS = 26
_DECLINES = 24
_BATCH = 25
METHOD_LABELS = ("", "Credit", "Debit", "Mobile", "Cash")

RECENT_SIZE = 32
_RECENT_FORMAT = ">IIIBBBBII6sH"  # receipt, counter, time, kind, merchant, method, status,
_RECENT_BYTES = 32  #               amount, refunded, token, last four
VOIDED = 1
SETTLED = 2


def _slot(kind, method):
    return (_TYPES.index(kind) * 4 + method - 1) * 2


class TotalsFull(Exception):
    """A total would pass what a record can carry: the merchant must run a Z first."""


class Totals:
    def __init__(self):
        self._merchants = {}

    def _of(self, merchant):
        slots = self._merchants.get(merchant)
        if slots is None:
            slots = array("I", [0] * _SLOTS)
            slots[_BATCH] = 1
            self._merchants[merchant] = slots
        return slots

    def check(self, record):
        """Raise TotalsFull if applying record would overflow the merchant's totals."""
        if record.kind in _TYPES:
            slots = self._merchants.get(record.merchant)
            if slots is None:
                return
            total = self.sum(record.merchant, record.kind)[1]
            if total + record.amount_minor > MAX_AMOUNT_MINOR:
                raise TotalsFull("totals full for merchant %d: run Z" % record.merchant)

    def apply(self, record):
        slots = self._of(record.merchant)
        if record.kind in _TYPES:
            slot = _slot(record.kind, record.method)
            slots[slot] += 1
            slots[slot + 1] += record.amount_minor
        elif record.kind == DECLINE:
            slots[_DECLINES] += 1
        elif record.kind == SETTLEMENT:
            batch = slots[_BATCH] + 1
            for i in range(_SLOTS):
                slots[i] = 0
            slots[_BATCH] = batch

    def count_total(self, merchant, kind, method):
        slots = self._merchants.get(merchant)
        if slots is None:
            return 0, 0
        slot = _slot(kind, method)
        return slots[slot], slots[slot + 1]

    def sum(self, merchant, kind):
        count = total = 0
        for method in range(CREDIT, CASH + 1):
            c, t = self.count_total(merchant, kind, method)
            count += c
            total += t
        return count, total

    def declines(self, merchant):
        slots = self._merchants.get(merchant)
        return slots[_DECLINES] if slots else 0

    def batch(self, merchant):
        """The number the merchant's next Z will carry."""
        slots = self._merchants.get(merchant)
        return slots[_BATCH] if slots else 1

    def settlement(self, merchant, currency, **kw):
        """The Z record for a merchant: sales net of voids, and refunds."""
        sale_count, sale_total = self.sum(merchant, SALE)
        void_count, void_total = self.sum(merchant, VOID)
        refund_count, refund_total = self.sum(merchant, REFUND)
        return Record.settlement(
            merchant,
            currency,
            self.batch(merchant),
            sale_count - void_count,
            sale_total - void_total,
            refund_count,
            refund_total,
            **kw,
        )

    def report_lines(self, merchant, exponent):
        """(label, value) pairs of an X or Z report."""
        lines = []
        for kind, label in ((SALE, "Sales"), (REFUND, "Refunds"), (VOID, "Voids")):
            count, total = self.sum(merchant, kind)
            lines.append(("%s %d" % (label, count), format_minor(total, exponent)))
            for method in range(CREDIT, CASH + 1):
                c, t = self.count_total(merchant, kind, method)
                if c:
                    lines.append(
                        ("  %s %d" % (METHOD_LABELS[method], c), format_minor(t, exponent))
                    )
        lines.append(("Declines %d" % self.declines(merchant), ""))
        lines.append(("NET", format_minor(self.net(merchant), exponent)))
        lines.append(("Batch %d" % self.batch(merchant), ""))
        return lines

    def net(self, merchant):
        return (
            self.sum(merchant, SALE)[1]
            - self.sum(merchant, VOID)[1]
            - self.sum(merchant, REFUND)[1]
        )

    def packed_size(self):
        return 1 + len(self._merchants) * (1 + _SLOTS * 4)

    def pack_into(self, buf, offset):
        buf[offset] = len(self._merchants)
        offset += 1
        for merchant, slots in self._merchants.items():
            buf[offset] = merchant
            offset += 1
            for value in slots:
                struct.pack_into(">I", buf, offset, value)
                offset += 4
        return offset

    @classmethod
    def from_bytes(cls, data, offset=0):
        """(Totals, offset after them)."""
        totals = cls()
        count = data[offset]
        offset += 1
        for _ in range(count):
            merchant = data[offset]
            totals._merchants[merchant] = array(
                "I", struct.unpack_from(">%dI" % _SLOTS, data, offset + 1)
            )
            offset += 1 + _SLOTS * 4
        return totals, offset


class RecentRecords:
    """The last RECENT_SIZE records, newest last: what void and refund look up."""

    def __init__(self):
        self.entries = []  # lists: [receipt, counter, time, kind, merchant, method, status,
        #                            amount, refunded, token, last_four]

    def add(self, record, counter):
        self.entries.append(
            [
                record.receipt,
                counter,
                record.time,
                record.kind,
                record.merchant,
                record.method,
                0,
                record.amount_minor,
                0,
                bytes(record.token),
                record.last_four,
            ]
        )
        if len(self.entries) > RECENT_SIZE:
            self.entries.pop(0)

    def find_sale(self, receipt):
        for entry in self.entries:
            if entry[0] == receipt and entry[3] == SALE:
                return entry
        return None

    def last_sale(self):
        for i in range(len(self.entries) - 1, -1, -1):
            if self.entries[i][3] == SALE:
                return self.entries[i]
        return None

    def apply(self, record):
        """Mark what a void, refund or Z does to the sales it refers to."""
        if record.kind == VOID:
            entry = self.find_sale(record.reference)
            if entry:
                entry[6] |= VOIDED
        elif record.kind == REFUND:
            entry = self.find_sale(record.reference)
            if entry:
                entry[8] += record.amount_minor
        elif record.kind == SETTLEMENT:
            for entry in self.entries:
                if entry[4] == record.merchant:
                    entry[6] |= SETTLED

    def time_of(self, counter):
        for entry in self.entries:
            if entry[1] == counter:
                return entry[2]
        return None

    def packed_size(self):
        return 1 + len(self.entries) * _RECENT_BYTES

    def pack_into(self, buf, offset):
        buf[offset] = len(self.entries)
        offset += 1
        for entry in self.entries:
            struct.pack_into(_RECENT_FORMAT, buf, offset, *entry)
            offset += _RECENT_BYTES
        return offset

    @classmethod
    def from_bytes(cls, data, offset=0):
        recent = cls()
        count = data[offset]
        offset += 1
        for _ in range(count):
            recent.entries.append(list(struct.unpack_from(_RECENT_FORMAT, data, offset)))
            offset += _RECENT_BYTES
        return recent, offset
