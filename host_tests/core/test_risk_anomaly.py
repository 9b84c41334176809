"""The anomaly rule (pos.risk): an amount far above the merchant's typical sale asks for a
supervisor PIN; without one the sale is declined, and the decline is kept."""

from pos.record import DECLINE, FLAG_SUPERVISOR, SALE
from pos.risk import UNUSUAL_AMOUNT
from termkit import Kit


def test_unusual_amount_needs_a_supervisor_assigned_to_the_merchant():
    kit = Kit(limits={"anomaly_factor": 3})
    kit.login()
    for _ in range(5):
        kit.sale(amount="1 0 0 0")
        kit.keys("#")
    assert kit.sale(amount="3 0 0 0")[1] == "APPROVED"  # 3 x the median of 10.00: fine
    kit.keys("#")
    rows = kit.sale(amount="3 0 0 1")
    assert rows[2] == "Unusual amount" and rows[3] == "Supervisor PIN"
    rows = kit.keys("1 1 1 1 #")  # a cashier's PIN
    assert rows[6] == "Not a supervisor"
    rows = kit.keys("9 9 9 9 #")
    assert rows[1] == "APPROVED"
    record = kit.newest()
    assert (record.kind, record.reason, record.amount_minor) == (SALE, UNUSUAL_AMOUNT, 3001)
    assert record.flags & FLAG_SUPERVISOR and record.cashier == 1
    assert record.reference == 9  # who approved it: Sue
    kit.keys("#")
    kit.sale(amount="9 0 0 0")
    rows = kit.keys("*")  # no supervisor: declined, and the decline is kept
    assert rows[1] == "DECLINED" and rows[3] == "Unusual amount"
    record = kit.newest()
    assert (record.kind, record.reason, record.amount_minor) == (DECLINE, UNUSUAL_AMOUNT, 9000)
    kit.keys("#")
    assert kit.sale(merchant="3", amount="9 0 0 0")[1] == "APPROVED"  # no anomaly rule there


def test_four_eyes_a_supervisor_cannot_approve_their_own_sale():
    kit = Kit(limits={"anomaly_factor": 3})
    kit.login("9999")  # Sue, a supervisor, sells
    for _ in range(5):
        kit.sale(amount="1 0 0")
        kit.keys("#")
    assert kit.sale(amount="9 0 0 0")[3] == "Supervisor PIN"
    for _ in range(4):  # more than the lockout's three: a known PIN, never counted
        rows = kit.keys("9 9 9 9 #")
        assert rows[6] == "Needs 2nd person" and rows[3] == "Supervisor PIN"
    rows = kit.keys("*")
    assert rows[1] == "DECLINED"
    kit.keys("#")
    rows = kit.keys("A 4 9 9 9 9 #")  # nor her own Z (the same supervisor PIN screen)
    assert rows[6] == "Needs 2nd person"


def test_four_eyes_off_lets_the_supervisor_approve_for_herself():
    kit = Kit(limits={"anomaly_factor": 3}, four_eyes=False)
    kit.login("9999")
    for _ in range(5):
        kit.sale(amount="1 0 0")
        kit.keys("#")
    kit.sale(amount="9 0 0 0")
    assert kit.keys("9 9 9 9 #")[1] == "APPROVED"
    record = kit.newest()
    assert record.cashier == 9 and record.reference == 9 and record.flags & FLAG_SUPERVISOR


def test_anomaly_rule_waits_for_a_history():
    kit = Kit(limits={"anomaly_factor": 2})
    kit.login()
    for _ in range(4):
        kit.sale(amount="1 0 0")
        kit.keys("#")
    assert kit.sale(amount="9 9 9 9 9")[1] == "APPROVED"  # four sales are too few to judge


def unusual_card_sale(kit):
    for _ in range(5):
        kit.sale(amount="1 0 0")
        kit.keys("#")
    rows = kit.card_sale("2", "9 0 0 0")
    assert rows[3] == "Supervisor PIN"


def test_idle_logout_at_the_supervisor_prompt_books_the_decline():
    kit = Kit(limits={"anomaly_factor": 3})
    kit.login()
    unusual_card_sale(kit)
    kit.tick(300 * 1000)  # idle_logout_s
    assert kit.rows()[2] == "Cashier PIN"
    record = kit.newest()
    assert (record.kind, record.reason, record.amount_minor) == (DECLINE, UNUSUAL_AMOUNT, 9000)
    assert record.token != bytes(6)  # the card's token, kept in the decline


def test_lockout_at_the_supervisor_prompt_books_the_decline():
    kit = Kit(limits={"anomaly_factor": 3})
    kit.login()
    unusual_card_sale(kit)
    rows = kit.keys("5 5 5 5 # 5 5 5 5 # 5 5 5 5 #")  # three unknown PINs: locked
    assert rows[2] == "Login locked"
    record = kit.newest()
    assert (record.kind, record.reason) == (DECLINE, UNUSUAL_AMOUNT)
    assert record.token != bytes(6)
