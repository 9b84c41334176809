"""pos.record: the packed 32-byte record, its ranges and the settlement form."""

from expect import raises
from pos.money import MAX_AMOUNT_MINOR
from pos.readout import kind_name, method_name, settlement_counts
from pos.record import (
    CASH,
    CREDIT,
    FLAG_OFFLINE,
    LAST_FOUR_NONE,
    RECORD_SIZE,
    REFUND,
    SALE,
    SETTLEMENT,
    VOID,
    Record,
    RecordError,
)

TOKEN = b"\x01\x02\x03\x04\x05\x06"


def card_sale(**changes):
    fields = {
        "kind": SALE,
        "merchant": 2,
        "amount_minor": 1234,
        "currency": 978,
        "method": CREDIT,
        "cashier": 3,
        "time": 1_795_000_000,
        "receipt": 41,
        "flags": FLAG_OFFLINE,
        "token": TOKEN,
        "last_four": 4242,
    }
    fields.update(changes)
    return Record(**fields)


def test_pack_is_32_bytes_and_round_trips():
    packed = card_sale().pack()
    assert len(packed) == RECORD_SIZE
    back = Record.unpack(bytes(packed))
    assert (back.kind, back.merchant, back.amount_minor, back.currency) == (SALE, 2, 1234, 978)
    assert (back.method, back.cashier, back.time, back.receipt) == (CREDIT, 3, 1_795_000_000, 41)
    assert (back.flags, back.token, back.last_four) == (FLAG_OFFLINE, TOKEN, 4242)
    assert kind_name(back) == "sale" and method_name(back) == "credit"


def test_cash_sale_has_no_card_data():
    record = Record(SALE, 1, 500, 978, method=CASH)
    back = Record.unpack(bytes(record.pack()))
    assert back.token == bytes(6)
    assert back.last_four == LAST_FOUR_NONE


def test_refund_and_void_reference_the_original():
    refund = Record.unpack(bytes(card_sale(kind=REFUND, reference=41, receipt=42).pack()))
    assert refund.kind == REFUND and refund.reference == 41
    void = Record(VOID, 2, 1234, 978, reference=41)
    assert Record.unpack(bytes(void.pack())).reference == 41


def test_out_of_range_fields_are_refused():
    for changes in (
        {"merchant": 0},
        {"merchant": 256},
        {"amount_minor": -1},
        {"amount_minor": MAX_AMOUNT_MINOR + 1},
        {"amount_minor": 12.5},
        {"kind": 9},
        {"method": 7},
        {"currency": 1000},
        {"time": -1},
        {"time": 1 << 32},
        {"last_four": 10000},
        {"token": b"\x01"},
        {"cashier": 300},
    ):
        raises(RecordError, card_sale(**changes).pack)


def test_sale_needs_a_method():
    raises(RecordError, Record(SALE, 1, 100, 978).pack)


def test_unpack_refuses_bad_bytes():
    packed = bytearray(card_sale().pack())
    raises(RecordError, Record.unpack, bytes(packed[:31]))
    packed[0] = 2
    raises(RecordError, Record.unpack, bytes(packed))
    packed[0] = 1
    packed[3] = 0  # merchant 0
    raises(RecordError, Record.unpack, bytes(packed))


def test_settlement_carries_counts_and_totals():
    z = Record.settlement(
        2,
        978,
        batch=7,
        sale_count=120,
        sale_total=456_789,
        refund_count=3,
        refund_total=2_500,
        time=1_795_000_000,
    )
    back = Record.unpack(bytes(z.pack()))
    assert back.kind == SETTLEMENT and back.reference == 7
    assert settlement_counts(back) == (120, 456_789, 3, 2_500)
    raises(RecordError, settlement_counts, card_sale())
    raises(RecordError, Record.settlement, 2, 978, 7, 70000, 0, 0, 0)
