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
    kit.keys("1 1 1 1 # 2 #")
    del heard[:]
    kit.keys("0")  # 0 on an amount of 0.00
    assert heard == ["error"]
    kit.keys("1 2 3 4 5 6 7 8 9")
    del heard[:]
    full = kit.rows()
    kit.keys("5")  # a tenth digit
    assert kit.rows() == full
    assert heard == ["error"]
    kit.feed(("card", CARD))  # no card screen yet: it says so
    kit.feed(("card", CARD))  # and says it again: nothing new
    assert heard == ["error", "error"]


def test_a_tick_that_changes_nothing_is_silent():
    kit = Kit()
    heard = beeps_of(kit)
    kit.tick(10)
    kit.feed(("link", True))
    assert heard == []
