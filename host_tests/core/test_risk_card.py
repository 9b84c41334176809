"""Per-card rules (pos.risk): velocity across merchants, and the daily refund total."""

from pos.risk import TOO_MANY_USES
from termkit import Kit

NOON = 1_795_000_000
OTHER_CARD = "5555555555554444"


def test_velocity_counts_uses_of_a_card_across_merchants_within_the_window():
    kit = Kit(velocity_max_uses=2, velocity_window_min=10)
    kit.login()
    assert kit.card_sale("2")[1] == "APPROVED"
    kit.keys("#")
    assert kit.card_sale("3")[1] == "APPROVED"
    kit.keys("#")
    rows = kit.card_sale("1")
    assert rows[1] == "DECLINED" and rows[3] == "Card used often"
    assert kit.newest().reason == TOO_MANY_USES
    kit.keys("#")
    assert kit.card_sale("1", card=OTHER_CARD)[1] == "APPROVED"  # another card
    kit.keys("#")
    kit.at(NOON + 600)  # both uses are still inside the 10 minutes
    assert kit.card_sale("1")[1] == "DECLINED"
    kit.keys("#")
    kit.at(NOON + 601)
    assert kit.card_sale("1")[1] == "APPROVED"


def test_daily_refund_total():
    kit = Kit(limits={"max_refund_day_minor": 1000})
    kit.login()
    kit.sale(amount="5 0 0 0")
    kit.keys("#")
    assert kit.keys("A 2 9 9 9 9 # 1 # 6 0 0 # #")[1] == "REFUNDED"
    rows = kit.keys("# A 2 9 9 9 9 # 1 # 4 0 1 #")  # 6.00 + 4.01 > 10.00
    assert rows[6] == "Daily refund cap"
    rows = kit.keys("B 0 #")  # 4.00: exactly 10.00 today
    assert kit.keys("#")[1] == "REFUNDED"


def test_velocity_is_not_worn_away_by_declined_retries():
    kit = Kit(sectors=16, velocity_max_uses=2, velocity_window_min=60)
    kit.login()
    for _ in range(2):
        assert kit.card_sale("2")[1] == "APPROVED"
        kit.keys("#")
    for _ in range(34):  # more declines than the recent-sales ring holds
        assert kit.card_sale("2")[1] == "DECLINED"
        kit.keys("#")
    assert kit.card_sale("2")[3] == "Card used often"


def test_uses_made_with_the_clock_unset_stop_counting_once_it_is_set():
    kit = Kit(velocity_max_uses=1, velocity_window_min=10, unix=0)
    kit.login()
    assert kit.card_sale("2")[1] == "APPROVED"
    kit.keys("#")
    assert kit.card_sale("2")[3] == "Card used often"  # unset clock: every use counts
    kit.keys("#")
    kit.at(NOON)
    assert kit.card_sale("2")[1] == "APPROVED"
