"""The transaction queue: sealed records in a raw flash ring that survives any power cut.

Layout. The partition is a ring of erase blocks ("sectors": 4096 bytes on the ESP32; the block
device's own size, so tests can use small ones), used in ring order. Each sector in use
starts with a 20-byte header, then frames back to back; erased bytes (0xFF) end a sector.

    header  <HBBIIII>  magic 0x544F ("OT"), format version, flags (0), sector sequence number,
                       ack watermark and highest record counter when the sector was opened,
                       CRC-32 of the 16 bytes before it
    record  [length 1..127][body][CRC-32 LE]   body = 4-byte big-endian DUKPT counter + sealed
    ack     [0x84][watermark BE 4][CRC-32 LE]  every record with counter <= watermark is acked

The CRC covers the length byte and the body and is programmed last, in its own operation.
Nothing is overwritten in place: bits are only cleared, except by whole-sector erases.

Recovery trusts no stored pointer: it reads every header, takes the sector with the highest
sequence number as the head and walks back while the sequence numbers run on; those sectors
are the log. In each, the first erased byte or bad CRC ends that sector's frames. Sectors
outside the log (erased, torn, killed, from an older cycle) are erased before they are used.

Acked sectors are reclaimed whole, oldest first: the header is zeroed ("killed", so a torn
erase cannot bring it back) and the sector erased. New sales may not take the last free
sector; it stays spare so that an ack can always be written.
"""

import struct
from array import array

from pos.compat import const, crc32, why

SECTOR_SIZE = const(4096)  # the ESP32 flash erase block
MIN_SECTOR_SIZE = const(256)
HEADER_SIZE = const(20)
FORMAT_VERSION = const(1)
MAX_BODY = const(127)
FRAME_OVERHEAD = const(5)  # length byte + CRC-32
SPARE_SECTORS = const(1)

_MAGIC = const(0x544F)
_HEADER_FORMAT = "<HBBIIII"
_ACK_LENGTH = const(0x84)  # the ack frame's length byte: high bit set, 4-byte body
_ACK_FRAME_SIZE = const(9)
_ERASED = const(0xFF)
_WINDOW = const(136)  # the largest frame (127 + 5), rounded up


# The messages, "|" between them, in one bytes constant: each str literal longer than about
# 10 characters would be a heap object of its own (about 35 bytes on the 64-bit port).
_WHY = (
    b"txq partition has unusable %d-byte blocks|"  # 0
    b"txq partition too small|"  # 1
    b"record size %d out of range|"  # 2
    b"record counter %d is not above %d|"  # 3
    b"flash write failed at sector %d: record not stored|"  # 4
    b"queue full: %d records wait for the back end|"  # 5
    b"flash write failed at sector %d header|"  # 6
    b"ack %d is above the last record %d|"  # 7
    b"queue holds records of a newer format: update the firmware"  # 8
)


class QueueError(Exception):
    """The queue refused an operation; the message is fit for the cashier or the operator."""


class QueueFull(QueueError):
    """No room for another record until the back end acknowledges what is queued."""


class TxQueue:
    """The queue over a block device with readblocks/writeblocks(n, buf, off)/ioctl 4, 5, 6."""

    def __init__(self, bdev):
        self._bdev = bdev
        self.sector_count = bdev.ioctl(4, 0)
        self.sector_size = size = bdev.ioctl(5, 0)
        if size < MIN_SECTOR_SIZE or size % 16:
            raise QueueError(why(_WHY, 0) % size)
        if self.sector_count < 2 + SPARE_SECTORS:
            raise QueueError(why(_WHY, 1))
        n = self.sector_count
        # Per-sector facts of the sectors in the log, indexed by physical sector: arrays,
        # 4 bytes a sector where a list would take a pointer and an int object each.
        self._seq = _zeros("I", n)
        self._first_counter = _zeros("I", n)
        self._last_counter = _zeros("I", n)
        self._records = _zeros("H", n)
        # Frames are read one at a time into this window, not a sector at a time: a 4 KiB
        # buffer would be the largest block in the app's heap, and the hardest to find.
        self._window = bytearray(_WINDOW)
        self._frame = bytearray(MAX_BODY + FRAME_OVERHEAD)
        self._check = bytearray(MAX_BODY + FRAME_OVERHEAD)
        self._header = bytearray(HEADER_SIZE)
        from pos.logscan import recover_queue  # the journal unloads it after the replay

        recover_queue(self)

    # --- recovery: pos.logscan.recover_queue (at start only: off the heap after it) ------

    def _frame_at(self, sector, offset):
        """Read the frame at offset into the window: its size if valid, 0 for erased
        space, -1 for a bad frame."""
        window = self._window
        length = self.sector_size - offset
        if length > _WINDOW:
            length = _WINDOW
        view = memoryview(window)[:length]
        self._bdev.readblocks(sector, view, offset)
        length_byte = window[0]
        if length_byte == _ERASED:
            return 0
        if length_byte == _ACK_LENGTH:
            body = 4
        elif 4 <= length_byte <= MAX_BODY:
            body = length_byte
        else:
            return -1
        end = 1 + body
        if end + 4 > length:
            return -1
        stored = window[end] | window[end + 1] << 8 | window[end + 2] << 16 | window[end + 3] << 24
        if stored != crc32(memoryview(window)[:end]):
            return -1
        return body + FRAME_OVERHEAD

    def _erased_from(self, sector, offset):
        """Whether every byte from offset to the end of the sector is erased."""
        window = self._window
        while offset < self.sector_size:
            length = self.sector_size - offset
            if length > _WINDOW:
                length = _WINDOW
            view = memoryview(window)[:length]
            self._bdev.readblocks(sector, view, offset)
            for i in range(length):
                if window[i] != _ERASED:
                    return False
            offset += length
        return True

    # --- appending -----------------------------------------------------------------------

    def append(self, body):
        """Store one sealed record durably; when this returns, a power cut cannot lose it.

        body starts with the record's 4-byte big-endian DUKPT counter, which must be higher
        than every counter already queued.
        """
        if self.refused:
            raise QueueError(self.refused)
        length = len(body)
        if length < 4 or length > MAX_BODY:
            raise QueueError(why(_WHY, 2) % length)
        counter = _counter_at(body, 0)
        if counter <= self.last_counter:
            raise QueueError(why(_WHY, 3) % (counter, self.last_counter))
        size = length + FRAME_OVERHEAD
        if not self._room_in_head(size):
            self._open_sector(for_sale=True)
        frame = self._frame
        frame[0] = length
        frame[1 : 1 + length] = body
        _put_crc(frame, 1 + length)
        self._program_frame(frame, size)
        sector = self.head
        if not self._records[sector]:
            self._first_counter[sector] = counter
        self._last_counter[sector] = counter
        self._records[sector] += 1
        self.last_counter = counter

    def has_room(self, body_size=MAX_BODY):
        """Whether a sale of body_size bytes would be taken now (checked before the customer
        pays, so a full queue turns the sale away instead of failing after approval)."""
        if self.refused:
            return False
        size = body_size + FRAME_OVERHEAD
        if self._room_in_head(size):
            return True
        free = self.free_sectors()
        sector = self.tail
        # Sectors that reclaim() would free: the acked ones at the old end of the log.
        while sector >= 0 and sector != self.head and free <= SPARE_SECTORS:
            if self._records[sector] and self._last_counter[sector] > self.ack_watermark:
                break
            free += 1
            sector = (sector + 1) % self.sector_count
        return free > SPARE_SECTORS

    def _room_in_head(self, size):
        return (
            self.head >= 0 and not self.head_closed and self.head_offset + size <= self.sector_size
        )

    def _program_frame(self, frame, size):
        """Program the frame without its CRC, then the CRC, then read it all back."""
        sector, offset = self.head, self.head_offset
        view = memoryview(frame)
        # Whatever happens next, these bytes are no longer erased.
        self.head_offset = offset + size
        self._bdev.writeblocks(sector, view[: size - 4], offset)
        self._bdev.writeblocks(sector, view[size - 4 : size], offset + size - 4)
        check = memoryview(self._check)[:size]
        self._bdev.readblocks(sector, check, offset)
        if check != view[:size]:
            self.head_closed = True
            raise QueueError(why(_WHY, 4) % sector)

    def free_sectors(self):
        return self.sector_count - self.sector_in_use

    def _open_sector(self, for_sale):
        """Start the sector after the head, reclaiming acked sectors first if need be."""
        self.reclaim()
        reserve = SPARE_SECTORS if for_sale else 0
        if self.free_sectors() <= reserve:
            raise QueueFull(why(_WHY, 5) % self.unsent_count())
        n = self.sector_count
        sector = 0 if self.head < 0 else (self.head + 1) % n
        seq = 1 if self.head < 0 else (self._seq[self.head] + 1) & 0xFFFFFFFF
        if not self._is_erased(sector):
            self._bdev.ioctl(6, sector)
        header = self._header
        struct.pack_into(
            _HEADER_FORMAT[:-1],
            header,
            0,
            _MAGIC,
            FORMAT_VERSION,
            0,
            seq,
            self.ack_watermark,
            self.last_counter,
        )
        struct.pack_into("<I", header, 16, crc32(memoryview(header)[:16]))
        self._bdev.writeblocks(sector, header, 0)
        if self.head < 0:
            self.tail = sector
        self.head = sector
        self.head_offset = HEADER_SIZE
        self.head_closed = False
        self.sector_in_use += 1
        self._seq[sector] = seq
        self._first_counter[sector] = self._last_counter[sector] = self._records[sector] = 0
        check = self._check
        self._bdev.readblocks(sector, memoryview(check)[:HEADER_SIZE], 0)
        if memoryview(check)[:HEADER_SIZE] != header:
            self.head_closed = True
            raise QueueError(why(_WHY, 6) % sector)

    def _is_erased(self, sector):
        return self._erased_from(sector, 0)

    # --- acknowledging and reclaiming ----------------------------------------------------

    def ack(self, watermark):
        """The back end holds every record with counter <= watermark. Returns True if stored.

        The watermark is written to flash (an ack frame, or the next sector's header), so
        after a power cut at most the batch in flight is offered again.
        """
        if watermark > self.last_counter:
            raise QueueError(why(_WHY, 7) % (watermark, self.last_counter))
        if watermark <= self.ack_watermark:
            return True
        self.ack_watermark = watermark
        if self.refused:
            return False
        if self._room_in_head(_ACK_FRAME_SIZE):
            frame = self._frame
            frame[0] = _ACK_LENGTH
            struct.pack_into(">I", frame, 1, watermark)
            _put_crc(frame, 5)
            self._program_frame(frame, _ACK_FRAME_SIZE)
        else:
            try:
                self._open_sector(for_sale=False)  # its header carries the watermark
            except QueueFull:
                return False
        self.reclaim()
        return True

    def reclaim(self):
        """Erase the oldest sectors whose records are all acked (never the head)."""
        n = self.sector_count
        while self.tail >= 0 and self.tail != self.head:
            sector = self.tail
            if self._records[sector] and self._last_counter[sector] > self.ack_watermark:
                return
            # Kill the header first, so that a torn erase leaves no valid-looking sector.
            self._bdev.writeblocks(sector, bytes(2), 0)
            self.tail = (sector + 1) % n
            self.sector_in_use -= 1
            self._records[sector] = 0
            self._bdev.ioctl(6, sector)

    # --- reading -------------------------------------------------------------------------

    def unsent_count(self):
        count = 0
        for sector in self._log_sectors():
            if not self._records[sector] or self._last_counter[sector] <= self.ack_watermark:
                continue
            if self._first_counter[sector] > self.ack_watermark:
                count += self._records[sector]
            else:
                for _ in self._frames(sector, self.ack_watermark):
                    count += 1
        return count

    def unsent(self, max_records=0x7FFFFFFF):
        """Yield (counter, frame) for records not yet acked, oldest first.

        frame is the record exactly as stored (length byte, body, CRC), as a memoryview into
        a buffer that the next step reuses: copy it if it must outlive the step.
        """
        count = 0
        for sector in self._log_sectors():
            if not self._records[sector] or self._last_counter[sector] <= self.ack_watermark:
                continue
            for counter, frame in self._frames(sector, self.ack_watermark):
                yield counter, frame
                count += 1
                if count >= max_records:
                    return

    def records(self):
        """Yield (counter, acked, frame) for every record in the log, oldest first."""
        for sector in self._log_sectors():
            for counter, frame in self._frames(sector, -1):
                yield counter, counter <= self.ack_watermark, frame

    def _log_sectors(self):
        if self.tail < 0:
            return
        sector = self.tail
        for _ in range(self.sector_in_use):
            yield sector
            sector = (sector + 1) % self.sector_count

    def _frames(self, sector, above):
        window = self._window
        offset = HEADER_SIZE
        end = self.head_offset if sector == self.head else self.sector_size
        while offset < end:
            size = self._frame_at(sector, offset)
            if size <= 0:
                return
            if window[0] != _ACK_LENGTH:
                counter = _counter_at(window, 1)
                if counter > above:
                    yield counter, memoryview(window)[:size]
            offset += size


def _zeros(typecode, count):
    # One allocation: both runtimes read a bytes initializer as raw item values.
    return array(typecode, bytes((4 if typecode == "I" else 2) * count))


def _counter_at(buf, offset):
    return buf[offset] << 24 | buf[offset + 1] << 16 | buf[offset + 2] << 8 | buf[offset + 3]


def _put_crc(frame, end):
    struct.pack_into("<I", frame, end, crc32(memoryview(frame)[:end]))
