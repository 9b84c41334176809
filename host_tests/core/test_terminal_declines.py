"""Sales that must not go through as asked: declines, a full queue, and power cuts in the
middle of a sale."""

from expect import raises
from norflash import PowerCut
from pos.record import DECLINE, FLAG_OFFLINE, SALE
from pos.risk import CARD_BLOCKED, OVER_OFFLINE_LIMIT
from sealcheck import open_record
from termkit import Kit


def stored(kit):
    return [open_record(counter, frame) for counter, frame in kit.ledger.queue.unsent()]


def test_offline_limit_declines_and_records_the_decline():
    kit = Kit()
    kit.login()
    kit.feed(("link", False))
    rows = kit.card_sale("1", "2 0 0 0 1")  # Noodle Bar: 200.00 offline cap
    assert rows[1] == "DECLINED"
    assert rows[3] == "Offline limit"
    (decline,) = stored(kit)
    assert decline.kind == DECLINE and decline.reason == OVER_OFFLINE_LIMIT
    assert decline.flags & FLAG_OFFLINE
    kit.keys("#")
    rows = kit.card_sale("1", "2 0 0 0 0")
    assert rows[1] == "APPROVED" and rows[5] == "OFFLINE"
    assert "OFFLINE - not yet sent" in "\n".join(kit.printed[-1])
    kit.keys("#")
    # Cash is in the drawer: the offline limits are for cards and mobile payments.
    rows = kit.sale(merchant="1", amount="2 0 0 0 1")
    assert rows[1] == "APPROVED" and rows[5] == "OFFLINE"


def test_blocked_card_is_declined():
    kit = Kit()
    kit.login()
    kit.card_sale("1")
    from expect import scratch
    from pos.blacklist import Blacklist

    token = stored(kit)[0].token
    kit.risk.blacklist = Blacklist(scratch("blacklist"))
    kit.risk.blacklist.apply(1, [token], [])  # a delta arriving mid-day
    kit.keys("#")
    rows = kit.card_sale("1")
    assert rows[1] == "DECLINED" and rows[3] == "Card blocked"
    assert stored(kit)[-1].reason == CARD_BLOCKED


def test_full_queue_refuses_the_sale_and_changes_nothing():
    kit = Kit(sectors=3)
    kit.login()
    taken = 0
    while True:
        rows = kit.sale(amount="1 0 0")
        kit.keys("#")
        if rows[1] != "APPROVED":
            break
        taken += 1
    assert rows[1] == "NOT TAKEN" and rows[3] == "Queue full"
    assert taken == kit.ledger.queue.unsent_count() == 8  # two sectors of 4; one spare
    assert kit.ledger.next_receipt == taken + 1
    assert kit.ledger.totals.sum(2, SALE) == (taken, taken * 100)


def test_power_cut_during_a_sale_counts_it_once_or_not_at_all():
    # A sale is three flash operations: the state write, the record, its CRC.
    for op in range(3):
        kit = Kit()
        kit.login()
        kit.sale(amount="1 0 0")
        kit.keys("#")
        kit.flash.ops = 0
        kit.flash.cut_at(op, seed=op + 3)
        raises(PowerCut, kit.sale, "2", "2 0 0")
        kit.boot()
        records = stored(kit)
        count, total = kit.ledger.totals.sum(2, SALE)
        assert count == len(records)
        assert total == sum(r.amount_minor for r in records)
        assert kit.ledger.next_receipt == len(records) + 1
        kit = records = None  # free this terminal before the next one is built
