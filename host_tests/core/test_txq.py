"""pos.txq: append, recover, ack, reclaim, full queue and bad flash contents."""

import struct

from expect import raises
from norflash import NorFlash
from pos.txq import HEADER_SIZE, SECTOR_SIZE, QueueError, QueueFull, TxQueue


def body(counter, size=44):
    """A stand-in sealed record: the counter, then bytes derived from it."""
    data = bytearray(size)
    struct.pack_into(">I", data, 0, counter)
    for i in range(4, size):
        data[i] = (counter * 7 + i) & 0xFF
    return bytes(data)


def counters(queue):
    return [counter for counter, _ in queue.unsent()]


def fill(queue, first, count):
    for counter in range(first, first + count):
        queue.append(body(counter))


def test_empty_flash_is_an_empty_queue():
    queue = TxQueue(NorFlash(4))
    assert queue.unsent_count() == 0
    assert counters(queue) == []
    assert queue.last_counter == 0


def test_append_survives_reboot():
    flash = NorFlash(4)
    queue = TxQueue(flash)
    fill(queue, 1, 5)
    again = TxQueue(flash)
    assert counters(again) == [1, 2, 3, 4, 5]
    assert again.last_counter == 5
    frames = [bytes(frame) for _, frame in again.unsent()]
    assert frames[2][1:-4] == body(3)


def test_frame_is_length_body_crc():
    queue = TxQueue(NorFlash(4))
    queue.append(body(9))
    frame = bytes(next(queue.unsent())[1])
    assert len(frame) == 49  # 1 + 44 + 4
    assert frame[0] == 44


def test_counters_must_increase():
    queue = TxQueue(NorFlash(4))
    queue.append(body(10))
    raises(QueueError, queue.append, body(10))
    raises(QueueError, queue.append, body(3))
    queue.append(body(12))
    assert counters(queue) == [10, 12]


def test_record_size_limits():
    queue = TxQueue(NorFlash(4))
    raises(QueueError, queue.append, b"\x00\x00\x01")
    raises(QueueError, queue.append, body(1, 128))
    queue.append(body(1, 127))
    assert counters(queue) == [1]


def test_ack_hides_records_and_survives_reboot():
    flash = NorFlash(4)
    queue = TxQueue(flash)
    fill(queue, 1, 6)
    assert queue.ack(4)
    assert counters(queue) == [5, 6]
    assert queue.unsent_count() == 2
    again = TxQueue(flash)
    assert again.ack_watermark == 4
    assert counters(again) == [5, 6]
    acked = [c for c, was_acked, _ in again.records() if was_acked]
    assert acked == [1, 2, 3, 4]


def test_ack_above_last_record_is_refused():
    queue = TxQueue(NorFlash(4))
    fill(queue, 1, 2)
    raises(QueueError, queue.ack, 3)
    assert queue.ack_watermark == 0


def test_records_span_sectors_in_order():
    flash = NorFlash(6)
    queue = TxQueue(flash)
    per_sector = (SECTOR_SIZE - HEADER_SIZE) // 49
    fill(queue, 1, per_sector * 2 + 3)
    assert queue.sector_in_use == 3
    again = TxQueue(flash)
    assert counters(again) == list(range(1, per_sector * 2 + 4))


def test_full_queue_refuses_and_keeps_everything():
    flash = NorFlash(4)
    queue = TxQueue(flash)
    per_sector = (SECTOR_SIZE - HEADER_SIZE) // 49
    capacity = per_sector * 3  # four sectors, one kept spare
    fill(queue, 1, capacity)
    raises(QueueFull, queue.append, body(capacity + 1))
    assert queue.unsent_count() == capacity
    assert counters(TxQueue(flash)) == list(range(1, capacity + 1))


def test_ack_frees_room_by_whole_sectors():
    flash = NorFlash(4)
    queue = TxQueue(flash)
    per_sector = (SECTOR_SIZE - HEADER_SIZE) // 49
    capacity = per_sector * 3
    fill(queue, 1, capacity)
    assert queue.ack(per_sector - 1)  # not a whole sector: still full
    raises(QueueFull, queue.append, body(capacity + 1))
    assert queue.ack(per_sector)  # the oldest sector is all acked: it is reclaimed
    erases_before = flash.erases
    fill(queue, capacity + 1, per_sector)
    assert flash.erases == erases_before  # the reclaimed sector was erased at ack time
    assert counters(TxQueue(flash)) == list(range(per_sector + 1, capacity + per_sector + 1))


def test_ring_wraps_many_times():
    flash = NorFlash(4)
    queue = TxQueue(flash)
    counter = 0
    for _ in range(12):
        for _ in range(50):
            counter += 1
            queue.append(body(counter))
        queue.ack(counter - 10)
    again = TxQueue(flash)
    assert counters(again) == list(range(counter - 9, counter + 1))
    assert again.last_counter == counter
    assert max(flash.erase_counts) - min(flash.erase_counts) <= 1  # wear is even


def test_ack_is_kept_when_its_sector_is_reclaimed():
    flash = NorFlash(4)
    queue = TxQueue(flash)
    per_sector = (SECTOR_SIZE - HEADER_SIZE) // 49
    fill(queue, 1, per_sector * 2)
    queue.ack(per_sector * 2)
    fill(queue, per_sector * 2 + 1, 3)
    again = TxQueue(flash)
    assert again.ack_watermark == per_sector * 2
    assert counters(again) == [per_sector * 2 + 1, per_sector * 2 + 2, per_sector * 2 + 3]


def test_last_counter_survives_when_every_record_is_reclaimed():
    flash = NorFlash(4)
    queue = TxQueue(flash)
    per_sector = (SECTOR_SIZE - HEADER_SIZE) // 49
    fill(queue, 1, per_sector + 1)
    queue.ack(per_sector + 1)
    fill(queue, per_sector + 2, per_sector)
    queue.ack(2 * per_sector + 1)
    again = TxQueue(flash)
    assert again.unsent_count() == 0
    assert again.last_counter == 2 * per_sector + 1  # from the head sector's header
    raises(QueueError, again.append, body(2 * per_sector + 1))


def test_corrupt_record_ends_its_sector_only():
    flash = NorFlash(6)
    queue = TxQueue(flash)
    per_sector = (SECTOR_SIZE - HEADER_SIZE) // 49
    fill(queue, 1, per_sector + 5)
    # Flip bits inside the third record of the first sector (clearing bits, as flash would).
    flash.program(HEADER_SIZE + 2 * 49 + 10, b"\x00")
    again = TxQueue(flash)
    assert again.found_corrupt == 1
    assert counters(again) == [1, 2] + list(range(per_sector + 1, per_sector + 6))


def test_torn_tail_of_head_sector_closes_it():
    flash = NorFlash(4)
    queue = TxQueue(flash)
    fill(queue, 1, 3)
    # A frame whose CRC never got written: length and body present, CRC erased.
    flash.program(HEADER_SIZE + 3 * 49, bytes([44]) + body(4))
    again = TxQueue(flash)
    assert again.head_closed
    assert counters(again) == [1, 2, 3]
    again.append(body(5))
    assert again.head == 1
    assert counters(TxQueue(flash)) == [1, 2, 3, 5]


def test_unknown_format_version_refuses_appends():
    flash = NorFlash(4)
    queue = TxQueue(flash)
    fill(queue, 1, 2)
    header = bytearray(HEADER_SIZE)
    struct.pack_into("<HBBIIII", header, 0, 0x544F, 9, 0, 7, 0, 0, 0)
    from pos.compat import crc32

    struct.pack_into("<I", header, 16, crc32(bytes(header[:16])))
    flash.program(2 * SECTOR_SIZE, header)
    again = TxQueue(flash)
    assert again.found_unknown_sectors == 1
    raises(QueueError, again.append, body(3))
    assert counters(again) == [1, 2]


def test_sector_from_an_older_cycle_is_ignored():
    flash = NorFlash(4)
    queue = TxQueue(flash)
    fill(queue, 1, 3)
    # An old-cycle sector (sequence far behind) with a valid header and a plausible record.
    stale = TxQueue(NorFlash(4))
    stale.append(body(99))
    data = bytearray(SECTOR_SIZE)
    stale._bdev.readblocks(0, data, 0)
    struct.pack_into("<HBBIIII", data, 0, 0x544F, 1, 0, 0, 0, 0, 0)
    from pos.compat import crc32

    struct.pack_into("<I", data, 16, crc32(bytes(data[:16])))
    flash.program(2 * SECTOR_SIZE, data)
    again = TxQueue(flash)
    assert again.found_stale_sectors == 1
    assert counters(again) == [1, 2, 3]
    assert again.last_counter == 3


def test_garbage_flash_recovers_empty():
    flash = NorFlash(4)
    pattern = bytearray(SECTOR_SIZE)
    for i in range(SECTOR_SIZE):
        pattern[i] = (i * 37) & 0xFF
    for sector in range(4):
        flash.program(sector * SECTOR_SIZE, pattern)
    queue = TxQueue(flash)
    assert counters(queue) == []
    queue.append(body(1))
    assert counters(TxQueue(flash)) == [1]


def test_has_room_predicts_append():
    flash = NorFlash(4)
    queue = TxQueue(flash)
    per_sector = (SECTOR_SIZE - HEADER_SIZE) // 49
    counter = 0
    while queue.has_room(44):
        counter += 1
        queue.append(body(counter))
    assert counter == per_sector * 3
    raises(QueueFull, queue.append, body(counter + 1))
    queue.ack(per_sector)
    assert queue.has_room(44)
    queue.append(body(counter + 1))


def test_small_sectors_work_like_large_ones():
    flash = NorFlash(8, sector_size=512)
    queue = TxQueue(flash)
    for counter in range(1, 200):
        queue.append(body(counter))
        if counter % 7 == 0:
            queue.ack(counter - 3)
    assert counters(TxQueue(flash)) == [194, 195, 196, 197, 198, 199]  # last ack: 196 - 3
