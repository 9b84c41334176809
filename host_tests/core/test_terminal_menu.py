"""The function menu through the terminal: void, refund, X and Z reports, status, sync and
log out."""

from pos.record import CASH, CREDIT, FLAG_SUPERVISOR, REFUND, SETTLEMENT, VOID
from sealcheck import open_record
from termkit import CARD, Kit


def stored(kit):
    return [open_record(counter, frame) for counter, frame in kit.ledger.queue.unsent()]


def card_sale(kit, merchant="1", amount="1 2 3 4"):
    kit.keys(merchant + " # " + amount + " # 1 " + " ".join(CARD) + " #")
    return kit.keys("#")


def test_void_last_sale():
    kit = Kit()
    kit.login()
    kit.sale()
    kit.keys("#")
    rows = kit.keys("A 1")
    assert rows[0] == "Tea House"
    assert rows[1] == "Void receipt   1"
    assert rows[2] == "EUR        12.34"
    rows = kit.keys("#")
    assert rows[1] == "VOIDED"
    kit.keys("#")
    sale, void = stored(kit)
    assert (void.kind, void.reference, void.amount_minor, void.merchant) == (VOID, 1, 1234, 2)
    assert void.method == sale.method == CASH
    rows = kit.keys("A 1")
    assert rows[6] == "No sale to void"
    assert kit.ledger.totals.net(2) == 0


def test_void_needs_an_assigned_merchant():
    kit = Kit()
    kit.login()
    kit.sale(merchant="3")
    kit.keys("# A 7")
    kit.login("2222")  # Ben may use Noodle Bar only
    rows = kit.keys("A 1")
    assert rows[6] == "Not assigned"


def test_refund_with_supervisor():
    kit = Kit()
    kit.login()
    card_sale(kit)
    kit.keys("#")
    rows = kit.keys("A 2")
    assert rows[2] == "Supervisor PIN"
    rows = kit.keys("1 1 1 1 #")  # a cashier's PIN is not a supervisor's
    assert rows[6] == "Wrong PIN 2 left"
    rows = kit.keys("9 9 9 9 #")
    assert rows[2] == "Orig. receipt no"
    rows = kit.keys("7 #")
    assert rows[6] == "No such receipt"
    rows = kit.keys("1 #")
    assert rows[2] == "Refund amount"
    rows = kit.keys("1 2 3 5 #")
    assert rows[6] == "Max 12.34"
    rows = kit.keys("B B B B 5 0 0 #")
    assert rows[1] == "Refund receipt 1"
    assert rows[4] == "**** 1111"
    rows = kit.keys("#")
    assert rows[1] == "REFUNDED"
    kit.keys("#")  # back at the merchant menu, the function menu's code is unloaded
    sale, refund = stored(kit)
    assert (refund.kind, refund.reference, refund.amount_minor) == (REFUND, 1, 500)
    assert refund.method == CREDIT and refund.token == sale.token and refund.last_four == 1111
    assert refund.flags & FLAG_SUPERVISOR
    assert kit.ledger.totals.net(1) == 734


def test_refund_the_rest_and_no_more():
    kit = Kit()
    kit.login()
    card_sale(kit)
    kit.keys("# A 2 9 9 9 9 # 1 # 5 0 0 # # #")  # a first refund of 5.00
    kit.keys("A 2 9 9 9 9 # 1 # 7 3 5 #")
    assert kit.shows("Max 7.34")
    kit.keys("B 4 # #")
    assert kit.shows("REFUNDED")
    kit.keys("# A 2 9 9 9 9 # 1 #")
    assert kit.shows("Already refunded")
    assert kit.ledger.totals.net(1) == 0


def test_x_report_shows_and_prints_totals_without_reset():
    kit = Kit()
    kit.login()
    kit.sale(merchant="2", amount="1 0 0 0")
    kit.keys("#")
    card_sale(kit, merchant="2", amount="2 5 0")
    kit.keys("#")
    kit.printed.clear()
    rows = kit.keys("A 3 2 #")
    assert rows[0] == "X Tea House"
    assert rows[1] == "Sales 2    12.50"
    assert rows[2] == "  Credit 1  2.50"
    assert rows[3] == "  Cash 1   10.00"
    (slip,) = kit.printed
    assert slip[0].strip() == "X REPORT"
    text = "\n".join(slip)
    assert "Sales 2" in text and "12.50" in text and "NET" in text
    kit.keys("#")
    kit.keys("A 3 2 #")
    assert kit.shows("Sales 2")  # an X report resets nothing


def test_z_settlement_numbers_batches_and_resets():
    kit = Kit()
    kit.login()
    kit.sale(merchant="2", amount="1 0 0 0")
    kit.keys("#")
    kit.sale(merchant="2", amount="5 0 0")
    kit.keys("# A 1 #")  # void the 5.00
    kit.keys("#")
    kit.printed.clear()
    rows = kit.keys("A 4 9 9 9 9 # 2 #")
    assert rows[1] == "Settle batch   1"
    assert rows[2] == "Net EUR    10.00"
    rows = kit.keys("#")
    assert rows[1] == "Z BATCH 1 DONE"
    kit.keys("#")
    z = stored(kit)[-1]
    assert z.kind == SETTLEMENT and z.merchant == 2 and z.reference == 1
    assert z.settlement_counts() == (1, 1000, 0, 0)
    assert kit.printed[0][0].strip() == "Z REPORT 1"
    assert kit.ledger.totals.net(2) == 0
    kit.keys("A 4 9 9 9 9 # 2 #")
    assert kit.shows("Settle batch   2")


def test_z_needs_a_supervisor():
    kit = Kit()
    kit.login()
    rows = kit.keys("A 4 2 2 2 2 #")
    assert rows[6] == "Wrong PIN 2 left"
    assert rows[2] == "Supervisor PIN"


def test_status_sync_and_log_out():
    kit = Kit()
    kit.login()
    kit.sale()
    rows = kit.keys("# A 5")
    assert rows[0] == "Status"
    assert rows[1] == "Link          up"
    assert rows[2] == "Unsent         1"
    assert rows[4].startswith("Key counter")
    kit.keys("#")
    kit.keys("A 6")
    assert kit.uploads == 1
    assert kit.shows("Sync started")
    kit.feed(("synced", True))
    assert kit.shows("Sync done")
    rows = kit.keys("A 7")
    assert rows[2] == "Cashier PIN"


def test_function_menu_code_is_loaded_only_while_in_use():
    import sys

    kit = Kit()
    kit.login()
    assert "pos.functions" not in sys.modules
    kit.keys("A")
    assert "pos.functions" in sys.modules
    kit.keys("5 #")
    assert kit.rows()[0].startswith("Merchant?")
    assert "pos.functions" not in sys.modules
