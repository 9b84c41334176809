"""pos.journal: every record sealed under its own key, and no counter ever used twice."""

from expect import raises
from norflash import CutStore, NorFlash
from pos.journal import STATE_FILE, Journal, JournalError
from pos.record import CASH, SALE, Record
from pos.txq import QueueFull, TxQueue
from sealcheck import IK, IK_ID, STORAGE_KEY, open_record


def sale(amount, merchant=1):
    return Record(SALE, merchant, amount, 978, method=CASH)


def fresh(sectors=6, sector_size=512):
    flash = NorFlash(sectors, sector_size=sector_size)
    store = CutStore(flash)
    Journal.provision(store, STORAGE_KEY, IK, IK_ID)
    return flash, store, Journal(TxQueue(flash), store, STORAGE_KEY)


def test_unprovisioned_terminal_refuses():
    flash = NorFlash(6, sector_size=512)
    raises(JournalError, Journal, TxQueue(flash), CutStore(flash), STORAGE_KEY)


def test_corrupt_key_state_refuses():
    flash, store, _ = fresh()
    state = bytearray(store.read(STATE_FILE))
    state[20] ^= 0xFF
    store.write(STATE_FILE, state)
    raises(JournalError, Journal, TxQueue(flash), store, STORAGE_KEY)


def test_wrong_storage_key_refuses():
    flash, store, _ = fresh()
    raises(JournalError, Journal, TxQueue(flash), store, bytes(16))


def test_records_open_with_the_back_ends_keys():
    flash, store, journal = fresh()
    counters = [journal.append(sale(100 + i, merchant=1 + i % 3)) for i in range(5)]
    assert counters == sorted(counters) and len(set(counters)) == 5
    queue = TxQueue(flash)
    opened = [open_record(c, frame) for c, frame in queue.unsent()]
    assert [r.amount_minor for r in opened] == [100, 101, 102, 103, 104]
    assert [r.merchant for r in opened] == [1, 2, 3, 1, 2]


def test_counter_continues_after_restart():
    flash, store, journal = fresh()
    last = journal.append(sale(1))
    again = Journal(TxQueue(flash), store, STORAGE_KEY)
    assert again.next_counter > last
    assert again.append(sale(2)) > last


def test_stale_key_state_is_moved_past_the_queue():
    flash, store, journal = fresh()
    old_state = store.read(STATE_FILE)
    used = [journal.append(sale(i)) for i in range(1, 4)]
    store.write(STATE_FILE, old_state)  # e.g. the state file restored from an old copy
    again = Journal(TxQueue(flash), store, STORAGE_KEY)
    assert again.skipped_to > used[-1]
    assert again.append(sale(9)) > used[-1]
    assert [c for c, _ in TxQueue(flash).unsent()][:3] == used


def test_full_queue_uses_no_counter():
    flash, store, journal = fresh(sectors=3, sector_size=512)
    while journal.queue.has_room(44):
        journal.append(sale(5))
    before = journal.next_counter
    raises(QueueFull, journal.append, sale(6))
    assert journal.next_counter == before
    assert Journal(TxQueue(flash), store, STORAGE_KEY).next_counter == before


def test_used_transaction_keys_are_not_in_the_stored_state():
    from pos.dukpt import derive_transaction_key, ksn_bytes

    flash, store, journal = fresh()
    used = [journal.append(sale(i)) for i in range(1, 6)]
    state = journal._dukpt.to_bytes()  # the registers as they are about to be stored
    for counter in used:
        assert derive_transaction_key(IK, ksn_bytes(IK_ID, counter)) not in state


def test_intent_counts_once_only_if_queued():
    flash, store, journal = fresh()
    journal.append(sale(1), b"base-0")
    again = Journal(TxQueue(flash), store, STORAGE_KEY)
    assert again.app_state == b"base-0"
    counter, plain = again.pending
    assert Record.unpack(plain).amount_minor == 1
    again.append(sale(2), b"base-1")
    third = Journal(TxQueue(flash), store, STORAGE_KEY)
    assert third.app_state == b"base-1" and Record.unpack(third.pending[1]).amount_minor == 2
