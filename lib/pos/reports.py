"""Per-merchant totals since the last Z, recent records for void and refund, and X/Z reports.

All of it is packed bytes kept inside the journal's sealed state file, so it is stored in
the same atomic write as the record it counts (see ledger.py): never counted twice, never lost.
"""

import struct
from array import array

from pos.money import MAX_AMOUNT_MINOR
from pos.record import CASH, CREDIT, DECLINE, REFUND, SALE, SETTLEMENT, VOID, Record

# Slots of a merchant's totals: for each of sale, refund, void and each method 1..4 a count
# and a total, then the decline count and the next Z batch number. A Z clears those but the
# batch number. Slots 26 on are the merchant's activity that pos.risk keeps (a Z keeps it).
_TYPES = (SALE, REFUND, VOID)
_SLOTS = 45
V1_SLOTS = 26  # ledger state version 1 had no activity
_DECLINES = 24
_BATCH = 25
METHOD_LABELS = ("", "Credit", "Debit", "Mobile", "Cash")

RECENT_SIZE = 32
# receipt, counter, time, kind, merchant, method, status, amount, refunded, token, last four
_RECENT_FORMAT = ">IIIBBBBII6sH"
_RECENT_BYTES = 32
RECENT_BYTES = _RECENT_BYTES
MERCHANT_TOTALS_BYTES = 1 + _SLOTS * 4  # merchant number, then the slots
_KIND = 12  # byte offsets inside an entry
_MERCHANT = 13
_STATUS = 15
_REFUNDED = 20
_TOKEN = 24
VOIDED = 1
SETTLED = 2


def _slot(kind, method):
    return (_TYPES.index(kind) * 4 + method - 1) * 2


class TotalsFull(Exception):
    """A total would pass what a record can carry: the merchant must run a Z first."""


class Totals:
    def __init__(self):
        self._merchants = {}

    def slots(self, merchant):
        """The merchant's slots (an array), or None before its first record."""
        return self._merchants.get(merchant)

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
        """Count the record; returns the merchant's slots."""
        slots = self._of(record.merchant)
        if record.kind in _TYPES:
            slot = _slot(record.kind, record.method)
            slots[slot] += 1
            slots[slot + 1] += record.amount_minor
        elif record.kind == DECLINE:
            slots[_DECLINES] += 1
        elif record.kind == SETTLEMENT:
            for i in range(_BATCH):
                slots[i] = 0
            slots[_BATCH] += 1
        return slots

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

    def settlement(self, merchant, currency, cashier=0, time=0, flags=0, into=None):
        """The Z record for a merchant: sales net of voids, and refunds (into: see
        pos.record.Record.settlement)."""
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
            cashier,
            time,
            flags,
            into,
        )

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


class RecentRecords:
    """The last RECENT_SIZE sales in a ring of packed 32-byte entries: what void and refund
    look up, and what the velocity rule counts (pos.ledger adds sales only, so declines,
    voids, refunds and Z records never push a sale out). Lookups return the entry as a
    tuple, indexed as _RECENT_FORMAT: (receipt, counter, time, kind, merchant, method,
    status, amount, refunded, token, last four)."""

    def __init__(self):
        self._buf = bytearray(RECENT_SIZE * _RECENT_BYTES)
        self.count = 0
        self._next = 0  # the slot the next entry goes into

    def _offsets_newest_first(self):
        slot = self._next
        for _ in range(self.count):
            slot = (slot - 1) % RECENT_SIZE
            yield slot * _RECENT_BYTES

    def add(self, record, counter):
        struct.pack_into(
            _RECENT_FORMAT,
            self._buf,
            self._next * _RECENT_BYTES,
            record.receipt,
            counter,
            record.time,
            record.kind,
            record.merchant,
            record.method,
            0,
            record.amount_minor,
            0,
            record.token,
            record.last_four,
        )
        self._next = (self._next + 1) % RECENT_SIZE
        if self.count < RECENT_SIZE:
            self.count += 1

    def _sale_offset(self, receipt):
        buf = self._buf
        for offset in self._offsets_newest_first():
            if buf[offset + _KIND] == SALE and struct.unpack_from(">I", buf, offset)[0] == receipt:
                return offset
        return -1

    def last_sale(self):
        for offset in self._offsets_newest_first():
            if self._buf[offset + _KIND] == SALE:
                return struct.unpack_from(_RECENT_FORMAT, self._buf, offset)
        return None

    def apply(self, record):
        """Mark what a void, refund or Z does to the sales it refers to."""
        buf = self._buf
        if record.kind == VOID or record.kind == REFUND:
            offset = self._sale_offset(record.reference)
            if offset < 0:
                return
            if record.kind == VOID:
                buf[offset + _STATUS] |= VOIDED
            else:
                refunded = struct.unpack_from(">I", buf, offset + _REFUNDED)[0]
                struct.pack_into(">I", buf, offset + _REFUNDED, refunded + record.amount_minor)
        elif record.kind == SETTLEMENT:
            for offset in self._offsets_newest_first():
                if buf[offset + _MERCHANT] == record.merchant:
                    buf[offset + _STATUS] |= SETTLED

    def token_uses(self, token, since):
        """Approved sales paid with this card token at or after since (Unix seconds). With
        since 0 (the clock not set) every one counts; once it is set, those made while it
        was not (time 0, of unknown age) no longer do."""
        buf = self._buf
        uses = 0
        for offset in self._offsets_newest_first():
            if buf[offset + _KIND] != SALE:
                continue
            start = offset + _TOKEN
            same = True
            for i in range(6):
                if buf[start + i] != token[i]:
                    same = False
                    break
            if same:
                time = struct.unpack_from(">I", buf, offset + 8)[0]
                if not since or (time and time >= since):
                    uses += 1
        return uses

    def time_of(self, counter):
        for offset in self._offsets_newest_first():
            if struct.unpack_from(">I", self._buf, offset + 4)[0] == counter:
                return struct.unpack_from(">I", self._buf, offset + 8)[0]
        return None

    def packed_size(self):
        return 1 + self.count * _RECENT_BYTES

    def pack_into(self, buf, offset):
        """count, then the entries oldest first."""
        buf[offset] = self.count
        offset += 1
        slot = (self._next - self.count) % RECENT_SIZE
        for _ in range(self.count):
            start = slot * _RECENT_BYTES
            buf[offset : offset + _RECENT_BYTES] = memoryview(self._buf)[
                start : start + _RECENT_BYTES
            ]
            offset += _RECENT_BYTES
            slot = (slot + 1) % RECENT_SIZE
        return offset
