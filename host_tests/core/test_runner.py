"""pos.runner: an ignored key beeps "error"; a key that does something does not."""

from termkit import CARD, Kit


def beeps_of(kit):
    heard = []
    kit.runner.beeper = heard.append
    return heard


def test_ignored_keys_beep_error_and_change_nothing():
    kit = Kit()
    heard = beeps_of(kit)
    before = kit.rows()
    kit.keys("B")  # Backspace on the empty PIN
    kit.keys("*")
    assert kit.rows() == before
    assert heard == ["error", "error"]
    kit.keys("1")  # a digit does something: no beep
    assert heard == ["error", "error"]


def test_ignored_amount_digits_and_card_off_the_card_screen_beep():
    kit = Kit()
    heard = beeps_of(kit)
    kit.keys("1 1 1 1 # 1 #")  # Noodle Bar: a sale cap of 500.00
    del heard[:]
    kit.keys("0")  # 0 on an amount of 0.00
    assert heard == ["error"]
    kit.keys("1 2 3 4")
    del heard[:]
    kit.keys("5")  # 123.45 is within the 500.00 cap: a digit that does something is silent
    assert heard == []
    kit.keys("6")  # 1,234.56 passes the cap: the terminal refuses it with its own beep, once
    assert heard == ["error"]
    assert "EUR 123.45" in " ".join(" ".join(row.split()) for row in kit.rows())
    del heard[:]
    kit.keys("B B B B B B")  # five digits deleted, then Backspace on 0.00: nothing to delete
    assert heard == ["error"]
    del heard[:]
    kit.feed(("card", CARD))  # no card screen yet: it says so
    kit.feed(("card", CARD))  # and says it again: nothing new
    assert heard == ["error"]


def test_a_tick_that_changes_nothing_is_silent():
    kit = Kit()
    heard = beeps_of(kit)
    kit.tick(10)
    kit.feed(("link", True))
    assert heard == []
