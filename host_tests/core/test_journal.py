"""pos.journal and pos.statelog: every record sealed under its own key, no counter ever used
twice, the ledger rebuilt exactly from the state log, and no used key left on flash."""

import gc
import struct

from flashregion import Region

from expect import raises
from norflash import CutStore, NorFlash, PowerCut
from pos import logscan
from pos.compat import AES_ECB, aes
from pos.derive import derive_transaction_key, derive_working_key, ksn_bytes
from pos.dukpt import USAGE_DATA_ENCRYPT, USAGE_MAC_GENERATION
from pos.journal import Journal, JournalError
from pos.ledger import Ledger
from pos.record import CASH, CREDIT, SALE, Record
from pos.txq import QueueFull, TxQueue
from sealcheck import IK, IK_ID, STORAGE_KEY, open_record

_chips = {}


def chip(queue_sectors=6, sector_size=512):
    """The queue's sectors, then 8 state-log blocks of two sectors, on one chip (reused:
    a fresh chip per test would fragment a 96 KiB heap)."""
    key = (queue_sectors, sector_size)
    flash = _chips.get(key)
    if flash is None:
        flash = _chips[key] = NorFlash(queue_sectors + 16, sector_size=sector_size)
    else:
        flash.erase_all()
    return flash, Region(flash, 0, queue_sectors), Region(flash, queue_sectors, 8, 2)


def cut_before_append(queue):
    """The power goes after the journal's state-log writes, as the queue append starts."""

    def cut(body):
        raise PowerCut("cut before the append")

    queue.append = cut


def sale(amount, merchant=1):
    return Record(SALE, merchant, amount, 978, method=CASH)


def fresh(queue_sectors=6):
    flash, queue_bdev, log_bdev = chip(queue_sectors)
    Journal.provision(log_bdev, STORAGE_KEY, IK, IK_ID)
    return flash, queue_bdev, log_bdev, Journal(TxQueue(queue_bdev), log_bdev, STORAGE_KEY)


def restart(queue_bdev, log_bdev, key=STORAGE_KEY):
    return Journal(TxQueue(queue_bdev), log_bdev, key)


def test_unprovisioned_terminal_refuses():
    _, queue_bdev, log_bdev = chip()
    raises(JournalError, restart, queue_bdev, log_bdev)


def test_wrong_storage_key_refuses():
    _, queue_bdev, log_bdev, _ = fresh()
    raises(JournalError, restart, queue_bdev, log_bdev, bytes(16))


def test_records_open_with_the_back_ends_keys():
    _, queue_bdev, _, journal = fresh()
    counters = [journal.append(sale(100 + i, merchant=1 + i % 3)) for i in range(5)]
    assert counters == sorted(counters) and len(set(counters)) == 5
    opened = [open_record(c, frame) for c, frame in TxQueue(queue_bdev).unsent()]
    assert [r.amount_minor for r in opened] == [100, 101, 102, 103, 104]
    assert [r.merchant for r in opened] == [1, 2, 3, 1, 2]


def test_counter_continues_after_restart():
    _, queue_bdev, log_bdev, journal = fresh()
    last = journal.append(sale(1))
    again = restart(queue_bdev, log_bdev)
    assert again.next_counter > last
    assert again.append(sale(2)) > last


def test_damaged_register_skips_its_counters_never_reuses_them():
    flash, queue_bdev, log_bdev, journal = fresh()
    used = [journal.append(sale(i)) for i in range(1, 4)]
    # The live register of the next counter: flip one byte of its key in the log.
    log = journal.log
    j = 0
    while log._reg[j] != journal.next_counter:
        j += 1
    location = log._reg[32 + j]  # sector << 16 | offset of its frame
    address = log_bdev._address(location >> 16, (location & 0xFFFF) + 9, 1)
    flash.program(address, b"\x00")
    again = restart(queue_bdev, log_bdev)
    assert again.log.found_shredded == 1  # its remains zeroed, not trusted
    assert again.next_counter > journal.next_counter > used[-1]
    assert again.append(sale(9)) > used[-1]


def test_replaced_state_log_is_moved_past_the_queue():
    _, queue_bdev, log_bdev, journal = fresh()
    used = [journal.append(sale(i)) for i in range(1, 4)]
    Journal.provision(log_bdev, STORAGE_KEY, IK, IK_ID)  # e.g. a state log written again
    again = restart(queue_bdev, log_bdev)
    assert again.skipped_to > used[-1]
    assert again.append(sale(9)) > used[-1]
    assert restart(queue_bdev, log_bdev).next_counter > used[-1] + 1
    assert [c for c, _ in TxQueue(queue_bdev).unsent()][:3] == used


def test_full_queue_uses_no_counter():
    _, queue_bdev, log_bdev, journal = fresh(queue_sectors=3)
    while journal.queue.has_room(44):
        journal.append(sale(5))
    before = journal.next_counter
    raises(QueueFull, journal.append, sale(6))
    assert journal.next_counter == before
    assert restart(queue_bdev, log_bdev).next_counter == before


def test_record_counts_once_only_if_queued():
    flash, queue_bdev, log_bdev, journal = fresh()
    journal.append(sale(1), b"base-0")
    journal.append(sale(2), b"base-1")
    again = restart(queue_bdev, log_bdev)
    assert bytes(again.app_state) == b""  # the provisioned checkpoint, before any record
    replayed = [(c, Record.unpack(bytes(p)).amount_minor) for c, _, p in logscan.replay(again)]
    assert [amount for _, amount in replayed] == [1, 2]
    # A power cut between the state log and the queue: the record must never count.
    cut_before_append(again.queue)
    raises(PowerCut, again.append, sale(3), b"base-2")
    third = restart(queue_bdev, log_bdev)
    assert third.log.found_shredded == 1  # the orphan record killed
    assert [Record.unpack(bytes(p)).amount_minor for _, _, p in logscan.replay(third)] == [1, 2]
    assert third.append(sale(4)) > replayed[-1][0] + 1  # the cut counter is skipped


def test_ledger_is_rebuilt_exactly_from_checkpoint_and_log():
    _, queue_bdev, log_bdev = chip()
    Journal.provision(log_bdev, STORAGE_KEY, IK, IK_ID)
    ledger = Ledger(TxQueue(queue_bdev), log_bdev, STORAGE_KEY, every=7)
    for number in range(45):
        method = CREDIT if number % 2 else CASH
        record = Record(SALE, 1 + number % 3, 100 + number, 978, method=method, time=number)
        counter = ledger.book(record)
        if number % 5 == 4:
            ledger.queue.ack(counter - 2)
    state = bytearray(ledger.packed_size())
    ledger.pack_into(state, 0)
    sales_of_2 = ledger.totals.sum(2, SALE)
    ledger = None  # a restart: two ledgers never share a 96 KiB heap
    gc.collect()
    again = Ledger(TxQueue(queue_bdev), log_bdev, STORAGE_KEY, every=7)
    assert again.journal.log.checkpoint_as_of > 0  # it did cross checkpoints
    rebuilt = bytearray(again.packed_size())
    again.pack_into(rebuilt, 0)
    assert rebuilt == state
    assert again.totals.sum(2, SALE) == sales_of_2


def _secrets(journal):
    """Every key the terminal has used or dropped: the register of each counter below the
    next one (a transaction key is its counter's register) and its working keys."""
    found = set()
    for counter in range(1, journal.next_counter):
        ksn = ksn_bytes(IK_ID, counter)
        key = derive_transaction_key(IK, ksn)
        found.add(bytes(key))
        found.add(bytes(derive_working_key(key, ksn, USAGE_DATA_ENCRYPT)))
        found.add(bytes(derive_working_key(key, ksn, USAGE_MAC_GENERATION)))
    return found


def _search(images, wanted, control):
    """Count the 16-byte windows of the images that are a wanted key or the control: in
    clear, or decrypted at any byte offset with the device key or any key made from it
    (ECB, and CBC's XOR with the bytes before)."""
    derive = aes(STORAGE_KEY, AES_ECB)
    keys = [STORAGE_KEY] + [derive.encrypt(bytes([n]) * 16) for n in (1, 2, 3, 4)]
    deciphers = [aes(key, AES_ECB) for key in keys]
    hits = controls = 0
    for image in images:
        view = memoryview(image)
        for offset in range(len(image) - 15):
            block = bytes(view[offset : offset + 16])
            forms = [block]
            for decipher in deciphers:
                plain = decipher.decrypt(block)
                forms.append(plain)
                if offset >= 16:
                    before = view[offset - 16 : offset]
                    forms.append(bytes(plain[i] ^ before[i] for i in range(16)))
            for form in forms:
                if form in wanted:
                    hits += 1
                elif form == control:
                    controls += 1
    return hits, controls


def _open_log_entries(log_bdev, log, wanted, control):
    """Open every place of the state log as if a register or record frame began there, with
    the log's own key stream (what the device key opens): (wanted found, control found)."""
    hits = controls = 0
    size = log_bdev.sector_size
    sector_bytes = bytearray(size)
    for sector in range(log_bdev.sector_count):
        log_bdev.readblocks(sector, sector_bytes, 0)
        seq = struct.unpack_from("<I", sector_bytes, 4)[0]  # kept by a killed header too
        for offset in range(20, size - 25):
            counter = struct.unpack_from(">I", sector_bytes, offset + 1)[0]
            for tag, start, index in ((0x4B, 5, 0), (0x53, 9, 0), (0x53, 25, 1)):
                if offset + start + 16 > size:
                    continue
                log.keystream(counter, seq, offset, tag, index)
                form = bytes(sector_bytes[offset + start + i] ^ log._block[i] for i in range(16))
                if form in wanted:
                    hits += 1
                elif form == control:
                    controls += 1
    return hits, controls


def test_no_used_key_survives_anywhere_on_flash():
    flash, queue_bdev, log_bdev = chip()
    store = CutStore(flash)
    store.write("device.key", STORAGE_KEY)
    Journal.provision(log_bdev, STORAGE_KEY, IK, IK_ID)
    ledger = Ledger(TxQueue(queue_bdev), log_bdev, STORAGE_KEY, every=6)
    for number in range(40):
        counter = ledger.book(Record(SALE, 1 + number % 3, 50 + number, 978, method=CASH))
        if number % 4 == 3:
            ledger.queue.ack(counter)
    # A power cut between the log and the queue, so a counter is dropped too.
    cut_before_append(ledger.queue)
    raises(PowerCut, ledger.book, sale(7))
    ledger = None
    gc.collect()
    ledger = Ledger(TxQueue(queue_bdev), log_bdev, STORAGE_KEY, every=6)
    journal = ledger.journal
    assert sum(flash.erase_counts[6:]) > 16  # the log wrapped: sectors were reclaimed
    wanted = _secrets(journal)
    assert len(wanted) >= 3 * 40
    images = [flash._ram]
    for blocks, length in flash.files.values():
        images.append(b"".join(bytes(block) for block in blocks)[:length])
    # The search does find keys that are there: the register of the next counter.
    control = bytes(derive_transaction_key(IK, ksn_bytes(IK_ID, journal.next_counter)))
    assert _search(images, wanted, control) == (0, 0)
    assert _open_log_entries(log_bdev, journal.log, wanted, control) == (0, 1)
