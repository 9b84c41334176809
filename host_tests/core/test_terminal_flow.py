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


def same_rule_on(kit, full, back):
    """The key rule of an entry screen, from an empty entry: # says a word and changes
    nothing; digits are typed up to the limit, one more is refused with a beep; B deletes
    one; * clears the entry, then (back=True) goes back."""
    empty = kit.rows()
    rows = kit.keys("#")
    assert rows[6] and rows[:6] == empty[:6], (empty, rows)
    typed = kit.keys(" ".join(full))
    assert typed != empty
    beeps = kit.beeps
    assert kit.keys("1")[:6] == typed[:6] and kit.beeps == beeps + 1  # past the limit: refused
    assert kit.keys("B") != typed
    assert kit.keys("*")[:6] == empty[:6]  # cleared, still here
    if back:
        assert kit.keys("*")[:6] != empty[:6]  # then back


def test_every_entry_screen_keeps_one_key_rule():
    kit = Kit()
    same_rule_on(kit, "11111111", back=False)  # cashier PIN: 8 digits at most
    kit.login()
    same_rule_on(kit, "12", back=True)  # merchant menu number, * logs out
    kit.login()
    kit.keys("1 #")
    same_rule_on(kit, "50000", back=True)  # amount, up to Noodle Bar's cap of 500.00
    kit.keys("1 # 5 # 1")
    same_rule_on(kit, "4111111111111111111", back=True)  # card number: 19 digits
    kit.keys("3")
    same_rule_on(kit, "1" * 24, back=True)  # payment code: 24 digits
    kit.keys("* * * A 2")
    same_rule_on(kit, "99999999", back=True)  # supervisor PIN
    kit.keys("A 2 9 9 9 9 #")
    same_rule_on(kit, "12345678", back=True)  # refund: the original's receipt number
    assert kit.rows()[0] == "Functions"


def test_refund_amount_refuses_the_digit_past_the_refund_cap():
    kit = Kit(limits={"max_refund_minor": 500})  # Tea House refunds 5.00 at most
    kit.login()
    kit.sale(amount="2 0 0 0")
    beeps = kit.beeps
    rows = kit.keys("# A 2 9 9 9 9 # 1 # 5 0 1")
    assert rows[2] == "Refund amount" and rows[3] == "EUR         0.50"
    assert rows[6] == "Max 5.00" and kit.beeps == beeps + 1
    rows = kit.keys("0 #")
    assert rows[1] == "Refund no. 1" and rows[2] == "EUR         5.00"
