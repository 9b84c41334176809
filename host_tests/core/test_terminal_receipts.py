"""Void and refund by receipt number: what the terminal says of a number that is no sale,
how the confirm screens fit any number, and who may authorise."""

from sealcheck import open_record
from termkit import Kit


def stored(kit):
    return [open_record(counter, frame) for counter, frame in kit.ledger.queue.unsent()]


def test_refund_says_what_the_receipt_is():
    kit = Kit()
    kit.login()
    kit.sale(amount="1 0 0 0")  # receipt 1
    kit.keys("#")
    kit.sale(amount="5 0 0")  # receipt 2, voided by receipt 3
    kit.keys("# A 1 # #")
    kit.keys("A 2 9 9 9 9 # 1 # 1 0 0 # # #")  # receipt 4: a refund of 1.00 of receipt 1
    assert [r.receipt for r in stored(kit)] == [1, 2, 3, 4]
    kit.keys("A 2 9 9 9 9 #")
    for receipt, said in (
        ("2", "Sale voided"),
        ("3", "Not a sale"),  # the void
        ("4", "Not a sale"),  # the refund
        ("5", "No such receipt"),  # not given yet
        ("0", "No such receipt"),
    ):
        rows = kit.keys(receipt + " #")
        assert rows[6] == said, (receipt, rows[6])
        assert rows[2] == "Orig. receipt no"
    rows = kit.keys("1 #")  # the sale itself may be refunded still (what is left of it)
    assert rows[2] == "Refund amount"


def test_refund_of_a_z_or_a_decline_says_not_a_sale():
    kit = Kit(limits={"max_day_count": 1})  # Tea House: one sale a day
    kit.login()
    kit.sale(amount="1 0 0 0")  # receipt 1
    kit.keys("#")
    assert kit.sale(amount="1 0 0 0")[1] == "DECLINED"  # receipt 2
    kit.keys("# A 4 9 9 9 9 # 2 # # #")  # receipt 3: the Z of Tea House
    assert [r.receipt for r in stored(kit)] == [1, 2, 3]
    kit.keys("A 2 9 9 9 9 #")
    for receipt in "23":
        assert kit.keys(receipt + " #")[6] == "Not a sale"


def test_confirm_screens_fit_receipt_numbers_of_any_length():
    kit = Kit()
    kit.login()
    for receipt in (12, 3456, 1234567):
        kit.ledger.next_receipt = receipt  # as if that many records were booked before
        kit.sale(amount="1 0 0 0")
        rows = kit.keys("# A 1")
        assert rows[1].split()[0] == "Void" and rows[1].split()[-1] == str(receipt), rows[1]
        kit.keys("* A 2 9 9 9 9 # " + " ".join(str(receipt)) + " # 1 #")
        rows = kit.rows()
        assert rows[1].split()[0] == "Refund" and rows[1].split()[-1] == str(receipt), rows[1]
        kit.keys("* * * * *")  # back to the amount, clear it, receipt, menu, merchants
    assert kit.rows()[0].startswith("Merchant?")


def test_a_cashiers_pin_at_the_supervisor_prompt_is_refused_not_counted():
    kit = Kit()
    kit.login()
    kit.keys("A 2")
    for _ in range(3):  # three of them would lock the terminal, were they counted
        rows = kit.keys("1 1 1 1 #")
        assert rows[6] == "Not a supervisor" and rows[2] == "Supervisor PIN"
    rows = kit.keys("5 5 5 5 #")  # an unknown PIN counts
    assert rows[6] == "Wrong PIN 2 left"
    rows = kit.keys("9 9 9 9 #")
    assert rows[2] == "Orig. receipt no"


def test_a_receipt_reaches_the_printer_as_lines_made_one_at_a_time():
    """Not a list: a card sale's two copies were 28 lines of text in the heap at once."""
    kit = Kit()
    kit.login()
    slips = kit.watch_slips()
    assert kit.card_sale("1")[1] == "APPROVED"
    assert slips == [False, False]
    merchant_copy, customer_copy = kit.printed[-2:]
    assert merchant_copy[-1].strip() == "MERCHANT COPY"
    assert customer_copy[-1].strip() == "CUSTOMER COPY"
    assert merchant_copy[:-1] == customer_copy[:-1]
    assert "**** 1111" in customer_copy[8]
