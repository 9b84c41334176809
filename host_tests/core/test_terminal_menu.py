"""The function menu through the terminal: void and refund."""

from pos.record import CASH, CREDIT, FLAG_SUPERVISOR, REFUND, VOID
from sealcheck import open_record
from termkit import Kit


def stored(kit):
    return [open_record(counter, frame) for counter, frame in kit.ledger.queue.unsent()]


def test_void_last_sale():
    kit = Kit()
    kit.login()
    kit.sale()
    kit.keys("#")
    rows = kit.keys("A 1")
    assert rows[0] == "Tea House"
    assert rows[1] == "Void no. 1"
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
    kit.card_sale("1")
    kit.keys("#")
    rows = kit.keys("A 2")
    assert rows[2] == "Supervisor PIN"
    rows = kit.keys("1 1 1 1 #")  # a cashier's PIN is not a supervisor's
    assert rows[6] == "Not a supervisor"
    rows = kit.keys("9 9 9 9 #")
    assert rows[2] == "Orig. receipt no"
    rows = kit.keys("7 #")
    assert rows[6] == "No such receipt"
    rows = kit.keys("1 #")
    assert rows[2] == "Refund amount"
    rows = kit.keys("1 2 3 5 #")
    assert rows[6] == "Max 12.34"
    rows = kit.keys("B B B B 5 0 0 #")
    assert rows[1] == "Refund no. 1"
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
    kit.card_sale("1")
    kit.keys("# A 2 9 9 9 9 # 1 # 5 0 0 # # #")  # a first refund of 5.00
    kit.keys("A 2 9 9 9 9 # 1 # 7 3 5 #")
    assert kit.shows("Max 7.34")
    kit.keys("B 4 # #")
    assert kit.shows("REFUNDED")
    kit.keys("# A 2 9 9 9 9 # 1 #")
    assert kit.shows("Already refunded")
    assert kit.ledger.totals.net(1) == 0


def test_a_void_refills_the_terminal_record_once_the_menu_has_left_the_heap():
    """A void is booked on the record the terminal's sales reuse (a new one was a block of
    heap a worn day missed), every field of it set anew: a decline before it leaves a
    reason, a token and a card's last digits there. The function menu's modules are gone
    from the heap by the time it is booked."""
    import sys

    kit = Kit(limits={"max_day_count": 1})
    kit.login()
    kit.sale(merchant="2", amount="5 0 0")  # cash at Tea House: the sale to void
    kit.keys("#")
    rows = kit.card_sale("2", "2 0 0")  # Tea House's second sale today: declined
    assert rows[1] == "DECLINED"
    kit.keys("#")
    booked = kit.watch_bookings(
        lambda record: (
            record is kit.terminal.reused_record,
            "pos.functions" in sys.modules,
            "pos.menu_refund" in sys.modules,
        )
    )
    rows = kit.keys("A 1")
    assert rows[1] == "Void no. 1"
    assert "pos.menu_refund" in sys.modules
    rows = kit.keys("#")
    assert rows[1] == "VOIDED"
    assert booked == [(True, False, False)]
    sale, decline, void = stored(kit)
    assert decline.reason and decline.last_four == 1111
    assert (void.kind, void.reference, void.amount_minor, void.merchant) == (VOID, 1, 500, 2)
    assert void.method == CASH and void.reason == 0 and void.flags & FLAG_SUPERVISOR == 0
    assert void.token == sale.token and void.last_four == sale.last_four
    assert void.receipt == 3
    assert kit.ledger.totals.net(2) == 0
