"""Automatic blocking and the clock (pos.autoblock): with the clock not set every fraud
decline remembered counts; once it is set, those of unknown time no longer do (velocity's
rule). A module of its own: a kit's many sales at 96 KiB leave little room for more code."""

from pos.record import DECLINE
from termkit import Kit

BLOCK = 6  # pos.autoblock's record type (the test does not load pos.autoblock itself)
NOON = 1_795_000_000


def _newest(kit):
    """(kind, amount, time) of the newest record, read from its plain bytes (no Record is
    made: after many sales the heap is too broken up for one)."""
    import struct

    from sealcheck import open_frame

    newest = None
    for counter, _frame in kit.ledger.queue.unsent():
        newest = counter
    for counter, frame in kit.ledger.queue.unsent():
        if counter == newest:
            plain = open_frame(counter, frame)
            return (plain[1] >> 4,) + struct.unpack_from(">II", plain, 8)


def _unset_clock_kit():
    kit = Kit(
        sectors=16,
        unix=0,
        velocity_max_uses=1,
        velocity_window_min=60,
        auto_block_declines=3,
        auto_block_window_min=10,
    )
    kit.login()
    assert kit.card_sale("2")[1] == "APPROVED"
    kit.keys("#")
    for _ in range(2):  # unset clock: remembered declines count whatever their time
        assert kit.card_sale("1")[3] == "Card used often"
        kit.keys("#")
    return kit


def test_with_the_clock_unset_every_decline_remembered_counts():
    kit = _unset_clock_kit()
    assert kit.card_sale("1")[3] == "Card used often"
    kit.keys("#")
    kind, _, time = _newest(kit)
    assert kind == BLOCK and time == 0


def test_once_the_clock_is_set_declines_of_unknown_time_stop_counting():
    kit = _unset_clock_kit()
    kit.at(NOON)  # set: the two of unknown time no longer count (nor the unknown use)
    assert kit.card_sale("1")[1] == "APPROVED"
    kit.keys("#")
    for _ in range(2):
        assert kit.card_sale("1")[3] == "Card used often"
        kit.keys("#")
    assert _newest(kit)[0] == DECLINE  # two declines counted since the clock was set
    assert kit.card_sale("1")[3] == "Card used often"
    kit.keys("#")
    assert _newest(kit)[:2] == (BLOCK, 3)
