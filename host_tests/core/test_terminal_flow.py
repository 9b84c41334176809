"""Moving through the terminal: amount entry, going back, timeouts, and receipt numbers
across a restart."""

from termkit import Kit


def stored(kit):
    """The queued records, opened with the back end's keys."""
    from sealcheck import open_record

    return [open_record(counter, frame) for counter, frame in kit.ledger.queue.unsent()]


def test_amount_entry_backspace_zero_and_cap():
    kit = Kit()
    kit.login()
    kit.keys("1 #")
    rows = kit.keys("#")
    assert rows[6] == "Enter an amount"
    rows = kit.keys("1 2 3 B")
    assert rows[3] == "EUR         0.12"
    rows = kit.keys("*")
    assert rows[3] == "EUR         0.00"
    beeps = kit.beeps
    rows = kit.keys("5 0 0 0 1")  # 500.01 passes Noodle Bar's cap: the 1 is refused
    assert rows[6] == "Max 500.00" and rows[3] == "EUR        50.00"
    assert kit.beeps == beeps + 1
    rows = kit.keys("0 #")  # 500.00 is the cap itself
    assert rows[2] == "1 Credit 2 Debit"


def test_star_goes_back_one_step():
    kit = Kit()
    kit.login()
    kit.keys("2 # 5 0 # 4")
    rows = kit.keys("*")
    assert rows[2] == "1 Credit 2 Debit"
    rows = kit.keys("*")
    assert rows[2] == "Sale amount" and rows[3] == "EUR         0.50"
    kit.keys("*")  # clears the amount first
    rows = kit.keys("*")
    assert rows[0].startswith("Merchant?")
    rows = kit.keys("*")
    assert rows[2] == "Cashier PIN"


def test_result_times_out_to_merchant_menu():
    kit = Kit(result_timeout_s=20)
    kit.login()
    kit.sale()
    assert kit.shows("APPROVED")
    kit.tick(19_000)
    assert kit.shows("APPROVED")
    kit.tick(1_000)
    assert kit.rows()[0].startswith("Merchant?")


def test_idle_logout():
    kit = Kit(idle_logout_s=60)
    kit.login()
    kit.keys("1 # 5")
    kit.tick(59_000)
    assert kit.rows()[0] == "Noodle Bar"
    kit.tick(1_000)
    assert kit.rows()[2] == "Cashier PIN"
    assert kit.terminal.amount.amount_minor == 0


def test_receipt_numbers_continue_after_restart():
    kit = Kit()
    kit.login()
    kit.sale()
    kit.keys("#")
    kit.sale(amount="5 0")
    kit.boot()
    kit.login()
    rows = kit.sale(amount="7 5")
    assert rows[4] == "Receipt        3"
    assert [r.receipt for r in stored(kit)] == [1, 2, 3]
