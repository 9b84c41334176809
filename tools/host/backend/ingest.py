"""Ingest: a batch's frames parsed, each record's keys derived (DUKPT), its tag checked, and
every record stored exactly once under (terminal, counter) or quarantined."""

import hmac
import struct
import threading
import time
import zlib

from cryptography.hazmat.primitives import cmac as _cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from pos.derive import derive_initial_key, derive_transaction_key, derive_working_key, ksn_bytes
from pos.dukpt import (
    ALG_AES128,
    USAGE_DATA_ENCRYPT,
    USAGE_INITIAL_KEY,
    USAGE_KEY_DERIVATION,
    USAGE_MAC_GENERATION,
    DukptError,
)
from pos.record import (
    Record,
    RecordError,
)
from pos.seal import TAG_SIZE, SealError
from tools.host.backend.errors import IngestError
from tools.host.backend.keyring import as_keyring

MAX_BATCH_BYTES = 64 * 1024
MAX_QUARANTINE_PER_TERMINAL = 1000  # forged frames kept; later ones are counted, not kept
# How far above the last counter the back end knows a record's counter may lie: a full
# queue (about 10,500 records) and the DUKPT counter's skips fit many times over.
MAX_COUNTER_JUMP = 1 << 20


class KeyDeriver:
    """A record's data and MAC keys from the BDK, the terminal's IK ID and the counter
    (pos.dukpt, X9.24-3-2017), without repeating what the terminal's last record computed.

    A transaction key is one AES step per one-bit of its counter, from the most significant
    down, each from the key before; consecutive counters share most of that path. So per
    terminal the initial key's and the last path's keys are kept as ready AES-ECB contexts
    (one key schedule each, reused for every block): a new counter derives only the steps
    below the part of its path it shares with the last, then its two working keys. Contexts
    are not shared between threads: one KeyDeriver per thread.
    """

    MAX_TERMINALS = 4096  # paths kept; beyond, the cache starts afresh (a bound, not a policy)

    def __init__(self, keyring):
        self._keyring = as_keyring(keyring)  # the BDK an IK ID names (keyring.py)
        self._bdk_ecbs = {}  # BDK -> its ECB context
        self._paths = {}  # IK ID -> [(partial counter, ECB context of its key), ...]

    def keys(self, ik_id, counter):
        """(data key, MAC key) of the record under `counter`; DukptError for a counter no
        terminal uses (as pos.dukpt says it)."""
        ones = bin(counter).count("1") if 0 < counter <= 0xFFFFFFFF else 0
        if not 0 < ones <= _MAX_ONES:
            return self._slow_keys(ik_id, counter)
        path = self._paths.get(ik_id)
        if path is None:
            if len(self._paths) >= self.MAX_TERMINALS:
                self._paths.clear()
            data = _INITIAL_HEAD + bytes(ik_id)
            bdk = self._keyring.bdk_for(ik_id)
            bdk_ecb = self._bdk_ecbs.get(bdk)
            if bdk_ecb is None:
                bdk_ecb = self._bdk_ecbs[bdk] = _ecb(bdk)
            path = self._paths[ik_id] = [(0, _ecb(bdk_ecb.update(data)))]
        device = bytes(ik_id[4:8])
        # The steps this counter shares with the last one derived: kept; the rest anew.
        partial = 0
        depth = 1
        bit = 1 << 31
        while bit:
            if counter & bit:
                partial |= bit
                if depth < len(path) and path[depth][0] == partial:
                    depth += 1
                    bit >>= 1
                    continue
                del path[depth:]
                data = _DERIVE_HEAD + device + _COUNTER.pack(partial)
                path.append((partial, _ecb(path[-1][1].update(data))))
                depth += 1
            bit >>= 1
        del path[depth:]
        txn = path[-1][1]
        tail = device + _COUNTER.pack(counter)
        return txn.update(_DATA_HEAD + tail), txn.update(_MAC_HEAD + tail)

    def _slow_keys(self, ik_id, counter):
        ksn = ksn_bytes(ik_id, counter)
        initial = derive_initial_key(self._keyring.bdk_for(ik_id), ik_id)
        key = derive_transaction_key(initial, ksn)
        return (
            derive_working_key(key, ksn, USAGE_DATA_ENCRYPT),
            derive_working_key(key, ksn, USAGE_MAC_GENERATION),
        )


def _ecb(key):
    return Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()


def _head(usage):
    # Derivation data up to the device half of the IK ID (pos.dukpt._fill): version 1, key
    # block 1, usage, AES-128, 128 bits.
    return struct.pack(">BBHHH", 1, 1, usage, ALG_AES128, 128)


_MAX_ONES = 16
_INITIAL_HEAD = _head(USAGE_INITIAL_KEY)
_DERIVE_HEAD = _head(USAGE_KEY_DERIVATION)
_DATA_HEAD = _head(USAGE_DATA_ENCRYPT)
_MAC_HEAD = _head(USAGE_MAC_GENERATION)
_COUNTER = struct.Struct(">I")
_ZERO_IV = bytes(16)


def open_sealed(body, data_key, mac_key):
    """pos.seal.Sealer.open with the cryptography package (its CMAC, its CBC): the tag
    checked in constant time, then the plaintext; SealError as pos.seal says it."""
    size = len(body) - 4 - TAG_SIZE
    if size <= 0 or size % 16:
        raise SealError("sealed body has the wrong size")
    mac = _cmac.CMAC(algorithms.AES(mac_key))
    mac.update(body[: 4 + size])
    if not hmac.compare_digest(mac.finalize()[:TAG_SIZE], body[4 + size :]):
        raise SealError("record tag does not match: wrong key or altered record")
    return (
        Cipher(algorithms.AES(data_key), modes.CBC(_ZERO_IV))
        .decryptor()
        .update(body[4 : 4 + size])
    )


class _Batch:
    """One batch's transaction: its terminal, whether the terminal is held (suspected of
    being cloned), what is stored already under the batch's counters and the highest
    counter stored, read in one statement rather than two a record (each statement is a
    round trip to a PostgreSQL server); the records to insert at the end."""

    _QUERY = (
        "SELECT 0, counter, frame FROM records WHERE tid = ? AND counter BETWEEN ? AND ? "
        "UNION ALL SELECT 1, counter, frame FROM quarantine "
        "WHERE tid = ? AND counter BETWEEN ? AND ? "
        "UNION ALL SELECT 2, MAX(counter), NULL FROM records WHERE tid = ?"
    )

    def __init__(self, db, tid, ik_ids, held, now, frames):
        self.db, self.tid, self.ik_ids, self.held, self.now = db, tid, ik_ids, held, now
        self.rows = []
        self.stored, self.kept = {}, set()
        self.top = 0
        if frames:
            span = (tid, frames[0][0], frames[-1][0])
            for source, counter, frame in db.execute(self._QUERY, span + span + (tid,)):
                if source == 0:
                    self.stored[counter] = bytes(frame)
                elif source == 1:
                    self.kept.add((counter, bytes(frame)))
                else:
                    self.top = counter or 0


class IngestMixin:
    """LedgerDB's ingest."""

    @property
    def _deriver(self):
        """This thread's KeyDeriver (its AES contexts are not shared between threads)."""
        local = self.__dict__.get("_derivers")
        if local is None:
            local = self.__dict__.setdefault("_derivers", threading.local())
        deriver = getattr(local, "deriver", None)
        if deriver is None:
            deriver = local.deriver = KeyDeriver(self._bdk)
        return deriver

    def ingest(self, tid, body, caller=None, status=None):
        """Store a batch; returns {ack, stored, duplicates, quarantined, refused}. With a
        caller (an authenticated request) its counter is taken and its heartbeat kept in
        the same transaction."""
        if self._bdk is None:
            raise IngestError("the back end has no BDK loaded")
        if len(body) > MAX_BATCH_BYTES:
            raise IngestError("batch larger than %d bytes" % MAX_BATCH_BYTES)
        now = int(time.time())
        # Exactly-once comes from the database, not from a lock here: the batch is one write
        # transaction that locks its terminal first (SQLite: BEGIN IMMEDIATE, the ledger's
        # write lock; PostgreSQL: the terminal's row, FOR UPDATE), so two workers, processes
        # or hosts racing with the same batch see each other's records whole or not at all;
        # records are keyed (tid, counter), and the ack moves in the same transaction.
        lock = self._store.for_update
        # The frames, parsed before the transaction (no lock held meanwhile): not a frame,
        # or a counter not above the one before it, ends the batch there.
        parsed, cut = [], False
        offset = previous = 0
        while offset < len(body):
            frame = _frame_at(body, offset)
            counter = struct.unpack_from(">I", frame, 1)[0] if frame else 0
            if frame is None or counter <= previous:
                cut = True
                break
            offset += len(frame)
            previous = counter
            parsed.append((counter, frame))

        def work(db):
            result = {"stored": 0, "duplicates": 0, "quarantined": 0, "refused": 0, "forged": 0}
            row = db.execute(
                "SELECT ik_id, ack, suspected FROM terminals WHERE tid = ?" + lock, (tid,)
            ).fetchone()
            if row is None:
                raise IngestError("unknown terminal %s" % tid)
            self._take(db, caller)
            ack = row[1]
            # Every IK ID the terminal has had or been offered: a record opens with its own.
            # Read after _take: a request signed with an offered key installs it there.
            ik_ids = self.key_candidates(
                db,
                tid,
                db.execute("SELECT ik_id FROM terminals WHERE tid = ?", (tid,)).fetchone()[0],
            )
            frames = list(parsed)
            result["refused"] = int(cut)
            batch = _Batch(db, tid, ik_ids, row[2] is not None, now, frames)
            # Far beyond what this terminal has used: from there on nothing is stored and
            # the ack stays before it.
            known = max(ack, batch.top)
            for index, (counter, _) in enumerate(frames):
                if counter > known + MAX_COUNTER_JUMP:
                    del frames[index:]
                    result["refused"] = 1
                    break
            dealt = ack
            for counter, frame in frames:
                outcome = self._store_record(batch, counter, frame)
                if outcome == "dropped":  # a forged frame the quarantine has no room for
                    result["refused"] = 1
                    break
                result[outcome] += 1
                if outcome != "forged":
                    dealt = max(dealt, counter)
            if batch.rows:
                db.executemany(
                    "INSERT INTO records VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    batch.rows,
                )
                self._note_blocks(db, tid, batch.rows)
            result["quarantined"] += result.pop("forged")
            if dealt > ack:
                db.execute("UPDATE terminals SET ack = ? WHERE tid = ?", (dealt, tid))
            if caller is not None and status:
                self._beat(db, tid, status, now)
            result["ack"] = dealt
            return result

        return self._transaction(work)

    def _store_record(self, batch, counter, frame):
        """stored, duplicates (this very frame is here already, as money or in quarantine),
        quarantined (a tag that checks: a different record under a stored counter, which
        marks the terminal suspected of being cloned, or any record of a suspected
        terminal), forged (a tag that does not check, kept in quarantine) or dropped
        (forged, and the terminal's quarantine is full)."""
        db, tid, now = batch.db, batch.tid, batch.now
        known = batch.stored.get(counter)
        if known is not None and known == frame:
            return "duplicates"
        if (counter, frame) in batch.kept:
            return "duplicates"
        record = None
        for ik_id in batch.ik_ids:  # the current IK ID first: the others only after a rotation
            try:
                data_key, mac_key = self._deriver.keys(ik_id, counter)
                plain = open_sealed(frame[1:-4], data_key, mac_key)
                record = Record.unpack(plain)
                break
            except (SealError, RecordError, DukptError) as exc:
                failure = exc
        if record is None:
            return self._quarantine(db, tid, counter, frame, str(failure), now, "forged")
        if known is not None:
            # Both tags check: the terminal's keys are in two places. Both records are kept,
            # and from now on none of its records is money until an operator clears it.
            reason = "clone: another record with a good tag under counter %d" % counter
            db.execute(
                "UPDATE terminals SET suspected = ? WHERE tid = ? AND suspected IS NULL",
                ("%s (%s)" % (reason, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now))), tid),
            )
            batch.held = True
            return self._quarantine(db, tid, counter, frame, reason, now, "quarantined", False)
        if batch.held:
            reason = "held: the terminal is suspected of being cloned (terminals clear)"
            return self._quarantine(db, tid, counter, frame, reason, now, "quarantined", False)
        batch.rows.append(
            (
                tid,
                counter,
                record.kind,
                record.merchant,
                record.method,
                record.amount_minor,
                record.currency,
                record.time,
                record.receipt,
                record.reference,
                record.cashier,
                record.reason,
                record.flags,
                bytes(record.token),
                record.last_four,
                frame,
                now,
            )
        )
        return "stored"

    @staticmethod
    def _quarantine(db, tid, counter, frame, reason, now, outcome, bounded=True):
        """Keep a frame in the terminal's quarantine. Forged frames within a bound: the
        oldest are kept, and what does not fit is counted (quarantine_dropped) and
        "dropped"; records whose tag checks (a clone's, a suspected terminal's) always."""
        count = db.execute("SELECT COUNT(*) FROM quarantine WHERE tid = ?", (tid,)).fetchone()
        if bounded and count[0] >= MAX_QUARANTINE_PER_TERMINAL:
            db.execute(
                "UPDATE terminals SET quarantine_dropped = quarantine_dropped + 1 WHERE tid = ?",
                (tid,),
            )
            return "dropped"
        db.execute(
            "INSERT INTO quarantine VALUES (?, ?, ?, ?, ?)", (tid, counter, frame, reason, now)
        )
        return outcome


def _frame_at(body, offset):
    length = body[offset]
    if 4 <= length <= 127:
        size = 1 + length + 4
    else:
        return None
    if offset + size > len(body):
        return None
    frame = bytes(body[offset : offset + size])
    if struct.unpack_from("<I", frame, size - 4)[0] != zlib.crc32(frame[: size - 4]):
        return None
    return frame
