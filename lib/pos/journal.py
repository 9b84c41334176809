"""The journal: seals each record under its own DUKPT transaction key and queues it in flash.

The DUKPT registers and every booked record also go to the state log (pos.statelog), a raw
partition of its own, which shreds each register as it is used. A write goes:
  1. take the next transaction key and advance the DUKPT registers in RAM;
  2. in the state log: the registers the step derived, the record (sealed with the device
     key), then the used register zeroed in place: all before the key is used at all;
  3. seal the record with the transaction key and append it to the queue.
The ledger's state (totals, receipt numbers, risk counters, recent records: opaque bytes
here) is a checkpoint in the log, written every CHECKPOINT_EVERY records, at a Z and when the
log needs the room. At start it is the last checkpoint plus the records the log holds after
it: a record counts once if the queue holds its counter (its append finished), and a record
whose append never finished is killed in the log, so it never counts and only skips a counter.
If the queue is ahead of the registers (the log was restored or replaced), the registers are
first moved past the highest counter the queue has ever held.

The terminal cannot open its own queued records (their keys are gone: that is the point), so
what the ledger rebuilds from comes from the log's copy of each record, not from the queue.
"""

import gc

from pos.compat import unload
from pos.dukpt import (
    USAGE_DATA_ENCRYPT,
    USAGE_MAC_GENERATION,
    DukptError,
    DukptTerminal,
)
from pos.record import RECORD_SIZE
from pos.seal import Sealer, SealError, StateSealer
from pos.statelog import LogError, StateLog
from pos.txq import QueueFull

CHECKPOINT_EVERY = 150  # records between two checkpoints: at most this many replayed at start
_USAGES = (USAGE_DATA_ENCRYPT, USAGE_MAC_GENERATION)
_MAX_COUNTER = 0xFFFFFFFF


class JournalError(Exception):
    """The journal cannot seal: no key material, or it is corrupt. Fit for the status screen."""


class Journal:
    def __init__(self, queue, log_bdev, storage_key, app_room=64, every=CHECKPOINT_EVERY):
        self._state_buf = None
        self.queue = queue
        self.checkpoint_every = every
        # The checkpoint's sealer (two AES contexts and a CMAC: some 900 bytes) is made
        # when one is written, not kept.
        self._storage_key = storage_key
        self._sealer = Sealer()
        self._plain = bytearray(RECORD_SIZE)
        self._body = bytearray(self._sealer.body_size(RECORD_SIZE))
        from pos import logscan  # start only: the ledger unloads it (end_replay)

        self._dukpt = DukptTerminal(bytes(8))
        try:
            self.log = log = StateLog(log_bdev, storage_key)
            logscan.load_registers(log, self._dukpt)
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
                self._state_buf = bytearray(max(room, log.checkpoint_size))
            except MemoryError:
                self._state_buf = bytearray(log.checkpoint_size)
            length = logscan.read_checkpoint(log, self._state_buf)
            sealer = StateSealer(storage_key)
            start, size = sealer.open_in_place(self._state_buf, length)
            sealer = None
        except (LogError, DukptError, SealError) as exc:
            raise JournalError("journal state unreadable: " + str(exc))  # noqa: B904
        # The ledger's state at the checkpoint: a view into the buffer, valid until the
        # first checkpoint is written.
        self.app_state = memoryview(self._state_buf)[start : start + size]
        for counter, _, sector, offset in logscan.sales(log):
            if counter > queue.last_counter:
                logscan.kill_sale(log, sector, offset)
        self.skipped_to = 0
        self.last_counter_used = queue.last_counter
        if queue.last_counter >= self._dukpt.counter:
            self._dukpt.skip_past(queue.last_counter)
            self.skipped_to = self._dukpt.counter
            log.commit(self._dukpt, 32)

    @classmethod
    def provision(cls, log_bdev, storage_key, initial_key, ik_id):
        """Load a terminal's initial key into a fresh state log (done once, by the
        provisioning tool); the ledger starts empty."""
        dukpt = DukptTerminal.load_initial_key(initial_key, ik_id)
        blob = StateSealer(storage_key).seal(b"")
        from pos import logscan

        logscan.format_log(log_bdev, storage_key, dukpt, blob)

    def replay(self):
        """Yield (counter, ack watermark, packed record) for every record booked after the
        checkpoint, oldest first; the record is a buffer the next step reuses."""
        from pos import logscan

        last = self.queue.last_counter
        for counter, watermark, sector, offset in logscan.sales(self.log):
            if counter <= last:
                yield counter, watermark, logscan.record_at(self.log, sector, offset, self._plain)

    def end_replay(self):
        """The terminal has started: the code and cipher that read the log at start go."""
        self.log._window = self.log._seq = None
        self.app_state = self._state_buf = None
        unload("pos.logscan")

    @property
    def next_counter(self):
        return self._dukpt.counter

    @property
    def ik_id(self):
        return self._dukpt.ik_id

    def checkpoint(self, app_state):
        """Store app_state (bytes, or an object with packed_size() and pack_into(buf,
        offset)) as the state after every record queued so far."""
        if isinstance(app_state, (bytes, bytearray, memoryview)):
            app_state = _Bytes(app_state)
        size = app_state.packed_size()
        needed = StateSealer.blob_size(size)
        buf = self._state_buf
        if buf is None or len(buf) < needed:
            buf = self._state_buf = None
            gc.collect()  # before the one large allocation
            buf = bytearray(needed)
        app_state.pack_into(buf, StateSealer.DATA_OFFSET)
        sealer = StateSealer(self._storage_key)
        self.log.checkpoint(sealer.seal_into(buf, size), self.queue.last_counter)

    def append(self, record, app_state=None):
        """Seal record and queue it durably; returns its DUKPT counter.

        app_state (bytes, or an object with packed_size() and pack_into(buf, offset)) is
        the ledger's state as it stands before this record: stored first as a checkpoint
        when one is due. Raises QueueFull (nothing used up) when the queue has no room,
        RecordError for a bad field, and whatever the flash raises; on any of them the
        record is not stored.
        """
        if not self.queue.has_room(len(self._body)):
            unsent = self.queue.unsent_count()
            raise QueueFull("queue full: %d records wait for the back end" % unsent)
        record.pack_into(self._plain)
        if app_state is None:
            app_state = _Bytes(b"")
        elif isinstance(app_state, (bytes, bytearray, memoryview)):
            app_state = _Bytes(app_state)
        if self.log.checkpoint_due(
            StateSealer.blob_size(app_state.packed_size()), self.checkpoint_every
        ):
            try:
                self.checkpoint(app_state)
            except MemoryError:
                pass  # tried again at the next record; the log keeps room for two
        counter, _, keys = self._dukpt.next_keys(_USAGES)
        top = 32 if self._dukpt.counter > _MAX_COUNTER else _lowest_bit(counter) + 1
        self.log.commit(self._dukpt, top, counter, self.queue.ack_watermark, self._plain)
        self.last_counter_used = counter
        self._sealer.seal(self._plain, counter, keys[0], keys[1], self._body)
        self.queue.append(self._body)
        return counter


class _Bytes:
    """Plain bytes as an app state (provisioning, tests that book without a ledger)."""

    def __init__(self, data):
        self.data = data

    def packed_size(self):
        return len(self.data)

    def pack_into(self, buf, offset):
        buf[offset : offset + len(self.data)] = self.data
        return offset + len(self.data)


def _lowest_bit(counter):
    bit = 0
    while not counter & 1:
        counter >>= 1
        bit += 1
    return bit
