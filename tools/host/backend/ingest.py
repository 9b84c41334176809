"""Ingest: a batch's frames parsed, each record's keys derived (DUKPT), its tag checked, and
every record stored exactly once under (terminal, counter) or quarantined."""

import struct
import time
import zlib

from pos.dukpt import (
    USAGE_DATA_ENCRYPT,
    USAGE_MAC_GENERATION,
    DukptError,
    derive_initial_key,
    derive_transaction_key,
    derive_working_key,
    ksn_bytes,
)
from pos.record import (
    Record,
    RecordError,
)
from pos.seal import Sealer, SealError
from tools.host.backend.errors import IngestError

MAX_BATCH_BYTES = 64 * 1024
MAX_QUARANTINE_PER_TERMINAL = 1000  # forged frames kept; later ones are counted, not kept
# How far above the last counter the back end knows a record's counter may lie: a full
# queue (about 10,500 records) and the DUKPT counter's skips fit many times over.
MAX_COUNTER_JUMP = 1 << 20


class KeyDeriver:
    """A record's data and MAC keys from the BDK, the terminal's IK ID and the counter."""

    def __init__(self, bdk):
        self._bdk = bdk

    def keys(self, ik_id, counter):
        """(data key, MAC key) of the record under `counter`; DukptError for a counter no
        terminal uses."""
        ksn = ksn_bytes(ik_id, counter)
        key = derive_transaction_key(derive_initial_key(self._bdk, ik_id), ksn)
        return (
            derive_working_key(key, ksn, USAGE_DATA_ENCRYPT),
            derive_working_key(key, ksn, USAGE_MAC_GENERATION),
        )


class IngestMixin:
    """LedgerDB's ingest."""

    @property
    def _deriver(self):
        deriver = getattr(self, "_key_deriver", None)
        if deriver is None:
            deriver = self._key_deriver = KeyDeriver(self._bdk)
        return deriver

    @property
    def _sealer(self):
        sealer = getattr(self._sealer_local, "sealer", None)
        if sealer is None:
            sealer = self._sealer_local.sealer = Sealer()
        return sealer

    def ingest(self, tid, body, caller=None, status=None):
        """Store a batch; returns {ack, stored, duplicates, quarantined, refused}. With a
        caller (an authenticated request) its counter is taken and its heartbeat kept in
        the same transaction."""
        if self._bdk is None:
            raise IngestError("the back end has no BDK loaded")
        if len(body) > MAX_BATCH_BYTES:
            raise IngestError("batch larger than %d bytes" % MAX_BATCH_BYTES)
        db = self._db
        result = {"stored": 0, "duplicates": 0, "quarantined": 0, "refused": 0, "forged": 0}
        now = int(time.time())
        with self._writer:  # writers queue here, not in SQLite's busy-wait sleeps
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT ik_id, ack, suspected FROM terminals WHERE tid = ?", (tid,)
                ).fetchone()
                if row is None:
                    raise IngestError("unknown terminal %s" % tid)
                self._take(db, caller)
                ik_id, ack = bytes(row[0]), row[1]
                self._held = row[2] is not None
                top = db.execute("SELECT MAX(counter) FROM records WHERE tid = ?", (tid,))
                known = max(ack, top.fetchone()[0] or 0)
                offset = previous = 0
                dealt = ack
                while offset < len(body):
                    frame = _frame_at(body, offset)
                    counter = struct.unpack_from(">I", frame, 1)[0] if frame else 0
                    # Not a frame, out of order, or far beyond what this terminal has used:
                    # the rest is not stored and the ack stays before it.
                    if frame is None or counter <= previous or counter > known + MAX_COUNTER_JUMP:
                        result["refused"] = 1
                        break
                    offset += len(frame)
                    previous = counter
                    outcome = self._store(db, tid, ik_id, counter, frame, now)
                    if outcome == "dropped":  # a forged frame the quarantine has no room for
                        result["refused"] = 1
                        break
                    result[outcome] += 1
                    if outcome != "forged":
                        dealt = max(dealt, counter)
                result["quarantined"] += result.pop("forged")
                if dealt > ack:
                    db.execute("UPDATE terminals SET ack = ? WHERE tid = ?", (dealt, tid))
                if caller is not None and status:
                    self._beat(db, tid, status, now)
                committing = time.perf_counter()
                db.execute("COMMIT")
                # What the durable commit costs (tools/bench ingest reads it).
                self.commit_seconds += time.perf_counter() - committing
                self.commits += 1
            except BaseException:
                db.execute("ROLLBACK")
                raise
        result["ack"] = dealt
        return result

    def _store(self, db, tid, ik_id, counter, frame, now):
        """stored, duplicates (this very frame is here already, as money or in quarantine),
        quarantined (a tag that checks: a different record under a stored counter, which
        marks the terminal suspected of being cloned, or any record of a suspected
        terminal), forged (a tag that does not check, kept in quarantine) or dropped
        (forged, and the terminal's quarantine is full)."""
        known = db.execute(
            "SELECT frame FROM records WHERE tid = ? AND counter = ?", (tid, counter)
        ).fetchone()
        if known is not None and bytes(known[0]) == frame:
            return "duplicates"
        kept = db.execute(
            "SELECT 1 FROM quarantine WHERE tid = ? AND counter = ? AND frame = ?",
            (tid, counter, frame),
        ).fetchone()
        if kept is not None:
            return "duplicates"
        try:
            data_key, mac_key = self._deriver.keys(ik_id, counter)
            plain = self._sealer.open(frame[1:-4], data_key, mac_key)
            record = Record.unpack(bytes(plain))
        except (SealError, RecordError, DukptError) as exc:
            return self._quarantine(db, tid, counter, frame, str(exc), now, "forged")
        if known is not None:
            # Both tags check: the terminal's keys are in two places. Both records are kept,
            # and from now on none of its records is money until an operator clears it.
            reason = "clone: another record with a good tag under counter %d" % counter
            db.execute(
                "UPDATE terminals SET suspected = ? WHERE tid = ? AND suspected IS NULL",
                ("%s (%s)" % (reason, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now))), tid),
            )
            self._held = True
            return self._quarantine(db, tid, counter, frame, reason, now, "quarantined", False)
        if self._held:
            reason = "held: the terminal is suspected of being cloned (terminals clear)"
            return self._quarantine(db, tid, counter, frame, reason, now, "quarantined", False)
        db.execute(
            "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            ),
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
