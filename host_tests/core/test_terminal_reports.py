"""The function menu through the terminal: X and Z reports, status, sync, log out, and
the menu's code loaded only while in use."""

from pos.readout import settlement_counts
from pos.record import SETTLEMENT
from sealcheck import open_record
from termkit import Kit


def stored(kit):
    return [open_record(counter, frame) for counter, frame in kit.ledger.queue.unsent()]


def test_x_report_shows_and_prints_totals_without_reset():
    kit = Kit()
    kit.login()
    kit.sale(merchant="2", amount="1 0 0 0")
    kit.keys("#")
    kit.card_sale("2", "2 5 0")
    kit.keys("#")
    kit.printed.clear()
    rows = kit.keys("A 3 2 #")
    assert rows[0] == "X Tea House"
    assert rows[1] == "Sales less voids"
    assert rows[2] == "Sales 2    12.50"
    assert rows[3] == "  Credit 1  2.50"
    assert rows[4] == "  Cash 1   10.00"
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
    assert settlement_counts(z) == (1, 1000, 0, 0)
    assert kit.printed[0][0].strip() == "Z REPORT 1"
    # The slip tells the totals the Z closed (made after the booking cleared them).
    assert "NET" + " " * 24 + "10.00" in kit.printed[0]
    assert "Batch 1" in kit.printed[0]
    assert kit.ledger.totals.net(2) == 0
    kit.keys("A 4 9 9 9 9 # 2 #")
    assert kit.shows("Settle batch   2")


def test_x_and_z_count_sales_net_of_voids_and_say_so():
    kit = Kit()
    kit.login()
    kit.sale(merchant="2", amount="1 0 0 0")
    kit.keys("#")
    kit.card_sale("2", "5 0 0")
    kit.keys("# A 1 # #")  # the card sale of 5.00 is voided
    kit.printed.clear()
    rows = kit.keys("A 3 2 #")
    assert rows[1] == "Sales less voids"
    assert rows[2] == "Sales 1    10.00"
    assert rows[3] == "  Cash 1   10.00"  # the voided card sale is in no sales line
    assert rows[4] == "Voids 1     5.00"
    x_slip = kit.printed[-1]
    sales = x_slip.index("Sales less voids")
    assert x_slip[sales + 1 : sales + 5] == [
        "Sales 1                    10.00",
        "  Cash 1                   10.00",
        "Voids 1                     5.00",
        "  Credit 1                  5.00",
    ]
    kit.keys("#")
    rows = kit.keys("A 4 9 9 9 9 # 2 #")
    assert rows[3] == "Sales          1"  # the Z's screen counts as the X does
    kit.keys("# #")
    z_slip = "\n".join(kit.printed[-1])
    assert z_slip.index("Sales less voids") < z_slip.index("Sales 1                    10.00")
    assert settlement_counts(stored(kit)[-1])[:2] == (1, 1000)  # and so does the Z record


def test_z_needs_a_supervisor():
    kit = Kit()
    kit.login()
    rows = kit.keys("A 4 2 2 2 2 #")
    assert rows[6] == "Not a supervisor"
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

    # Another test run before this one in the process may have left a menu open (tools/test
    # shares the core tests out over several processes): what counts is that the login
    # does not load it.
    sys.modules.pop("pos.functions", None)
    kit = Kit()
    kit.login()
    assert "pos.functions" not in sys.modules
    kit.keys("A")
    assert "pos.functions" in sys.modules
    kit.keys("5 #")
    assert kit.rows()[0].startswith("Merchant?")
    assert "pos.functions" not in sys.modules


def test_a_z_refills_the_terminal_record_and_its_slip_is_made_line_by_line():
    """The Z is booked on the record the terminal's sales reuse, every field set anew (a
    decline before it leaves a reason and a card's digits there), and its report, like a
    receipt, reaches the printer as lines made one at a time, not a list."""
    from pos.record import NO_METHOD

    kit = Kit(limits={"max_day_count": 1})
    kit.login()
    kit.sale(merchant="2", amount="1 0 0 0")
    kit.keys("#")
    assert kit.card_sale("2", "2 0 0")[1] == "DECLINED"  # the second sale today
    kit.keys("#")
    slips = kit.watch_slips()
    booked = kit.watch_bookings(lambda record: record is kit.terminal.reused_record)
    kit.keys("A 4 9 9 9 9 # 2 #")
    assert kit.keys("#")[1] == "Z BATCH 1 DONE"
    assert booked == [True] and slips == [False]
    assert kit.printed[-1][0].strip() == "Z REPORT 1"
    assert kit.printed[-1][-1] == "-" * 32
    z = stored(kit)[-1]
    assert (z.kind, z.merchant, z.reference, z.reason, z.method) == (
        SETTLEMENT,
        2,
        1,
        0,
        NO_METHOD,
    )
    assert settlement_counts(z) == (1, 1000, 0, 0)
    assert z.receipt == 3 and z.cashier == 9
