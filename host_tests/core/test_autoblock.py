"""Automatic blocking (pos.autoblock, pos.risk): a card with auto_block_declines fraud declines
within auto_block_window_min is blocked on every merchant of the terminal at once, with a
sealed BLOCK record, across a restart, and a supervisor can lift it."""

import sys

from pos.record import DECLINE
from pos.risk import CARD_BLOCKED, TOO_MANY_USES
from termkit import Kit

BLOCK = 6  # pos.autoblock's record type (the test does not load pos.autoblock itself)
FLAG_LIFTED = 8
NOON = 1_795_000_000
OTHER_CARD = "5555555555554444"


def _has_block(kit):
    """Whether the queue holds a BLOCK record (opened one at a time: a list of them all
    would not fit a 96 KiB heap)."""
    from sealcheck import open_frame

    for counter, frame in kit.ledger.queue.unsent():
        if open_frame(counter, frame)[1] >> 4 == BLOCK:  # the record's kind, unpacked
            return True
    return False


def _token_of_newest_decline(kit):
    from sealcheck import open_record

    token = None
    for counter, frame in kit.ledger.queue.unsent():
        record = open_record(counter, frame)
        if record.kind == DECLINE:
            token = record.token
    return token


def _velocity_kit(**settings):
    """A card that may pay once an hour: every later try is a velocity decline."""
    kit = Kit(velocity_max_uses=1, velocity_window_min=60, **settings)
    kit.login()
    assert kit.card_sale("2")[1] == "APPROVED"
    kit.keys("#")
    return kit


def test_three_velocity_declines_at_one_merchant_block_the_card_at_another():
    kit = _velocity_kit(auto_block_declines=3, auto_block_window_min=10)
    for _ in range(2):
        assert kit.card_sale("1")[3] == "Card used often"
        kit.keys("#")
    assert not _has_block(kit)
    assert kit.card_sale("1")[3] == "Card used often"  # the third: blocked now
    kit.keys("#")
    block = kit.newest()
    assert block.kind == BLOCK and block.merchant == 1 and block.amount_minor == 3
    assert block.reason == TOO_MANY_USES and block.reference == 1 << TOO_MANY_USES
    assert block.last_four == 1111 and block.token == _token_of_newest_decline(kit)
    # Merchant 2, same terminal: "Card blocked" at once (velocity would say "used often").
    rows = kit.card_sale("2")
    assert rows[1] == "DECLINED" and rows[3] == "Card blocked"
    assert kit.newest().kind == DECLINE and kit.newest().reason == CARD_BLOCKED
    kit.keys("#")
    assert kit.card_sale("3", card=OTHER_CARD)[1] == "APPROVED"  # another card is not


def test_without_the_rule_declines_block_nothing():
    kit = _velocity_kit()  # auto_block_declines defaults to 0: off
    for _ in range(5):
        assert kit.card_sale("1")[3] == "Card used often"
        kit.keys("#")
    assert not _has_block(kit)
    assert kit.terminal.risk.blocked is None  # and no heap taken
    assert kit.store.read("declines") is None


def test_declines_outside_the_window_do_not_count():
    kit = _velocity_kit(auto_block_declines=3, auto_block_window_min=10)
    for offset in (0, 301, 602):  # the first is 602 s before the third: out of 10 minutes
        kit.at(NOON + offset)
        assert kit.card_sale("1")[3] == "Card used often"
        kit.keys("#")
    assert not _has_block(kit)
    kit.at(NOON + 900)  # 301, 602 and 900: three within 10 minutes
    assert kit.card_sale("1")[3] == "Card used often"
    kit.keys("#")
    assert kit.newest().kind == BLOCK
    assert kit.card_sale("1")[3] == "Card blocked"


def test_the_block_and_the_declines_counted_survive_a_restart():
    kit = _velocity_kit(auto_block_declines=2, auto_block_window_min=10)
    assert kit.card_sale("1")[3] == "Card used often"
    kit.keys("#")
    kit.boot()  # one decline remembered across the restart
    kit.login()
    assert kit.card_sale("1")[3] == "Card used often"
    kit.keys("#")
    assert kit.newest().kind == BLOCK
    kit.boot()
    kit.login()
    assert kit.card_sale("3")[3] == "Card blocked"


def test_unusual_amounts_left_unapproved_count_too():
    kit = Kit(
        sectors=16,
        limits={"anomaly_factor": 2},
        auto_block_declines=2,
        auto_block_window_min=10,
    )
    kit.login()
    for _ in range(5):
        assert kit.sale(amount="1 0 0")[1] == "APPROVED"
        kit.keys("#")
    for _ in range(2):
        kit.keys("2 # 9 0 0 0 # 1 " + " ".join("4111111111111111") + " #")
        assert kit.keys("#")[2] == "Unusual amount"
        assert kit.keys("*")[1] == "DECLINED"  # refused without a supervisor
        kit.keys("#")
    block = kit.newest()
    assert block.kind == BLOCK and block.reason == 11


def test_a_supervisor_lifts_a_block_and_it_is_recorded():
    kit = _velocity_kit(auto_block_declines=1, auto_block_window_min=10)
    assert kit.card_sale("1")[3] == "Card used often"
    kit.keys("#")
    assert kit.newest().kind == BLOCK
    rows = kit.keys("A 8")
    assert rows[2] == "Supervisor PIN", rows
    kit.keys("9 9 9 9 #")
    rows = kit.keys(" ".join("4111111111111111") + " #")
    assert rows[1] == "UNBLOCKED", rows
    assert "pos.menu_unblock" in sys.modules and "pos.autoblock" not in sys.modules
    lifted = kit.newest()
    assert lifted.kind == BLOCK and lifted.flags & FLAG_LIFTED and lifted.cashier == 9
    kit.keys("#")
    # Back at the merchant menu: the item's module is gone with the menu's.
    assert "pos.menu_unblock" not in sys.modules and "pos.functions" not in sys.modules
    kit.at(NOON + 3601)  # velocity's hour has passed: the card pays again
    assert kit.card_sale("2")[1] == "APPROVED"
    kit.keys("#")
    rows = kit.keys("A 8 9 9 9 9 # " + " ".join(OTHER_CARD) + " #")
    assert rows[6] == "Not blocked"
