"""pos.receipt: sale, refund, void and decline receipts as lines of 32 or 48 columns."""

from expect import raises
from pos.merchants import Merchant
from pos.money import MAX_AMOUNT_MINOR
from pos.receipt import CUSTOMER_COPY, MERCHANT_COPY, center, pair, sale_receipt
from pos.record import (
    CASH,
    CREDIT,
    DEBIT,
    DECLINE,
    FLAG_OFFLINE,
    LAST_FOUR_NONE,
    MOBILE,
    REFUND,
    SALE,
    VOID,
    Record,
)

T_2026_11_27_1405 = 1795788300  # 2026-11-27 14:05 UTC
TOKEN = b"\x9a\x8b\x7c\x6d\x5e\x4f"


def _merchant(name="Noodle Bar", merchant_id="100000000000001", currency="EUR"):
    return Merchant(1, merchant_id, name, currency, {"max_sale_minor": MAX_AMOUNT_MINOR})


def _record(kind=SALE, method=CREDIT, amount=1234, last_four=4321, **fields):
    return Record(
        kind,
        1,
        amount,
        978,
        method=method,
        cashier=3,
        time=fields.get("time", T_2026_11_27_1405),
        receipt=fields.get("receipt", 57),
        reference=fields.get("reference", 0),
        reason=fields.get("reason", 0),
        token=TOKEN,
        last_four=last_four,
    )


def _lines(record, columns=32, offline=False, copy=CUSTOMER_COPY, merchant=None, **kw):
    return list(
        sale_receipt(
            record,
            merchant or _merchant(),
            kw.get("terminal_id", "T0001"),
            kw.get("approval", "A1B2C3"),
            offline,
            copy,
            columns,
            kw.get("utc_offset_min", 0),
            kw.get("reason_text", ""),
        )
    )


def _line(lines, start):
    found = [line for line in lines if line.strip().startswith(start)]
    assert len(found) == 1, (start, lines)
    return found[0]


def _has(lines, text):
    for line in lines:
        if text in line:
            return True
    return False


def _within(lines, columns):
    for line in lines:
        assert len(line) <= columns, (len(line), line)


def test_card_sale_32_columns():
    lines = _lines(_record())
    _within(lines, 32)
    assert lines[0].strip() == "Noodle Bar"
    assert lines[1].strip() == "Merchant ID 100000000000001"
    assert _line(lines, "Terminal") == "Terminal" + " " * 19 + "T0001"
    assert _line(lines, "Date") == "Date" + " " * 12 + "2026-11-27 14:05"
    assert _line(lines, "Receipt") == "Receipt" + " " * 19 + "000057"
    assert lines[5] == "-" * 32
    assert lines[6].strip() == "SALE"
    assert _line(lines, "Method").endswith(" Credit card")
    assert _line(lines, "Card") == "Card" + " " * 19 + "**** 4321"
    assert _line(lines, "AMOUNT EUR").endswith(" 12.34")
    assert len(_line(lines, "AMOUNT EUR")) == 32
    assert _line(lines, "Approval code").endswith(" A1B2C3")
    assert lines[-1].strip() == "CUSTOMER COPY"
    assert not _has(lines, "OFFLINE")
    assert not _has(lines, "Original receipt")
    assert not _has(lines, "Reason")


def test_48_columns_every_line_full_width_or_less():
    lines = _lines(_record(), 48)
    _within(lines, 48)
    assert lines[5] == "-" * 48
    assert len(_line(lines, "Terminal")) == 48
    assert len(_line(lines, "Card")) == 48
    assert _line(lines, "Card").endswith(" **** 4321")
    assert _line(lines, "AMOUNT EUR") == "AMOUNT EUR" + " " * 33 + "12.34"
    # centred lines start at the middle of the wider paper
    assert lines[0] == " " * 19 + "Noodle Bar"
    assert lines[-1] == " " * 17 + "CUSTOMER COPY"


def test_32_columns_centres_lines():
    lines = _lines(_record(), 32)
    assert lines[0] == " " * 11 + "Noodle Bar"
    assert lines[6] == " " * 14 + "SALE"


def test_longest_fields_stay_within_the_width():
    merchant = _merchant("Dumpling House Of Plenty", "123456789012345", "EUR")
    for columns in (32, 48):
        for kind in (SALE, REFUND, VOID, DECLINE):
            record = _record(kind, DEBIT, MAX_AMOUNT_MINOR, 9999, receipt=999999, reference=999998)
            lines = _lines(
                record,
                columns,
                True,
                MERCHANT_COPY,
                merchant,
                terminal_id="T000000000000016",
                approval="ZZZZZZZZ",
                reason_text="Over sale limit",
                utc_offset_min=840,
            )
            _within(lines, columns)
            assert lines[0].strip() == "Dumpling House Of Plenty"
            assert lines[1].strip() == "Merchant ID 123456789012345"
            assert _line(lines, "Terminal").endswith(" T000000000000016")


def test_card_line_shows_only_the_last_four():
    for last_four, shown in ((4321, "**** 4321"), (7, "**** 0007"), (0, "**** 0000")):
        lines = _lines(_record(last_four=last_four))
        card = _line(lines, "Card")
        assert card.endswith(" " + shown)
        assert card.count("*") == 4
        digits = 0
        for ch in card:
            if "0" <= ch <= "9":
                digits += 1
        assert digits == 4


def test_receipt_never_shows_the_token():
    from binascii import hexlify

    text = "\n".join(_lines(_record()))
    assert hexlify(TOKEN).decode() not in text
    assert hexlify(TOKEN).decode().upper() not in text


def test_mobile_sale():
    lines = _lines(_record(method=MOBILE, last_four=8899), copy=MERCHANT_COPY)
    assert _line(lines, "Method").endswith(" Mobile/QR")
    assert _line(lines, "Card").endswith(" **** 8899")
    assert lines[-1].strip() == "MERCHANT COPY"


def test_cash_sale_has_no_card_line():
    lines = _lines(_record(method=CASH, last_four=LAST_FOUR_NONE, amount=500))
    _within(lines, 32)
    assert _line(lines, "Method").endswith(" Cash")
    assert not _has(lines, "Card")
    assert not _has(lines, "****")
    assert _line(lines, "AMOUNT EUR").endswith(" 5.00")
    assert _line(lines, "Approval code").endswith(" A1B2C3")


def test_offline_line_only_when_offline():
    record = _record()
    # the receipt goes by its offline argument (the terminal derives it from the flag)
    record.flags = FLAG_OFFLINE
    online = _lines(record, offline=False)
    assert not _has(online, "OFFLINE")
    offline = _lines(_record(), offline=True)
    assert len(offline) == len(online) + 1
    assert offline[-2].strip() == "OFFLINE - not yet sent"
    assert offline[-1].strip() == "CUSTOMER COPY"
    assert _lines(_record(), 48, offline=True)[-2] == " " * 13 + "OFFLINE - not yet sent"


def test_date_with_utc_offset():
    lines = _lines(_record(time=1795822200), utc_offset_min=60)  # 23:30 UTC
    assert _line(lines, "Date").endswith(" 2026-11-28 00:30")
    lines = _lines(_record(time=1795744800), utc_offset_min=-300)  # 02:00 UTC
    assert _line(lines, "Date").endswith(" 2026-11-26 21:00")


def test_time_not_set():
    lines = _lines(_record(time=0))
    assert _line(lines, "Date") == "Date" + " " * 16 + "time not set"
    lines = _lines(_record(time=951825600), utc_offset_min=60)  # year 2000: a clock never set
    assert _line(lines, "Date").endswith(" time not set")


def test_refund_shows_minus_amount_and_original_receipt():
    record = _record(REFUND, CREDIT, 550, 4321, receipt=60, reference=57)
    lines = _lines(record)
    _within(lines, 32)
    assert lines[6].strip() == "REFUND"
    assert _line(lines, "AMOUNT EUR").endswith(" -5.50")
    assert _line(lines, "Original receipt") == "Original receipt" + " " * 10 + "000057"
    assert _line(lines, "Receipt") == "Receipt" + " " * 19 + "000060"
    assert _line(lines, "Approval code").endswith(" A1B2C3")


def test_void_shows_minus_amount_and_original_receipt():
    record = _record(VOID, CASH, 1234, LAST_FOUR_NONE, receipt=58, reference=57)
    lines = _lines(record, 48)
    _within(lines, 48)
    assert lines[6].strip() == "VOID"
    assert _line(lines, "AMOUNT EUR").endswith(" -12.34")
    assert _line(lines, "Original receipt").endswith(" 000057")
    assert not _has(lines, "Card")


def test_refund_without_reference_has_no_original_line():
    lines = _lines(_record(REFUND, CREDIT, 100, 4321, reference=0))
    assert not _has(lines, "Original receipt")
    assert _line(lines, "AMOUNT EUR").endswith(" -1.00")


def test_sale_amount_is_not_negative_and_ignores_reference():
    lines = _lines(_record(SALE, CREDIT, 1234, 4321, reference=57))
    assert not _has(lines, "-12.34")
    assert not _has(lines, "Original receipt")


def test_declined_shows_reason_not_approval():
    record = _record(DECLINE, CREDIT, 99999, 4321, reason=1)
    lines = _lines(record, reason_text="Over sale limit", approval="")
    _within(lines, 32)
    assert lines[6].strip() == "DECLINED"
    assert _line(lines, "Reason") == "Reason" + " " * 11 + "Over sale limit"
    assert not _has(lines, "Approval code")
    assert _line(lines, "AMOUNT EUR").endswith(" 999.99")  # a decline is not a minus amount


def test_copy_labels():
    merchant = _lines(_record(), copy=MERCHANT_COPY)
    customer = _lines(_record(), copy=CUSTOMER_COPY)
    assert merchant[-1].strip() == "MERCHANT COPY" and customer[-1].strip() == "CUSTOMER COPY"
    assert merchant[-1] == " " * 9 + "MERCHANT COPY"
    assert customer[-1] == " " * 9 + "CUSTOMER COPY"
    assert merchant[:-1] == customer[:-1]  # the copies differ only in the label


def test_amount_in_the_currency_exponent():
    yen = _lines(_record(amount=1500), merchant=_merchant(currency="JPY"))
    assert _line(yen, "AMOUNT JPY").endswith(" 1500")
    dinar = _lines(_record(amount=1500), merchant=_merchant(currency="KWD"))
    assert _line(dinar, "AMOUNT KWD").endswith(" 1.500")
    cents = _lines(_record(amount=5))
    assert _line(cents, "AMOUNT EUR").endswith(" 0.05")
    largest = _lines(_record(REFUND, amount=MAX_AMOUNT_MINOR))
    assert _line(largest, "AMOUNT EUR").endswith(" -9999999.99")


def test_receipt_number_six_digits():
    assert _line(_lines(_record(receipt=1)), "Receipt").endswith(" 000001")
    assert _line(_lines(_record(receipt=999999)), "Receipt").endswith(" 999999")


def test_only_32_or_48_columns():
    for columns in (0, 16, 31, 33, 40, 47, 49, 80):
        exc = raises(ValueError, _lines, _record(), columns)
        assert "32 or 48" in str(exc)


def test_pair_puts_the_value_on_the_right_edge():
    assert pair("Terminal", "T0001", 32) == "Terminal" + " " * 19 + "T0001"
    assert pair("", "x", 32) == " " * 31 + "x"
    assert pair("Approval code", "", 32) == "Approval code" + " " * 19
    for columns in (32, 48):
        assert len(pair("a", "b", columns)) == columns


def test_pair_cuts_the_label_to_make_room():
    label = "Original receipt number of the sale"
    line = pair(label, "000057", 32)
    assert line == label[:25] + " 000057"
    assert len(line) == 32
    assert pair("Reason", "x" * 31, 32) == " " + "x" * 31  # no room left for the label


def test_pair_never_runs_past_the_paper():
    for width in (30, 31, 32, 33, 40, 60):
        value = "v" * width
        for columns in (32, 48):
            line = pair("Reason", value, columns)
            assert len(line) <= columns, (width, columns, line)
            assert line.endswith(value[: columns - 1]) or line == value[:columns]
            assert "R" not in line or width < columns - 1  # no stray piece of the label
    assert pair("Reason", "v" * 40, 32) == "v" * 32


def test_center():
    assert center("SALE", 32) == " " * 14 + "SALE"
    assert center("ODD", 32) == " " * 14 + "ODD"  # the odd space goes to the right
    assert center("x" * 32, 32) == "x" * 32
    assert center("x" * 40, 32) == "x" * 32
    assert center("", 48) == " " * 24


def _report_lines():
    return [
        ("Sales 3", "45.60"),
        ("  Credit 2", "40.60"),
        ("  Cash 1", "5.00"),
        ("Refunds 1", "5.50"),
        ("Voids 0", "0.00"),
        ("Declines 2", ""),
        ("NET", "40.10"),
        ("Batch 7", ""),
    ]


def test_report_receipt_lines():
    from pos.menu_report import report_receipt

    merchant = _merchant()
    lines = list(report_receipt("X REPORT", merchant, "T0001", T_2026_11_27_1405, _report_lines()))
    _within(lines, 32)
    assert lines[0] == " " * 12 + "X REPORT"
    assert lines[1].strip() == "Noodle Bar"
    assert lines[2].strip() == "Merchant ID 100000000000001"
    assert lines[3] == "Terminal" + " " * 19 + "T0001"
    assert lines[4] == "Printed" + " " * 9 + "2026-11-27 14:05"
    assert lines[5] == "-" * 32
    assert lines[6] == "Sales 3" + " " * 20 + "45.60"
    assert lines[7] == "  Credit 2" + " " * 17 + "40.60"
    assert lines[11] == "Declines 2"  # a label without a value stands alone
    assert lines[12] == "NET" + " " * 24 + "40.10"
    assert lines[13] == "Batch 7"
    assert lines[-1] == "-" * 32
    assert len(lines) == 6 + len(_report_lines()) + 1


def test_report_receipt_48_columns_offset_and_clock_not_set():
    from pos.menu_report import report_receipt

    merchant = _merchant("Dumpling House Of Plenty", "123456789012345")
    lines = list(
        report_receipt("Z SETTLEMENT", merchant, "T0001", 1795822200, _report_lines(), 48, 60)
    )
    _within(lines, 48)
    assert lines[4].endswith(" 2026-11-28 00:30")
    assert lines[5] == "-" * 48 and lines[-1] == "-" * 48
    assert lines[6] == "Sales 3" + " " * 36 + "45.60"
    long_label = [("A label far longer than the paper is wide, which is cut", "")]
    lines = list(report_receipt("X REPORT", merchant, "T0001", 0, long_label, 32))
    _within(lines, 32)
    assert lines[4].endswith(" time not set")
    assert lines[6] == long_label[0][0][:32]
