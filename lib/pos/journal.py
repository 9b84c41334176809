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

from pos.compat import unload, why
from pos.dukpt import USAGE_DATA_ENCRYPT, USAGE_MAC_GENERATION, DukptTerminal
from pos.record import RECORD_SIZE
from pos.seal import Sealer, StateSealer
from pos.txq import _WHY as _QUEUE_WHY  # its message of a full queue is this module's too
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

        logscan.open_journal(self, log_bdev, storage_key, app_room)

    @classmethod
    def provision(cls, log_bdev, storage_key, initial_key, ik_id):
        """Load a terminal's initial key into a fresh state log (done once, by the
        provisioning tool); the ledger starts empty."""
        dukpt = DukptTerminal.load_initial_key(initial_key, ik_id)
        blob = StateSealer(storage_key).seal(b"")
        from pos import logscan

        logscan.format_log(log_bdev, storage_key, dukpt, blob)

    def end_replay(self):
        """The terminal has started: the code and cipher that read the log at start go."""
        self.log._window = self.log._seq = None
        self.app_state = self._state_buf = None
        unload("logscan")

    @property
    def next_counter(self):
        return self._dukpt.counter

    @property
    def ik_id(self):
        return self._dukpt.ik_id

    def checkpoint(self, app_state):
        """Store app_state (bytes, or an object with packed_size() and pack_into(buf,
        offset)) as the state after every record queued so far."""
        app_state = _as_state(app_state)
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
            raise QueueFull(why(_QUEUE_WHY, 5) % unsent)
        record.pack_into(self._plain)
        app_state = _as_state(app_state)
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


def _as_state(app_state):
    """app_state, or plain bytes (or None: empty) as one (provisioning, tests that book
    without a ledger: the ledger passes itself, so the terminal never loads pos.logscan
    again for this)."""
    if app_state is None or isinstance(app_state, (bytes, bytearray, memoryview)):
        from pos.logscan import StateBytes

        return StateBytes(app_state or b"")
    return app_state


def _lowest_bit(counter):
    bit = 0
    while not counter & 1:
        counter >>= 1
        bit += 1
    return bit
