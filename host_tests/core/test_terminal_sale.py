"""Whole sale flows through the terminal, on both runtimes: what the cashier sees, what is
stored and what prints."""

from pos.record import CASH, CREDIT, DEBIT, MOBILE, SALE
from sealcheck import open_record
from termkit import CARD, Kit


def stored(kit):
    """The queued records, opened with the back end's keys."""

    return [open_record(counter, frame) for counter, frame in kit.ledger.queue.unsent()]


def test_login_then_merchant_menu():
    kit = Kit()
    rows = kit.rows()
    assert rows[2] == "Cashier PIN"
    rows = kit.keys("1 1 1")
    assert rows[3] == "***"
    rows = kit.keys("1 #")
    assert rows[0].startswith("Merchant?")
    assert rows[1] == "1 Noodle Bar"
    assert rows[2] == "2 Tea House"
    assert rows[3] == "3 Dumpling House"


def test_cash_sale_at_tea_house():
    kit = Kit()
    kit.login()
    rows = kit.keys("2 #")
    assert rows[0] == "Tea House"
    rows = kit.keys("1 2 3 4")
    assert rows[3] == "EUR        12.34"
    rows = kit.keys("#")
    assert rows[2] == "1 Credit 2 Debit"
    rows = kit.keys("4")
    assert rows[1] == "Confirm sale"
    assert rows[2] == "EUR        12.34"
    assert rows[3] == "Cash"
    rows = kit.keys("#")
    assert rows[0] == "Tea House"
    assert rows[1] == "APPROVED"
    assert rows[4] == "Receipt        1"
    (record,) = stored(kit)
    assert (record.kind, record.merchant, record.amount_minor) == (SALE, 2, 1234)
    assert (record.method, record.cashier, record.receipt) == (CASH, 1, 1)
    assert len(kit.printed) == 1  # cash: the customer's copy
    receipt = kit.printed[0]
    assert "Tea House" in receipt[0]
    assert any("12.34" in line for line in receipt)
    rows = kit.keys("#")
    assert rows[0].startswith("Merchant?")


def test_card_sale_keeps_only_token_and_last_four():
    kit = Kit()
    kit.login()
    kit.keys("1 # 5 0 0 # 1")
    rows = kit.keys(" ".join(CARD))
    assert rows[2] == "Read or key card"
    assert rows[3] == "4111 1111 1111" and rows[4] == "1111"  # for the cashier to check
    rows = kit.keys("#")
    assert rows[1] == "Confirm sale"
    assert rows[3] == "Credit card"
    assert rows[4] == "**** 1111"
    kit.keys("#")
    (record,) = stored(kit)
    assert record.method == CREDIT and record.last_four == 1111
    assert record.token != bytes(6)
    assert len(kit.printed) == 2  # merchant and customer copies
    for receipt in kit.printed:
        text = "\n".join(receipt)
        assert "**** 1111" in text
        assert CARD not in text and CARD[:12] not in text
    assert bytes(kit.terminal.card.buf) == bytes(len(kit.terminal.card.buf))


def test_debit_card_read_event():
    kit = Kit()
    kit.login()
    kit.keys("3 # 9 9 # 2")
    kit.feed(("card", "5555555555554444"))
    assert kit.shows("Debit card")
    kit.keys("#")
    (record,) = stored(kit)
    assert record.method == DEBIT and record.last_four == 4444 and record.merchant == 3


def test_mobile_sale_by_scan_and_by_keys():
    kit = Kit()
    kit.login()
    kit.keys("1 # 2 5 0 # 3")
    assert kit.shows("Scan or key code")
    kit.feed(("scan", "28761234567890"))
    kit.keys("#")
    kit.keys("#")
    kit.keys("1 # 1 0 0 # 3 1 2 3 4 5 6 7 #")
    kit.keys("#")
    records = stored(kit)
    assert [r.method for r in records] == [MOBILE, MOBILE]
    assert [r.last_four for r in records] == [7890, 4567]
    assert records[0].token != records[1].token


def test_bad_card_number_is_refused_and_wiped():
    kit = Kit()
    kit.login()
    kit.keys("1 # 5 0 0 # 1")
    rows = kit.keys("4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 2 #")
    assert rows[6] == "Invalid card no."
    assert kit.terminal.card.length == 0
    assert stored(kit) == []


def test_card_screen_says_read_or_key_and_shows_keyed_digits_until_ok():
    kit = Kit()
    kit.login()
    rows = kit.keys("1 # 5 0 0 # 1")
    assert rows[2] == "Read or key card"
    rows = kit.keys("4 1 1 1 1")
    assert rows[3] == "4111 1"  # the cashier checks what was keyed against the card
    rows = kit.keys("B")
    assert rows[3] == "4111"
    assert kit.terminal.screen.lcd_rows()[1:3] == ["Read or key card", "4111"]
    rows = kit.keys(" ".join("111111111111"))
    assert rows[3] == "4111 1111 1111" and rows[4] == "1111"
    assert kit.terminal.screen.lcd_rows()[1:3] == ["4111 1111 1111", "1111"]  # all of them
    rows = kit.keys("#")  # taken: the screen shows the last four only
    assert rows[1] == "Confirm sale" and rows[4] == "**** 1111"
    assert "4111" not in "".join(rows) and "1111 1111" not in "".join(rows)
    kit.keys("#")
    for receipt in kit.printed:
        assert "**** 1111" in "\n".join(receipt) and CARD[:6] not in "\n".join(receipt)
    rows = kit.keys("# 1 # 5 0 0 # 3")
    assert rows[2] == "Scan or key code"
    rows = kit.keys(" ".join("1234567890123"))
    assert rows[3] == "1234 5678 9012" and rows[4] == "3"
