"""The state log: DUKPT registers and booked records in a raw flash ring that shreds used keys.

It replaces a sealed state file rewritten on every sale (2 KiB programmed and one 4 KiB erase
a sale on LittleFS, whose copy-on-write leaves old copies of used registers in free blocks).
Here a sale appends about 70 bytes and programs the used register's bytes to zero in place,
which NOR flash does without an erase: no used or discarded key survives anywhere on flash,
even for someone who also reads the device key beside it.

Layout. The partition is a ring of erase blocks ("sectors": 4096 bytes on the ESP32; the block
device's own size in tests), used in ring order as pos.txq uses its own. Each sector in use
starts with a 20-byte header, then frames back to back; an erased byte (0xFF) ends a sector.

    header  <HBBI8sI>  magic 0x4C53 ("SL"), format version, flags (0), sector sequence number,
                       the terminal's IK ID, CRC-32 of the 16 bytes before it
    K  register  [0x4B][counter BE 4][register 16][CRC-32 LE]                      25 bytes
                 the DUKPT intermediate key of that counter (register index = its lowest
                 one-bit), encrypted under the log key (CTR, see keystream())
    S  sale      [0x53][counter BE 4][ack watermark BE 4][record 32][CRC-32 LE]    45 bytes
                 a booked record, encrypted under the log key (CTR, see keystream()),
                 with the queue's ack watermark when it was booked
    C  checkpoint chunk  [0x43][as-of counter BE 4][index][count][length][data][CRC-32 LE]
                 chunk index of count of a blob sealed by pos.seal.StateSealer: the ledger's
                 state after every record up to the as-of counter

The log key is the AES encryption of a constant block under the device key. The CRC covers the
frame, and is programmed last, in its own operation: a frame whose CRC does not match is
dead (torn while written, shredded, or killed); the walk goes on past it by its length
(a tag whose length cannot be known ends the sector, as a torn write there does).

Shredding. A register that is used or dropped has its 16 bytes programmed to zero at once,
which kills its frame. A sale goes: (1) K frames for the registers the DUKPT step derived,
(2) the S frame, (3) the used register shredded, and only then (4) the record, sealed with
the transaction key, appended to the queue. So a power cut at any point either leaves the
counter unused (its register still live) or skips it; it is never used twice.

Recovery trusts no pointer: sectors as in pos.txq (the highest sequence number is the head,
the log runs back while the numbers run on). The live registers are the K frames whose CRC
holds. The next counter is the lowest live one (DUKPT's registers are the subtrees not yet
used, and the lowest is the next); every live register that counter does not expect is left
over from a step a cut interrupted, and is shredded, as are the bytes of any dead K frame
that are not zero yet (a torn write may have left part of a register). The last complete
checkpoint gives the ledger's state; the S frames after it with a counter above its as-of
counter are replayed if the queue holds their counter, and killed (record zeroed) if not:
the cut came before the append, the counter was skipped and the sale never confirmed.

Wear. A sector is reclaimed when it is the oldest, fewer than two sectors are free and the
last checkpoint starts after it: its live registers are copied to the head and shredded,
its header is zeroed (so a torn erase cannot bring it back), then it is erased. The ledger
writes a checkpoint every so many records, at a Z, and whenever the log since the last
checkpoint would leave too little room for the next one (checkpoint_due()).
"""

import struct
from array import array

from pos.compat import AES_ECB, aes, const, crc32, why
from pos.txq import QueueError
from pos.txq import _counter_at as u32  # a 4-byte big-endian counter in a buffer

_FORMAT_VERSION = const(1)
_HEADER_SIZE = const(20)
_REGISTER_FRAME = const(25)
_SALE_FRAME = const(45)
_CHUNK_OVERHEAD = const(12)
_MAX_CHUNK = const(100)
_SPARE_SECTORS = const(2)  # free sectors kept so that a checkpoint and a move always fit

_MAGIC = const(0x4C53)
HEADER_FORMAT = "<HBBI8sI"
_TAG_REGISTER = const(0x4B)
_TAG_SALE = const(0x53)
_TAG_CHUNK = const(0x43)
_ERASED = const(0xFF)
_NUM_REG = const(32)
_REG_SIZE = const(16)
_RECORD = const(32)
_WINDOW = const(112)  # the largest frame (a full chunk)
ZEROS = bytes(_RECORD)
# The messages, "|" between them, in one bytes constant (pos.compat.why): each str literal
# longer than about 10 characters would be a heap object of its own for the module's life.
_WHY = (
    b"flash write failed at state log sector %d|"  # 0
    b"checkpoint of %d bytes too large|"  # 1
    b"state log full"  # 2
)


# The state log's refusals are the queue's (a class of its own would cost heap): a sale it
# refuses is turned away like one the queue refuses, with a message fit for the screen.
LogError = QueueError


class StateLog:
    """The log over a block device with readblocks/writeblocks(n, buf, off)/ioctl 4, 5, 6."""

    def __init__(self, bdev, storage_key, frame=None, header=None):
        """frame (at least 112 bytes) and header (20 bytes), when given, are scratch buffers
        the log borrows from the queue: neither is in use while the other writes."""
        from pos import logscan  # start only: the ledger unloads it (Journal.end_replay)

        self._bdev = bdev
        logscan.check(self, storage_key)  # the partition's geometry, or LogError
        # One AES context (some 300 bytes of heap) serves sealing and opening (CTR). Made at
        # start, while the heap is whole, and kept: made for each sale instead, it freed 320
        # bytes at rest but left a restarted terminal's heap too broken up for a new
        # merchant's totals at its first sale (test_attack's copied terminal).
        self._encrypt = aes(aes(storage_key, AES_ECB).encrypt(b"\x03" * 16), AES_ECB)
        self.head_seq = 0
        # Each live register's counter by register index (0: none), then where its K frame
        # is (sector << 16 | offset).
        self._reg = array("I", bytes(8 * _NUM_REG))
        self._window = None  # frames are read into it at start only (pos.logscan)
        self._frame = bytearray(_WINDOW) if frame is None else frame
        self._header = bytearray(_HEADER_SIZE) if header is None else header
        self._block = bytearray(16)
        self._reclaiming = False
        self.ik_id = None
        logscan.recover(self)

    # --- recovery ------------------------------------------------------------------------

    # --- writing -------------------------------------------------------------------------

    def commit(self, dukpt, top, counter=0, watermark=0, plain=None):
        """Make the flash hold the registers of dukpt (a pos.dukpt.DukptTerminal after a
        step) for register indexes below top, and (counter, watermark, plain) as a sale when
        given: new registers first, then the sale, then the replaced registers shredded.

        It reads the terminal's registers where they are (its _tc, _in_use and _keys), so
        that the sale path copies no 500-byte packed state."""
        tc = u32(dukpt._tc, 0)
        keys = memoryview(dukpt._keys)
        # The frames to shred once the new ones are written: a sale replaces one register;
        # only a skip or the last counter replace more, and get a list of their own.
        shreds = first = first_location = 0
        pending = None
        for j in range(top):
            in_use = dukpt._in_use[j]
            wanted = expected_counter(tc, j) if in_use else 0
            have = self._reg[j]
            if have != wanted:
                if have:
                    if shreds == 1:
                        pending = array("I", bytes(8 * _NUM_REG))
                        pending[0], pending[_NUM_REG] = first, first_location
                    if shreds:
                        pending[shreds] = have
                        pending[_NUM_REG + shreds] = self._reg[_NUM_REG + j]
                    else:
                        first, first_location = have, self._reg[_NUM_REG + j]
                    shreds += 1
                    self._reg[j] = 0
                if in_use:
                    self._write_register(j, wanted, keys[j * _REG_SIZE : (j + 1) * _REG_SIZE])
        if plain is not None:
            self._write_sale(counter, watermark, plain)
        if shreds == 1:
            self._shred(first_location >> 16, first_location & 0xFFFF)
            return
        # Lowest counter first: a cut part-way leaves the lowest registers gone, which is a
        # valid DUKPT state (their subtrees skipped), never a gap in the middle.
        while shreds:
            lowest = 0
            for i in range(1, shreds):
                if pending[i] < pending[lowest]:
                    lowest = i
            location = pending[_NUM_REG + lowest]
            self._shred(location >> 16, location & 0xFFFF)
            shreds -= 1
            pending[lowest] = pending[shreds]
            pending[_NUM_REG + lowest] = pending[_NUM_REG + shreds]

    def keystream(self, counter, seq, offset, tag, index):
        """Make self._block the key stream of 16-byte block index of the frame (tag, counter)
        at offset in the sector of sequence number seq: AES under the log key of counter |
        seq | offset | tag | index | zeros (CTR mode: unique to where the frame lies, and
        opening needs only the one encrypting AES context the sale path keeps)."""
        nonce = self._header  # scratch: the header is only built when a sector opens
        struct.pack_into(">IIHBB", nonce, 0, counter, seq, offset, tag, index)
        for i in range(12, 16):
            nonce[i] = 0
        self._encrypt.encrypt(memoryview(nonce)[:16], self._block)

    def _write_register(self, j, counter, clear):
        frame = self._frame
        self._make_room(_REGISTER_FRAME)
        frame[0] = _TAG_REGISTER
        struct.pack_into(">I", frame, 1, counter)
        self.keystream(counter, self.head_seq, self.head_offset, _TAG_REGISTER, 0)
        block = self._block
        for i in range(_REG_SIZE):
            frame[5 + i] = clear[i] ^ block[i]
        sector, offset = self._append(frame, _REGISTER_FRAME)
        self._reg[j] = counter
        self._reg[_NUM_REG + j] = sector << 16 | offset

    def _write_sale(self, counter, watermark, plain):
        frame = self._frame
        self._make_room(_SALE_FRAME)
        frame[0] = _TAG_SALE
        struct.pack_into(">II", frame, 1, counter, watermark)
        block = self._block
        for index in (0, 1):
            self.keystream(counter, self.head_seq, self.head_offset, _TAG_SALE, index)
            start = 9 + 16 * index
            for i in range(16):
                frame[start + i] = plain[16 * index + i] ^ block[i]
        self._append(frame, _SALE_FRAME)
        self.records_since_checkpoint += 1

    def checkpoint(self, blob, as_of):
        """Store blob (the sealed ledger state after every record up to as_of) in chunks."""
        size = len(blob)
        chunk = self.sector_size - _HEADER_SIZE - _CHUNK_OVERHEAD
        if chunk > _MAX_CHUNK:
            chunk = _MAX_CHUNK
        count = (size + chunk - 1) // chunk or 1
        if count > 255:
            raise LogError(why(_WHY, 1) % size)
        frame = self._frame
        start_sector = start_offset = -1
        for index in range(count):
            length = size - index * chunk
            if length > chunk:
                length = chunk
            self._make_room(_CHUNK_OVERHEAD + length)
            if index == 0:
                start_sector, start_offset = self.head, self.head_offset
            frame[0] = _TAG_CHUNK
            struct.pack_into(">IBBB", frame, 1, as_of, index, count, length)
            frame[8 : 8 + length] = blob[index * chunk : index * chunk + length]
            self._append(frame, _CHUNK_OVERHEAD + length)
        self.checkpoint_as_of = as_of
        self.checkpoint_count = count
        self.checkpoint_size = size
        self._checkpoint_sector = start_sector
        self._checkpoint_offset = start_offset
        self.records_since_checkpoint = 0

    def checkpoint_due(self, blob_size, every):
        """Whether the ledger should write a checkpoint now: every records since the last,
        or the log since the last leaving too little room for another and a sale."""
        if not self.checkpoint_count or self.records_since_checkpoint >= every:
            return True
        chunk = self.sector_size - _HEADER_SIZE - _CHUNK_OVERHEAD
        if chunk > _MAX_CHUNK:
            chunk = _MAX_CHUNK
        count = (blob_size + chunk - 1) // chunk
        per_sector = (self.sector_size - _HEADER_SIZE) // (_CHUNK_OVERHEAD + chunk)
        needed = (count + per_sector - 1) // per_sector
        kept = (self.head - self._checkpoint_sector) % self.sector_count + 1
        # Room for two checkpoints (one may be torn by a power cut and not count), a sale
        # after them and the registers moved meanwhile.
        return self.sector_count - kept < 2 * needed + 2

    def _append(self, frame, size):
        """Program a frame at the head: all but its CRC, then the CRC, then read it back."""
        self._make_room(size)
        sector, offset = self.head, self.head_offset
        view = memoryview(frame)
        end = size - 4
        struct.pack_into("<I", frame, end, crc32(view[:end]) & 0xFFFFFFFF)
        self.head_offset = offset + size
        self._bdev.writeblocks(sector, view[:end], offset)
        self._bdev.writeblocks(sector, view[end:size], offset + end)
        if not self._reads_back(sector, offset, view, size):
            self.head_closed = True
            raise LogError(why(_WHY, 0) % sector)
        return sector, offset

    def _reads_back(self, sector, offset, expected, size):
        """Whether the flash holds expected[:size] at offset (None: erased bytes), read 16
        bytes at a time: the sale path keeps no frame-sized read buffer."""
        block = self._block
        done = 0
        while done < size:
            length = size - done
            if length > 16:
                length = 16
            self._bdev.readblocks(sector, memoryview(block)[:length], offset + done)
            for i in range(length):
                if block[i] != (_ERASED if expected is None else expected[done + i]):
                    return False
            done += length
        return True

    def _shred(self, sector, offset):
        self._bdev.writeblocks(sector, memoryview(ZEROS)[:_REG_SIZE], offset + 5)

    def _erased_from(self, sector, offset):
        return self._reads_back(sector, offset, None, self.sector_size - offset)

    def _make_room(self, size):
        if self.head < 0 or self.head_closed or self.head_offset + size > self.sector_size:
            self._open_sector()

    def _open_sector(self):
        if self.sector_in_use >= self.sector_count:
            raise LogError(why(_WHY, 2))
        n = self.sector_count
        sector = 0 if self.head < 0 else (self.head + 1) % n
        seq = 1 if self.head < 0 else (self.head_seq + 1) & 0xFFFFFFFF
        if not self._erased_from(sector, 0):
            self._bdev.ioctl(6, sector)
        header = self._header
        struct.pack_into(
            HEADER_FORMAT[:-1], header, 0, _MAGIC, _FORMAT_VERSION, 0, seq, self.ik_id
        )
        struct.pack_into("<I", header, 16, crc32(memoryview(header)[:16]) & 0xFFFFFFFF)
        self._bdev.writeblocks(sector, header, 0)
        if self.head < 0:
            self.tail = sector
        self.head = sector
        self.head_offset = _HEADER_SIZE
        self.head_closed = False
        self.sector_in_use += 1
        self.head_seq = seq
        if not self._reads_back(sector, 0, header, _HEADER_SIZE):
            self.head_closed = True
            raise LogError(why(_WHY, 0) % sector)
        if self._reclaiming:
            return
        # Free the oldest sectors while fewer than _SPARE_SECTORS are free and the last
        # checkpoint starts after them; their live registers move to the head first (which
        # may open a sector: the flag keeps that from reclaiming within the reclaim).
        self._reclaiming = True
        while (
            self.sector_count - self.sector_in_use < _SPARE_SECTORS
            and self.tail != self.head
            and (not self.checkpoint_count or self.tail != self._checkpoint_sector)
        ):
            sector = self.tail
            self._bdev.readblocks(sector, self._header, 0)
            seq = struct.unpack_from("<I", self._header, 4)[0]
            # The moved register's clear bytes, for a moment: in the scratch frame, past
            # the register frame it is written into.
            clear = memoryview(self._frame)[_WINDOW - _REG_SIZE : _WINDOW]
            for j in range(_NUM_REG):
                location = self._reg[_NUM_REG + j]
                if self._reg[j] and location >> 16 == sector:
                    offset = location & 0xFFFF
                    self._bdev.readblocks(sector, clear, offset + 5)
                    self.keystream(self._reg[j], seq, offset, _TAG_REGISTER, 0)
                    for i in range(_REG_SIZE):
                        clear[i] ^= self._block[i]
                    self._write_register(j, self._reg[j], clear)
                    self._shred(sector, offset)
            for i in range(_REG_SIZE):
                clear[i] = 0
            self._bdev.writeblocks(sector, memoryview(ZEROS)[:2], 0)
            self.tail = (sector + 1) % self.sector_count
            self.sector_in_use -= 1
            self._bdev.ioctl(6, sector)
        self._reclaiming = False


def expected_counter(counter, j):
    """The counter whose key register j holds when the next counter is counter: counter's
    bits above j, then bit j (for the lowest one-bit of counter, counter itself)."""
    return (counter >> j << j) | (1 << j)
