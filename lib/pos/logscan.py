"""The state log read at start (pos.statelog's format): recovery, the live registers, the last
checkpoint and the records booked after it; and the queue's recovery (pos.txq's format),
which pos.txq.TxQueue runs when it is made.

Apart from pos.statelog and pos.txq so that this code takes the heap only while the
terminal starts: the ledger unloads it once it has replayed the records
(pos.compat.unload).
"""

import struct
from array import array

from pos.compat import const, crc32, why
from pos.statelog import HEADER_FORMAT, ZEROS, LogError, expected_counter, u32
from pos.txq import _HEADER_FORMAT as _QUEUE_HEADER
from pos.txq import _WHY as _QUEUE_WHY

# pos.statelog's format (const() names are not module attributes on MicroPython, so they are
# repeated here; test_journal checks both modules read and write the same log).
_FORMAT_VERSION = const(1)
_HEADER_SIZE = const(20)
_REGISTER_FRAME = const(25)
_SALE_FRAME = const(45)
_CHUNK_OVERHEAD = const(12)
_MAX_CHUNK = const(100)
_MAGIC = const(0x4C53)
_TAG_REGISTER = const(0x4B)
_TAG_SALE = const(0x53)
_TAG_CHUNK = const(0x43)
_ERASED = const(0xFF)
_NUM_REG = const(32)
_REG_SIZE = const(16)
_WINDOW = const(112)
_MIN_SECTOR_SIZE = const(256)
_SPARE_SECTORS = const(2)
# pos.txq's
_QUEUE_MAGIC = const(0x544F)
_QUEUE_ACK = const(0x84)  # an ack frame's length byte
_QUEUE_VERSION = const(1)
_QUEUE_HEADER_SIZE = const(20)


def lowest_bit(counter):
    bit = 0
    while counter and not counter & 1:
        counter >>= 1
        bit += 1
    return bit


def check(log, storage_key):
    """Read the partition's geometry into log; LogError if the log cannot live on it."""
    log.sector_count = n = log._bdev.ioctl(4, 0)
    log.sector_size = size = log._bdev.ioctl(5, 0)
    if size < _MIN_SECTOR_SIZE or size % 16:
        raise LogError("state log partition has unusable %d-byte blocks" % size)
    if n < 3 + _SPARE_SECTORS:
        raise LogError("state log partition too small")
    if len(storage_key) != 16:
        raise LogError("device storage key must be 16 bytes")


def recover(log):
    n = log.sector_count
    log._window = bytearray(_WINDOW)  # until the ledger's end_replay()
    log._seq = array("I", bytes(4 * n))  # sector sequence numbers, while the log is read
    log.tail = log.head = -1
    log.head_offset = 0
    log.head_closed = False
    log.sector_in_use = 0
    log.records_since_checkpoint = 0
    log.checkpoint_as_of = 0
    log.checkpoint_count = 0  # 0: no complete checkpoint found
    log.checkpoint_size = 0
    log._checkpoint_sector = log._checkpoint_offset = 0
    log.found_shredded = 0  # registers and orphans shredded by this recovery
    for j in range(_NUM_REG):
        log._reg[j] = 0
    valid = bytearray(n)
    head_seq = -1
    for sector in range(n):
        if _read_header(log, sector):
            valid[sector] = 1
            if log._seq[sector] > head_seq:
                head_seq = log._seq[sector]
                log.head = sector
    if log.head < 0:
        return
    log.head_seq = log._seq[log.head]
    log.tail = log.head
    count = 1
    while count < n:
        before = (log.tail - 1) % n
        if not valid[before] or log._seq[before] != (log._seq[log.tail] - 1) & 0xFFFFFFFF:
            break
        log.tail = before
        count += 1
    log.sector_in_use = count
    log._bdev.readblocks(log.head, log._header, 0)
    log.ik_id = bytes(log._header[8:16])
    # Registers count only in sectors that name the head's IK ID: a key install (pos.keyrot)
    # commits with a sector header naming the new one, and the old key's registers go.
    # (Compared byte by byte: a slice each would leave garbage among the long-lived objects
    # the terminal makes next.)
    header = log._header
    ik_id = log.ik_id
    for sector in _log_sectors(log):
        log._bdev.readblocks(sector, header, 0)
        for i in range(8):
            if header[8 + i] != ik_id[i]:
                valid[sector] = 2
                break
    # Pass 1: the lowest live counter, the last complete checkpoint, the head's end.
    lowest = 0
    started = -1  # chunk index expected next of the checkpoint being read, -1: none
    as_of = chunk_count = start_sector = start_offset = blob_size = 0
    window = log._window
    for sector in _log_sectors(log):
        offset = _HEADER_SIZE
        size = 0
        while offset < log.sector_size:
            size = _frame_at(log, sector, offset)
            if size <= 0:
                break
            if log._valid:
                tag = window[0]
                if tag == _TAG_REGISTER and valid[sector] == 2:
                    pass  # another key's register: shredded below
                elif tag == _TAG_REGISTER:
                    counter = u32(window, 1)
                    if not lowest or counter < lowest:
                        lowest = counter
                elif tag == _TAG_CHUNK:
                    index, total = window[5], window[6]
                    if index == 0:
                        started, as_of, chunk_count = 0, u32(window, 1), total
                        start_sector, start_offset, blob_size = sector, offset, 0
                    if started == index and u32(window, 1) == as_of and total == chunk_count:
                        started += 1
                        blob_size += window[7]
                        if started == chunk_count:
                            log.checkpoint_as_of = as_of
                            log.checkpoint_count = chunk_count
                            log.checkpoint_size = blob_size
                            log._checkpoint_sector = start_sector
                            log._checkpoint_offset = start_offset
                            log.records_since_checkpoint = 0
                            started = -1
                    else:
                        started = -1
                elif tag == _TAG_SALE:
                    log.records_since_checkpoint += 1
            offset += size
        if sector == log.head:
            log.head_offset = offset
            if size < 0 or not log._erased_from(sector, offset):
                log.head_closed = True
    # Pass 2: keep the registers the lowest counter expects, shred everything else.
    for sector in _log_sectors(log):
        offset = _HEADER_SIZE
        end = log.head_offset if sector == log.head else log.sector_size
        while offset < end:
            size = _frame_at(log, sector, offset)
            if size <= 0:
                break
            if window[0] == _TAG_REGISTER:
                _settle_register(log, sector, offset, 0 if valid[sector] == 2 else lowest)
            offset += size


def _settle_register(log, sector, offset, lowest):
    window = log._window
    if log._valid and lowest:  # lowest 0: a register of another key (or none is live)
        counter = u32(window, 1)
        j = lowest_bit(counter)
        if j >= lowest_bit(lowest) and counter == expected_counter(lowest, j) and not log._reg[j]:
            log._reg[j] = counter
            log._reg[_NUM_REG + j] = sector << 16 | offset
            return
    else:
        for i in range(5, 5 + _REG_SIZE):
            if window[i]:
                break
        else:
            return  # shredded already
    log._shred(sector, offset)
    log.found_shredded += 1


def _read_header(log, sector):
    header = log._header
    log._bdev.readblocks(sector, header, 0)
    magic, version, _, seq, _, crc = struct.unpack(HEADER_FORMAT, header)
    if magic != _MAGIC or version != _FORMAT_VERSION:
        return False
    if crc != crc32(memoryview(header)[:16]):
        return False
    log._seq[sector] = seq
    return True


def _frame_at(log, sector, offset):
    """Read the frame at offset into the window; its size (log._valid tells whether its
    CRC holds), 0 for erased space, -1 for bytes whose length cannot be known."""
    window = log._window
    length = log.sector_size - offset
    if length > _WINDOW:
        length = _WINDOW
    log._bdev.readblocks(sector, memoryview(window)[:length], offset)
    tag = window[0]
    log._valid = False
    if tag == _ERASED:
        return 0
    if tag == _TAG_REGISTER:
        size = _REGISTER_FRAME
    elif tag == _TAG_SALE:
        size = _SALE_FRAME
    elif tag == _TAG_CHUNK and length > 7 and window[7] <= _MAX_CHUNK:
        size = _CHUNK_OVERHEAD + window[7]
    else:
        return -1
    if size > length:
        return -1
    end = size - 4
    stored = window[end] | window[end + 1] << 8 | window[end + 2] << 16 | window[end + 3] << 24
    log._valid = stored == crc32(memoryview(window)[:end])
    return size


def _log_sectors(log):
    if log.tail < 0:
        return
    sector = log.tail
    for _ in range(log.sector_in_use):
        yield sector
        sector = (sector + 1) % log.sector_count


# --- what recovery hands the journal-


def next_counter(log):
    """The lowest live register's counter: the next the terminal may use (0: none)."""
    lowest = 0
    for j in range(_NUM_REG):
        counter = log._reg[j]
        if counter and (not lowest or counter < lowest):
            lowest = counter
    return lowest


def load_registers(log, terminal):
    """Fill terminal (a new pos.dukpt.DukptTerminal) with the live registers, in place (no
    packed copy of its keys on the heap); LogError if one its counter needs is missing."""
    if log.ik_id is None:
        raise LogError("no DUKPT key loaded: provision this terminal")
    terminal.ik_id = log.ik_id
    counter = next_counter(log)
    terminal._set_counter(counter if counter else 0x100000000)  # none left: exhausted
    if not counter:
        return
    low = lowest_bit(counter)
    keys = memoryview(terminal._keys)
    for j in range(low, _NUM_REG):
        if j != low and counter >> j & 1:
            continue  # this counter expects no register j
        if not log._reg[j]:
            raise LogError("state log lost DUKPT register %d" % j)
        location = log._reg[_NUM_REG + j]
        sector, offset = location >> 16, location & 0xFFFF
        # Opened in place, in the terminal's register: no clear copy anywhere else.
        register = keys[j * _REG_SIZE : (j + 1) * _REG_SIZE]
        log._bdev.readblocks(sector, register, offset + 5)
        log.keystream(log._reg[j], log._seq[sector], offset, _TAG_REGISTER, 0)
        for i in range(_REG_SIZE):
            register[i] ^= log._block[i]
        terminal._in_use[j] = 1


def read_checkpoint(log, buf):
    """Copy the last complete checkpoint's blob into buf; returns its size (0: none)."""
    if not log.checkpoint_count:
        return 0
    window = log._window
    sector, offset = log._checkpoint_sector, log._checkpoint_offset
    size = index = visited = 0
    while index < log.checkpoint_count:
        frame = 0
        if offset < log.sector_size:
            frame = _frame_at(log, sector, offset)
        if frame <= 0:
            visited += 1
            if visited >= log.sector_in_use:
                raise LogError("checkpoint incomplete")
            sector = (sector + 1) % log.sector_count
            offset = _HEADER_SIZE
            continue
        if (
            log._valid
            and window[0] == _TAG_CHUNK
            and window[5] == index
            and u32(window, 1) == log.checkpoint_as_of
        ):
            length = window[7]
            if size + length > len(buf):
                raise LogError("checkpoint larger than its buffer")
            buf[size : size + length] = memoryview(window)[8 : 8 + length]
            size += length
            index += 1
        offset += frame
    return size


def sales(log):
    """Yield (counter, ack watermark, sector, offset) of the valid S frames after the last
    checkpoint with a counter above its as-of counter, oldest first. The record is read
    with record_at(sector, offset)."""
    if not log.checkpoint_count:
        return
    window = log._window
    sector, offset = log._checkpoint_sector, log._checkpoint_offset
    while True:
        end = log.head_offset if sector == log.head else log.sector_size
        while offset < end:
            size = _frame_at(log, sector, offset)
            if size <= 0:
                break
            if log._valid and window[0] == _TAG_SALE:
                counter = u32(window, 1)
                if counter > log.checkpoint_as_of:
                    yield counter, u32(window, 5), sector, offset
            offset += size
        if sector == log.head:
            return
        sector = (sector + 1) % log.sector_count
        offset = _HEADER_SIZE


def record_at(log, sector, offset, out):
    """Open the record of the S frame at (sector, offset) into out (32 bytes)."""
    window = log._window
    log._bdev.readblocks(sector, memoryview(window)[:_SALE_FRAME], offset)
    counter = u32(window, 1)
    for index in (0, 1):
        log.keystream(counter, log._seq[sector], offset, _TAG_SALE, index)
        for i in range(16):
            out[16 * index + i] = window[9 + 16 * index + i] ^ log._block[i]
    return out


def kill_sale(log, sector, offset):
    """Zero a sale's record: its append never finished, so it must never count."""
    log._bdev.writeblocks(sector, ZEROS, offset + 9)
    log.found_shredded += 1


def format_log(bdev, storage_key, dukpt, blob):
    """Start a log on bdev (provisioning): every sector erased, the registers of dukpt (a
    fresh pos.dukpt.DukptTerminal) and blob as the checkpoint as of counter 0."""
    from pos.statelog import StateLog

    for sector in range(bdev.ioctl(4, 0)):
        bdev.ioctl(6, sector)
    log = StateLog(bdev, storage_key)
    log.ik_id = bytes(dukpt.ik_id)
    log.commit(dukpt, _NUM_REG)
    log.checkpoint(blob, 0)


def open_journal(journal, log_bdev, storage_key, app_room):
    """pos.journal.Journal's start (here, so that its code goes with this module): the
    registers and the last checkpoint from the log, records whose append never finished
    killed, the registers moved past the queue's highest counter."""
    from pos.dukpt import DukptError, DukptTerminal
    from pos.journal import JournalError
    from pos.seal import SealError, StateSealer
    from pos.statelog import StateLog

    queue = journal.queue
    journal._dukpt = dukpt = DukptTerminal(bytes(8))
    try:
        # The log borrows the queue's frame and header buffers (pos.txq): the journal
        # writes to the log, then to the queue, never to both at once.
        journal.log = log = StateLog(log_bdev, storage_key, queue._frame, queue._header)
        load_registers(log, dukpt)
        if not log.checkpoint_count:
            raise JournalError("state log has no checkpoint: provision this terminal")
        # The checkpoint is read and opened in this buffer; the ledger copies what it
        # needs and the buffer goes at end_replay(), leaving one piece of room for the
        # config parser loaded next (a small state gets a small buffer if the heap is
        # already broken up). A checkpoint, every CHECKPOINT_EVERY records, makes its
        # own: 1.8 KiB kept for the life of the terminal would be the largest block in
        # a 96 KiB heap, used once in 150 sales.
        try:
            room = StateSealer.blob_size(app_room)
            journal._state_buf = bytearray(max(room, log.checkpoint_size))
        except MemoryError:
            journal._state_buf = bytearray(log.checkpoint_size)
        length = read_checkpoint(log, journal._state_buf)
        start, size = StateSealer(storage_key).open_in_place(journal._state_buf, length)
    except (LogError, DukptError, SealError) as exc:
        raise JournalError("journal state unreadable: " + str(exc))  # noqa: B904
    # The ledger's state at the checkpoint: a view into the buffer, valid until the
    # first checkpoint is written.
    journal.app_state = memoryview(journal._state_buf)[start : start + size]
    for counter, _, sector, offset in sales(log):
        if counter > queue.last_counter:
            kill_sale(log, sector, offset)
    journal.skipped_to = 0
    journal.last_counter_used = queue.last_counter
    if queue.last_counter >= dukpt.counter:
        dukpt.skip_past(queue.last_counter)
        journal.skipped_to = dukpt.counter
        log.commit(dukpt, 32)


def replay(journal):
    """Yield (counter, ack watermark, packed record) for every record booked after the
    journal's checkpoint whose append finished, oldest first; the record is a buffer the
    next step reuses."""
    log = journal.log
    last = journal.queue.last_counter
    for counter, watermark, sector, offset in sales(log):
        if counter <= last:
            yield counter, watermark, record_at(log, sector, offset, journal._plain)


def load_ledger(ledger, data):
    """pos.ledger.Ledger's state from the checkpoint's data (a ledger packs it itself)."""
    if not data:
        return
    from pos.ledger import LEDGER_VERSION
    from pos.reports import RECENT_BYTES, RECENT_SIZE, V1_SLOTS

    version = data[0]
    if version == 1:
        ledger.next_receipt = struct.unpack_from(">I", data, 1)[0]
        offset = _load_totals(ledger.totals, data, 5, V1_SLOTS)
    elif version == LEDGER_VERSION:
        ledger.next_receipt, ledger.utc_offset_min = struct.unpack_from(">Ih", data, 1)
        offset = _load_totals(ledger.totals, data, 7, 0)
    else:
        raise ValueError("ledger state of unknown version %d" % version)
    # The recent records into the ledger's own ring (its 1 KiB made before the heap broke
    # up).
    recent = ledger.recent
    count = data[offset]
    offset += 1
    if count > RECENT_SIZE:
        raise ValueError("recent records: bad count %d" % count)
    recent._buf[: count * RECENT_BYTES] = data[offset : offset + count * RECENT_BYTES]
    recent.count = count
    recent._next = count % RECENT_SIZE


def _load_totals(totals, data, offset, stored_slots):
    """Fill totals (an empty pos.reports.Totals) from data; the offset after them.
    stored_slots per merchant (0: all of today's; fewer: the rest are 0)."""
    count = data[offset]
    offset += 1
    for _ in range(count):
        slots = totals._of(data[offset])
        if not stored_slots:
            stored_slots = len(slots)
        for i in range(stored_slots):
            slots[i] = struct.unpack_from(">I", data, offset + 1 + i * 4)[0]
        offset += 1 + stored_slots * 4
    return offset


class StateBytes:
    """Plain bytes as a journal's app state (provisioning, tests that book without a
    ledger)."""

    def __init__(self, data):
        self.data = data

    def packed_size(self):
        return len(self.data)

    def pack_into(self, buf, offset):
        buf[offset : offset + len(self.data)] = self.data
        return offset + len(self.data)


# --- the queue's recovery (pos.txq's format): at start only, like the state log's ---------


def recover_queue(q):
    """Rebuild every fact about the queue (a pos.txq.TxQueue being made) from the flash alone."""
    n = q.sector_count
    q.tail = -1  # oldest sector of the log, -1 when the log is empty
    q.head = -1  # sector being written
    q.head_offset = 0
    q.head_closed = False  # a torn write ended the head sector: open a new one
    q.ack_watermark = 0
    q.last_counter = 0
    q.sector_in_use = 0
    q.refused = None  # set when the flash holds a format this firmware cannot handle
    # What recovery found, for the status screen and the fault log.
    q.found_records = 0
    q.found_acks = 0
    q.found_corrupt = 0
    q.found_stale_sectors = 0
    q.found_unknown_sectors = 0

    valid = bytearray(n)
    head_seq = -1
    for sector in range(n):
        state = _queue_header(q, sector)
        if state == 1:
            valid[sector] = 1
            if q._seq[sector] > head_seq or head_seq < 0:
                head_seq = q._seq[sector]
                q.head = sector
        elif state == 2:
            q.found_unknown_sectors += 1
    if q.found_unknown_sectors:
        q.refused = why(_QUEUE_WHY, 8)
    if q.head < 0:
        return
    # Walk back from the head while the sequence numbers run on without a gap.
    q.tail = q.head
    count = 1
    while count < n:
        before = (q.tail - 1) % n
        if not valid[before] or q._seq[before] != (q._seq[q.tail] - 1) & 0xFFFFFFFF:
            break
        q.tail = before
        count += 1
    q.sector_in_use = count
    for sector in range(n):
        if valid[sector] and not _in_queue(q, sector):
            q.found_stale_sectors += 1
    sector = q.tail
    for _ in range(count):
        _scan_queue_sector(q, sector)
        sector = (sector + 1) % n


def _queue_header(q, sector):
    """Load one header: 1 valid, 2 ours but an unknown version, 0 anything else."""
    header = q._header
    q._bdev.readblocks(sector, header, 0)
    magic, version, _, seq, watermark, last, crc = struct.unpack(_QUEUE_HEADER, header)
    if magic != _QUEUE_MAGIC or crc != crc32(memoryview(header)[:16]):
        return 0
    if version != _QUEUE_VERSION:
        return 2
    q._seq[sector] = seq
    if watermark > q.ack_watermark:
        q.ack_watermark = watermark
    if last > q.last_counter:
        q.last_counter = last
    return 1


def _scan_queue_sector(q, sector):
    window = q._window
    offset = _QUEUE_HEADER_SIZE
    first = last = records = size = 0
    while offset < q.sector_size:
        size = q._frame_at(sector, offset)
        if size <= 0:
            break
        if window[0] == _QUEUE_ACK:
            q.found_acks += 1
            watermark = u32(window, 1)
            if watermark > q.ack_watermark:
                q.ack_watermark = watermark
        else:
            counter = u32(window, 1)
            if not first:
                first = counter
            last = counter
            records += 1
            q.found_records += 1
            if counter > q.last_counter:
                q.last_counter = counter
        offset += size
    q._first_counter[sector] = first
    q._last_counter[sector] = last
    q._records[sector] = records
    if sector == q.head:
        q.head_offset = offset
        # Anything but erased bytes after the last good frame is a torn write: the
        # head sector takes no more frames (its bits cannot be set again).
        if size < 0 or not q._erased_from(sector, offset):
            q.head_closed = True
            q.found_corrupt += 1
    elif size < 0:
        q.found_corrupt += 1


def _in_queue(q, sector):
    if q.tail < 0:
        return False
    return (sector - q.tail) % q.sector_count < q.sector_in_use
