"""The journal: seals each record under its own DUKPT transaction key and queues it in flash.

One state file, sealed with the device storage key, holds the DUKPT registers, the ledger's
state (totals, receipt numbers: opaque bytes here) and the record being written (the intent).
A write goes:
  1. take the next transaction key and advance the DUKPT registers in RAM;
  2. store registers + ledger state as it was before this record + the record itself, in one
     atomic rename, before the key is used at all;
  3. seal the record and append it to the queue.
At start, the intent counts only if the queue holds its counter (the append finished), so
the ledger applies it exactly once; a cut before the append only skips a counter. If the
queue is ahead of the stored registers (the state file was lost or restored from an older
copy), the registers are first moved past the highest counter the queue has ever held.
"""

import struct

from pos.dukpt import (
    MAX_PACKED_SIZE,
    USAGE_DATA_ENCRYPT,
    USAGE_MAC_GENERATION,
    DukptError,
    DukptTerminal,
)
from pos.record import RECORD_SIZE
from pos.seal import Sealer, SealError, StateSealer
from pos.txq import QueueFull

STATE_FILE = "journal"
_STATE_VERSION = 1
_USAGES = (USAGE_DATA_ENCRYPT, USAGE_MAC_GENERATION)


class JournalError(Exception):
    """The journal cannot seal: no key material, or it is corrupt. Fit for the status screen."""


class Journal:
    def __init__(self, queue, store, storage_key, app_room=64):
        self.queue = queue
        self._store = store
        self._state_sealer = StateSealer(storage_key)
        self._sealer = Sealer()
        self._plain = bytearray(RECORD_SIZE)
        self._body = bytearray(self._sealer.body_size(RECORD_SIZE))
        # One state buffer for the life of the terminal, sized at start for the largest
        # state expected (all registers in use, an app state of app_room bytes) or the
        # stored one with some room: the file is read, checked and decrypted in it, and
        # every later state is packed and sealed in it, so neither start nor the sale path
        # makes copies that would fragment the heap.
        size = self._store.size(STATE_FILE)
        if size is None:
            raise JournalError("no DUKPT key loaded: provision this terminal")
        room = StateSealer.blob_size(1 + 2 + MAX_PACKED_SIZE + 4 + RECORD_SIZE + 2 + app_room)
        self._state_buf = bytearray(max(size + 64, room))
        self._dukpt, intent_counter, intent, self.app_state = self._load()
        # The record written last, if its append finished: the ledger has yet to count it.
        self.pending = None
        if intent_counter and queue.last_counter >= intent_counter:
            self.pending = (intent_counter, intent)
        self.skipped_to = 0
        self.last_counter_used = queue.last_counter
        if queue.last_counter >= self._dukpt.counter:
            self._dukpt.skip_past(queue.last_counter)
            self.skipped_to = self._dukpt.counter
            # The app state is a view into the buffer about to be rewritten: copy it first.
            self.app_state = bytes(self.app_state)
            self._write(intent_counter, intent, _Bytes(self.app_state))

    @classmethod
    def provision(cls, store, storage_key, initial_key, ik_id):
        """Load a terminal's initial key (done once, by the provisioning tool)."""
        dukpt = DukptTerminal.load_initial_key(initial_key, ik_id)
        sealer = StateSealer(storage_key)
        size = _packed_size(dukpt, _Bytes(b""))
        buf = bytearray(sealer.blob_size(size))
        _pack_into(buf, StateSealer.DATA_OFFSET, dukpt, 0, None, _Bytes(b""))
        store.write(STATE_FILE, bytes(sealer.seal_into(buf, size)))

    def _load(self):
        """Read and open the state file in the state buffer; app_state is returned as a
        view into it, valid until the first write."""
        buf = self._state_buf
        length = self._store.read_into(STATE_FILE, buf)
        if length is None:
            raise JournalError("no DUKPT key loaded: provision this terminal")
        try:
            start, size = self._state_sealer.open_in_place(buf, length)
            data = memoryview(buf)[start : start + size]
            if data[0] != _STATE_VERSION:
                raise JournalError("journal state of unknown version %d" % data[0])
            offset = 1
            size = struct.unpack_from(">H", data, offset)[0]
            dukpt = DukptTerminal.from_bytes(data[offset + 2 : offset + 2 + size])
            offset += 2 + size
            intent_counter = struct.unpack_from(">I", data, offset)[0]
            intent = bytes(data[offset + 4 : offset + 4 + RECORD_SIZE])
            offset += 4 + RECORD_SIZE
            size = struct.unpack_from(">H", data, offset)[0]
            app_state = data[offset + 2 : offset + 2 + size]
            if len(app_state) != size:
                raise JournalError("journal state is truncated")
        except (SealError, DukptError, IndexError, ValueError) as exc:
            raise JournalError("journal state unreadable: " + str(exc))  # noqa: B904
        return dukpt, intent_counter, intent, app_state

    def _write(self, intent_counter, intent, app_state):
        """Store registers, intent and app state in one sealed file, packed in place."""
        size = _packed_size(self._dukpt, app_state)
        needed = StateSealer.blob_size(size)
        if len(self._state_buf) < needed:
            self._state_buf = bytearray(needed + 256)  # a ledger that grew past the room
        _pack_into(
            self._state_buf,
            StateSealer.DATA_OFFSET,
            self._dukpt,
            intent_counter,
            intent,
            app_state,
        )
        self._store.write(STATE_FILE, self._state_sealer.seal_into(self._state_buf, size))

    @property
    def next_counter(self):
        return self._dukpt.counter

    @property
    def ik_id(self):
        return self._dukpt.ik_id

    def append(self, record, app_state=None):
        """Seal record and queue it durably; returns its DUKPT counter.

        app_state (bytes, or an object with packed_size() and pack_into(buf, offset)) is
        the ledger's state as it stands before this record. Raises QueueFull
        (nothing used up) when the queue has no room, RecordError for a bad field, and
        whatever the flash raises; on any of them the record is not stored.
        """
        if not self.queue.has_room(len(self._body)):
            unsent = self.queue.unsent_count()
            raise QueueFull("queue full: %d records wait for the back end" % unsent)
        record.pack_into(self._plain)
        counter, _, keys = self._dukpt.next_keys(_USAGES)
        if app_state is None or isinstance(app_state, (bytes, bytearray)):
            app_state = _Bytes(app_state or b"")
        self._write(counter, self._plain, app_state)
        self.pending = None
        self.last_counter_used = counter
        self._sealer.seal(self._plain, counter, keys[0], keys[1], self._body)
        self.queue.append(self._body)
        return counter


class _Bytes:
    """Plain bytes as an app state (provisioning, and re-storing the state read at start)."""

    def __init__(self, data):
        self.data = data

    def packed_size(self):
        return len(self.data)

    def pack_into(self, buf, offset):
        buf[offset : offset + len(self.data)] = self.data
        return offset + len(self.data)


def _packed_size(dukpt, app_state):
    return 1 + 2 + dukpt.packed_size() + 4 + RECORD_SIZE + 2 + app_state.packed_size()


def _pack_into(buf, offset, dukpt, intent_counter, intent, app_state):
    """version | registers length, registers | intent counter, intent | app length, app"""
    buf[offset] = _STATE_VERSION
    struct.pack_into(">H", buf, offset + 1, dukpt.packed_size())
    offset = dukpt.pack_into(buf, offset + 3)
    struct.pack_into(">I", buf, offset, intent_counter)
    offset += 4
    if intent:
        buf[offset : offset + RECORD_SIZE] = intent
    else:
        for i in range(offset, offset + RECORD_SIZE):
            buf[i] = 0
    offset += RECORD_SIZE
    struct.pack_into(">H", buf, offset, app_state.packed_size())
    return app_state.pack_into(buf, offset + 2)
