"""Daily limits per merchant, on the merchant's local day (pos.risk): at, below and above
each boundary, across local midnight, with the clock not set, and after a power cut."""

from expect import raises
from norflash import PowerCut
from pos.record import DECLINE, SALE
from pos.risk import OVER_DAY_COUNT, OVER_DAY_TOTAL
from termkit import Kit

NOON = 1_795_000_000  # 2026-11-17 11:06:40 UTC, 12:06:40 at UTC+1
MIDNIGHT = 1_795_042_800  # 2026-11-18 00:00 at UTC+1, 23:00 UTC


def approved(kit, **sale):
    rows = kit.sale(**sale)
    kit.keys("#")
    return rows[1] == "APPROVED"


def test_daily_count_at_and_above_the_limit_for_that_merchant_only():
    kit = Kit(limits={"max_day_count": 2})
    kit.login()
    assert approved(kit) and approved(kit)
    rows = kit.sale()
    assert rows[1] == "DECLINED" and rows[3] == "Daily count max"
    record = kit.newest()
    assert (record.kind, record.reason, record.merchant) == (DECLINE, OVER_DAY_COUNT, 2)
    kit.keys("#")
    assert approved(kit, merchant="3")  # Dumpling House has no daily limit
    assert kit.ledger.totals.sum(2, SALE) == (2, 2468)


def test_daily_amount_at_below_and_above_the_limit():
    kit = Kit(limits={"max_day_minor": 3000})
    kit.login()
    assert approved(kit, amount="1 0 0 0")
    assert approved(kit, amount="1 9 9 9")  # 29.99 today
    rows = kit.sale(amount="2")  # 30.01
    assert rows[1] == "DECLINED" and rows[3] == "Daily amount max"
    assert kit.newest().reason == OVER_DAY_TOTAL
    kit.keys("#")
    assert approved(kit, amount="1")  # exactly 30.00
    assert not approved(kit, amount="1")


def test_the_day_is_the_local_one_and_starts_again_at_local_midnight():
    kit = Kit(limits={"max_day_count": 1}, utc_offset_min=60)
    kit.login()
    kit.at(MIDNIGHT - 1)  # 23:59:59 local
    assert approved(kit)
    assert not approved(kit)
    kit.at(MIDNIGHT)  # still the 17th in UTC, the 18th here
    assert approved(kit)
    assert not approved(kit)


def test_clock_not_set_counts_in_the_last_known_day():
    kit = Kit(limits={"max_day_count": 2})
    kit.login()
    assert approved(kit)
    kit.at(0)  # the clock is lost (a restart without the network)
    assert approved(kit)
    assert kit.newest().time == 0
    assert not approved(kit)  # never reset on an unknown time
    kit.at(NOON + 86400)  # set again, the next day
    assert approved(kit)


def test_clock_never_set_still_limits():
    kit = Kit(limits={"max_day_count": 1}, unix=0)
    kit.login()
    assert approved(kit)
    assert not approved(kit)


def test_counters_are_rebuilt_after_a_power_cut():
    # A sale is three flash operations: the state write, the record, its CRC.
    for op in range(3):
        kit = Kit(limits={"max_day_count": 3})
        kit.login()
        assert approved(kit)
        kit.flash.ops = 0
        kit.flash.cut_at(op, seed=op + 11)
        raises(PowerCut, kit.sale)
        kit.boot()
        kit.login()
        taken = kit.ledger.totals.sum(2, SALE)[0]  # 1, or 2 if the cut sale was stored
        for _ in range(3 - taken):
            assert approved(kit)
        assert not approved(kit)
        kit = None


def test_a_clock_put_back_does_not_start_the_day_again():
    kit = Kit(limits={"max_day_count": 1})
    kit.login()
    kit.at(NOON + 10 * 86400)  # a clock ten days ahead
    assert approved(kit)
    kit.at(NOON)  # put back: the sales count in the day the counters hold
    assert not approved(kit)
    kit.at(NOON + 11 * 86400)  # the day after that one starts them again
    assert approved(kit)


def test_switching_the_clock_between_two_days_gives_no_more_approvals():
    kit = Kit(limits={"max_day_count": 2})
    kit.login()
    assert approved(kit) and approved(kit)
    taken = 0
    for _ in range(6):  # the attack of issue 13: 12 more approvals with a cap of 2
        kit.at(NOON + 86400)
        taken += approved(kit)
        kit.at(NOON)
        taken += approved(kit)
    assert taken == 2  # the next day's two, and no more


def test_sales_before_the_clock_was_ever_set_count_in_its_first_day():
    kit = Kit(limits={"max_day_count": 2}, unix=0)
    kit.login()
    assert approved(kit)
    kit.at(NOON)
    assert approved(kit)
    assert not approved(kit)


def test_a_z_does_not_reset_the_day():
    kit = Kit(limits={"max_day_count": 2})
    kit.login()
    assert approved(kit)
    rows = kit.keys("A 4 9 9 9 9 # 2 # #")  # Z for Tea House
    assert rows[1].startswith("Z BATCH 1")
    kit.keys("#")
    assert approved(kit)
    assert not approved(kit)


def test_a_daily_total_nobody_limited_never_declines():
    kit = Kit()
    kit.login()
    most = "9 9 9 9 9 9 9 9 9"  # 9,999,999.99: the largest amount a sale can have
    assert approved(kit, amount=most)
    kit.keys("A 4 9 9 9 9 # 2 # # #")  # a Z: the totals may take as much again
    assert approved(kit, amount=most)
