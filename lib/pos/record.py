"""One transaction record in its packed, 32-byte plaintext form (sealed before it is stored).

Layout, big-endian (struct ">BBBBBBHIIII6sH"), 32 bytes, one AES block pair:

    0  version      format version of this layout (1)
    1  kind         record type << 4 | payment method
    2  reason       reason code (pos.risk: 0 = approved; a decline says why; a sale a
                    supervisor approved over a rule keeps that rule's code, FLAG_SUPERVISOR)
    3  merchant     merchant menu number, 1..255
    4  cashier      cashier number, 0..255 (0 = the terminal itself)
    5  flags        FLAG_OFFLINE, FLAG_SUPERVISOR, ...
    6  currency     ISO 4217 numeric code
    8  amount       amount in minor units, 0..MAX_AMOUNT_MINOR
   12  time         seconds since 1970-01-01 UTC; 0 while the clock is not set
   16  receipt      terminal receipt number
   20  reference    refund/void: receipt number of the original (0 for none); a sale a
                    supervisor approved (FLAG_SUPERVISOR): that supervisor's number (else
                    0); settlement: the Z batch number; block: the reasons of the declines
                    that led to it, one bit per reason code (1 << code)
   24  token        6-byte keyed card token (zeros for cash); settlement: sale count (H) and
                    refund total in minor units (I)
   30  last_four    last four card digits as a number, LAST_FOUR_NONE when there are none;
                    settlement: refund count

A BLOCK record (an automatic block, pos.autoblock) carries the card's token, the reason
and merchant of the decline that tripped the rule, the number of declines counted as its
amount, and their reasons in reference; with FLAG_LIFTED it records a supervisor lifting a
block (cashier: that supervisor). It moves no money and no totals.

Money is an integer number of minor units; a card number never appears, only its token.
"""

import struct

from pos.compat import const, why
from pos.money import MAX_AMOUNT_MINOR

RECORD_SIZE = const(32)
RECORD_VERSION = const(1)
_FORMAT = ">BBBBBBHIIII6sH"

# Record types.
SALE = const(1)
REFUND = const(2)
VOID = const(3)
DECLINE = const(4)
SETTLEMENT = const(5)
# 6: BLOCK, a card put on (or taken off) this terminal's block list: pos.autoblock names it,
# so that the resident module carries no more names (each is heap on MicroPython).
_BLOCK = const(6)

# Payment methods.
NO_METHOD = const(0)
CREDIT = const(1)
DEBIT = const(2)
MOBILE = const(3)
CASH = const(4)

FLAG_OFFLINE = const(1)  # taken while the link was down
FLAG_SUPERVISOR = const(2)  # a supervisor PIN approved it
FLAG_KEYED = const(4)  # card number keyed in rather than read
# 8: FLAG_LIFTED, a BLOCK record that lifts the block (pos.autoblock)

LAST_FOUR_NONE = const(0xFFFF)
TOKEN_SIZE = const(6)
_NO_TOKEN = bytes(TOKEN_SIZE)
_MAX_U32 = 0xFFFFFFFF
_UNSET = const(0)  # an optional field left at its default (compared by identity)


# The messages and the fields' names, "|" between them, in one bytes constant: each str
# literal longer than about 10 characters would be a heap object of its own (about 35 bytes
# on the 64-bit port).
_WHY = (
    b"%s out of range: %r|"  # 0
    b"settlement count out of range|"  # 1
    b"not a settlement record|"  # 2
    b"payment method missing|"  # 3
    b"card token must be %d bytes|"  # 4
    b"record must be %d bytes, not %d|"  # 5
    b"unknown record version %d|"  # 6
    b"record type|"  # 7
    b"payment method|"  # 8
    b"merchant number|"  # 9
    b"cashier number|"  # 10
    b"amount|"  # 11
    b"currency|"  # 12
    b"time|"  # 13
    b"receipt number|"  # 14
    b"reference|"  # 15
    b"reason code|"  # 16
    b"flags|"  # 17
    b"last four digits|"  # 18
    b"refund total"  # 19
)


class RecordError(ValueError):
    """A field out of range, or bytes that are not a record of a known version."""


class Record:
    """A record's fields; pack() gives the 32 bytes that seal.py encrypts."""

    # The optional fields' defaults, read from the class until a record sets its own: each
    # field set grows the record's dict, and with all thirteen it is a 272-byte table in one
    # piece (a Z's settlement records missed it on a worn heap); most records set fewer. A
    # value that is not the default itself (False, None, 0.0) is kept, for validate().
    method = NO_METHOD
    cashier = 0
    time = 0
    receipt = 0
    reference = 0
    reason = 0
    flags = 0
    token = _NO_TOKEN
    last_four = LAST_FOUR_NONE

    def __init__(
        self,
        kind,
        merchant,
        amount_minor,
        currency,
        method=NO_METHOD,
        cashier=0,
        time=0,
        receipt=0,
        reference=0,
        reason=0,
        flags=0,
        token=_NO_TOKEN,
        last_four=LAST_FOUR_NONE,
    ):
        self.kind = kind
        self.merchant = merchant
        self.amount_minor = amount_minor
        self.currency = currency
        if method is not _UNSET:
            self.method = method
        if cashier is not _UNSET:
            self.cashier = cashier
        if time is not _UNSET:
            self.time = time
        if receipt is not _UNSET:
            self.receipt = receipt
        if reference is not _UNSET:
            self.reference = reference
        if reason is not _UNSET:
            self.reason = reason
        if flags is not _UNSET:
            self.flags = flags
        if token is not _NO_TOKEN:
            self.token = token
        if last_four is not LAST_FOUR_NONE:
            self.last_four = last_four

    @classmethod
    def settlement(
        cls,
        merchant,
        currency,
        batch,
        sale_count,
        sale_total,
        refund_count,
        refund_total,
        cashier=0,
        time=0,
        flags=0,
        into=None,
    ):
        """A Z record: the merchant's totals since the last Z, for the back end to reconcile.
        into: a record to fill, every field, instead of a new one (the terminal's reused
        record: a new one's dict is a block a worn heap may miss)."""
        if not 0 <= sale_count <= 0xFFFF or not 0 <= refund_count <= 0xFFFF:
            raise RecordError(why(_WHY, 1))
        _check(refund_total, 0, MAX_AMOUNT_MINOR, 19)
        token = struct.pack(">HI", sale_count, refund_total)
        if into is None:
            return cls(
                SETTLEMENT,
                merchant,
                sale_total,
                currency,
                cashier=cashier,
                time=time,
                reference=batch,
                flags=flags,
                token=token,
                last_four=refund_count,
            )
        into.kind = SETTLEMENT
        into.merchant = merchant
        into.amount_minor = sale_total
        into.currency = currency
        into.method = NO_METHOD
        into.cashier = cashier
        into.time = time
        into.receipt = 0
        into.reference = batch
        into.reason = 0
        into.flags = flags
        into.token = token
        into.last_four = refund_count
        return into

    def validate(self):
        _check(self.kind, SALE, _BLOCK, 7)
        _check(self.method, NO_METHOD, CASH, 8)
        if (self.kind < VOID or self.kind == DECLINE) and self.method == NO_METHOD:
            raise RecordError(why(_WHY, 3))
        _check(self.merchant, 1, 255, 9)
        _check(self.cashier, 0, 255, 10)
        _check(self.amount_minor, 0, MAX_AMOUNT_MINOR, 11)
        _check(self.currency, 0, 999, 12)
        _check(self.time, 0, _MAX_U32, 13)
        _check(self.receipt, 0, _MAX_U32, 14)
        _check(self.reference, 0, _MAX_U32, 15)
        _check(self.reason, 0, 255, 16)
        _check(self.flags, 0, 255, 17)
        if not isinstance(self.token, (bytes, bytearray)) or len(self.token) != TOKEN_SIZE:
            raise RecordError(why(_WHY, 4) % TOKEN_SIZE)
        if self.last_four != LAST_FOUR_NONE:
            _check(self.last_four, 0, 9999, 18)

    def pack_into(self, buf, offset=0):
        self.validate()
        struct.pack_into(
            _FORMAT,
            buf,
            offset,
            RECORD_VERSION,
            self.kind << 4 | self.method,
            self.reason,
            self.merchant,
            self.cashier,
            self.flags,
            self.currency,
            self.amount_minor,
            self.time,
            self.receipt,
            self.reference,
            self.token,
            self.last_four,
        )

    def pack(self):
        buf = bytearray(RECORD_SIZE)
        self.pack_into(buf)
        return buf

    @classmethod
    def unpack(cls, data):
        if len(data) != RECORD_SIZE:
            raise RecordError(why(_WHY, 5) % (RECORD_SIZE, len(data)))
        fields = struct.unpack(_FORMAT, data)
        if fields[0] != RECORD_VERSION:
            raise RecordError(why(_WHY, 6) % fields[0])
        record = cls(
            fields[1] >> 4,
            fields[3],
            fields[7],
            fields[6],
            method=fields[1] & 0x0F,
            cashier=fields[4],
            time=fields[8],
            receipt=fields[9],
            reference=fields[10],
            reason=fields[2],
            flags=fields[5],
            token=fields[11],
            last_four=fields[12],
        )
        record.validate()
        return record


def _check(value, low, high, what):
    """what: the field's name, by its number in _WHY (decoded only for the message)."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RecordError(why(_WHY, 0) % (why(_WHY, what), value))
