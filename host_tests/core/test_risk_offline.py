"""Offline limits per merchant (pos.risk): the per-sale cap, the unsent count and total, and
the age of the oldest unsent sale. They stop card and mobile sales while the link is down;
cash goes on."""

from pos.record import DECLINE, FLAG_OFFLINE
from pos.risk import OFFLINE_AGE, OFFLINE_COUNT, OFFLINE_TOTAL
from termkit import Kit

NOON = 1_795_000_000


def card(kit, amount="1 0 0 0"):
    rows = kit.card_sale("2", amount)
    kit.keys("#")
    return rows[1] if rows[1] == "APPROVED" else rows[3]


def test_unsent_count_stops_card_sales_until_the_backlog_is_acked():
    kit = Kit(limits={"max_offline_count": 2})
    kit.login()
    kit.feed(("link", False))
    assert card(kit) == "APPROVED"
    assert card(kit) == "APPROVED"
    assert card(kit) == "Offline count"
    record = kit.newest()
    assert (record.kind, record.reason) == (DECLINE, OFFLINE_COUNT)
    assert record.flags & FLAG_OFFLINE
    assert kit.sale()[1] == "APPROVED"  # cash
    kit.keys("#")
    queue = kit.ledger.queue
    first = next(iter(queue.unsent()))[0]
    queue.ack(first)  # partly sent: the backlog still counts as unsent
    assert card(kit) == "Offline count"
    queue.ack(queue.last_counter)
    assert card(kit) == "APPROVED"


def test_unsent_total_at_and_above_the_limit():
    kit = Kit(limits={"max_offline_total_minor": 2000})
    kit.login()
    kit.feed(("link", False))
    assert card(kit) == "APPROVED"
    assert card(kit, "9 9 9") == "APPROVED"  # 19.99 unsent
    assert card(kit, "2") == "Offline total"
    assert kit.newest().reason == OFFLINE_TOTAL
    assert card(kit, "1") == "APPROVED"  # exactly 20.00
    kit.feed(("link", True))  # the rules are for the link being down
    assert card(kit) == "APPROVED"


def test_oldest_unsent_sale_too_old_stops_card_sales():
    kit = Kit(limits={"max_offline_age_s": 3600})
    kit.login()
    kit.feed(("link", False))
    assert card(kit) == "APPROVED"
    kit.at(NOON + 3600)
    assert card(kit) == "APPROVED"
    kit.at(NOON + 3601)
    assert card(kit) == "Offline too long"
    assert kit.newest().reason == OFFLINE_AGE
    assert kit.sale()[1] == "APPROVED"  # cash
    kit.keys("#")
    kit.at(0)  # with the clock lost the age cannot be told: count and total still hold
    assert card(kit) == "APPROVED"


def test_offline_limits_survive_a_restart():
    kit = Kit(limits={"max_offline_count": 1})
    kit.login()
    kit.feed(("link", False))
    assert card(kit) == "APPROVED"
    kit.boot()  # boot() brings the link up: take it down again
    kit.feed(("link", False))
    kit.login()
    assert card(kit) == "Offline count"
