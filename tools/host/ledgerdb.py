"""The back end's ledger: SQLite (WAL) storage of terminals, their sealed records and the
per-merchant totals, and the ingest rule that stores every record exactly once.

Ingest takes a batch exactly as the terminal's queue stores it (frames of length byte, body,
CRC-32), checks each frame's CRC, rebuilds the record's keys from the BDK, the terminal's IK
ID and the record's counter (pos.dukpt), checks the tag, decrypts, and stores the record
under (terminal, counter) in one transaction for the batch. A record whose tag does not
check is quarantined, never counted as money, and does not hold up the records after it. A
frame that does not parse (bad length or CRC, cut short) ends the batch there.

The answer's ack is the highest counter up to which the batch has been dealt with, so the
terminal reclaims exactly what is durably here; the same batch sent again is stored once.
"""

import sqlite3
import struct
import time
import zlib

from pos.dukpt import (
    USAGE_DATA_ENCRYPT,
    USAGE_MAC_GENERATION,
    derive_initial_key,
    derive_transaction_key,
    derive_working_key,
    ksn_bytes,
)
from pos.record import (
    KIND_NAMES,
    METHOD_NAMES,
    REFUND,
    SALE,
    SETTLEMENT,
    VOID,
    Record,
    RecordError,
)
from pos.seal import Sealer, SealError

MAX_BATCH_BYTES = 64 * 1024
_SCHEMA = """
CREATE TABLE IF NOT EXISTS terminals (
    tid TEXT PRIMARY KEY, ik_id BLOB NOT NULL, ack INTEGER NOT NULL DEFAULT 0,
    registered INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS merchants (
    tid TEXT NOT NULL, number INTEGER NOT NULL, merchant_id TEXT NOT NULL, name TEXT NOT NULL,
    PRIMARY KEY (tid, number));
CREATE TABLE IF NOT EXISTS records (
    tid TEXT NOT NULL, counter INTEGER NOT NULL, kind INTEGER NOT NULL,
    merchant INTEGER NOT NULL, method INTEGER NOT NULL, amount_minor INTEGER NOT NULL,
    currency INTEGER NOT NULL, time INTEGER NOT NULL, receipt INTEGER NOT NULL,
    reference INTEGER NOT NULL, cashier INTEGER NOT NULL, reason INTEGER NOT NULL,
    flags INTEGER NOT NULL, token BLOB NOT NULL, last_four INTEGER NOT NULL,
    frame BLOB NOT NULL, received INTEGER NOT NULL, PRIMARY KEY (tid, counter));
CREATE TABLE IF NOT EXISTS heartbeats (
    tid TEXT PRIMARY KEY, status TEXT NOT NULL, received INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine (
    tid TEXT NOT NULL, counter INTEGER NOT NULL, frame BLOB NOT NULL, reason TEXT NOT NULL,
    received INTEGER NOT NULL);
"""


class IngestError(Exception):
    """A request that is refused whole (unknown terminal, too large); the message says why."""


class LedgerDB:
    def __init__(self, path, bdk=None):
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a stored record survives a power cut
        self._db.executescript(_SCHEMA)
        self._bdk = bdk
        self._sealer = Sealer()

    def close(self):
        self._db.close()

    def add_terminal(self, tid, ik_id, merchants=()):
        """Register a terminal (its IK ID) and the merchants of its config."""
        if len(ik_id) != 8:
            raise ValueError("IK ID must be 8 bytes")
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO terminals (tid, ik_id, registered) VALUES (?, ?, ?) "
                "ON CONFLICT(tid) DO UPDATE SET ik_id = excluded.ik_id",
                (tid, ik_id, int(time.time())),
            )
            for number, merchant_id, name in merchants:
                db.execute(
                    "INSERT OR REPLACE INTO merchants VALUES (?, ?, ?, ?)",
                    (tid, number, merchant_id, name),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def ingest(self, tid, body):
        """Store a batch; returns {ack, stored, duplicates, quarantined, refused}."""
        if self._bdk is None:
            raise IngestError("the back end has no BDK loaded")
        if len(body) > MAX_BATCH_BYTES:
            raise IngestError("batch larger than %d bytes" % MAX_BATCH_BYTES)
        db = self._db
        row = db.execute("SELECT ik_id, ack FROM terminals WHERE tid = ?", (tid,)).fetchone()
        if row is None:
            raise IngestError("unknown terminal %s" % tid)
        ik_id, ack = row
        ik = derive_initial_key(self._bdk, ik_id)
        result = {"stored": 0, "duplicates": 0, "quarantined": 0, "refused": 0}
        now = int(time.time())
        db.execute("BEGIN IMMEDIATE")
        try:
            offset = 0
            while offset < len(body):
                frame = _frame_at(body, offset)
                if frame is None:
                    result["refused"] = 1  # the rest is not a frame: resend from here
                    break
                offset += len(frame)
                counter = struct.unpack_from(">I", frame, 1)[0]
                outcome = self._store(db, tid, ik, ik_id, counter, frame, now)
                result[outcome] += 1
                if counter > ack:
                    ack = counter
            db.execute("UPDATE terminals SET ack = ? WHERE tid = ?", (ack, tid))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        result["ack"] = ack
        return result

    def _store(self, db, tid, ik, ik_id, counter, frame, now):
        known = db.execute(
            "SELECT frame FROM records WHERE tid = ? AND counter = ?", (tid, counter)
        ).fetchone()
        if known is not None:
            if bytes(known[0]) == frame:
                return "duplicates"
            reason = "a different record under a counter already stored"
            db.execute(
                "INSERT INTO quarantine VALUES (?, ?, ?, ?, ?)", (tid, counter, frame, reason, now)
            )
            return "quarantined"
        ksn = ksn_bytes(ik_id, counter)
        key = derive_transaction_key(ik, ksn)
        try:
            plain = self._sealer.open(
                frame[1:-4],
                derive_working_key(key, ksn, USAGE_DATA_ENCRYPT),
                derive_working_key(key, ksn, USAGE_MAC_GENERATION),
            )
            record = Record.unpack(bytes(plain))
        except (SealError, RecordError) as exc:
            db.execute(
                "INSERT INTO quarantine VALUES (?, ?, ?, ?, ?)",
                (tid, counter, frame, str(exc), now),
            )
            return "quarantined"
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

    def heartbeat(self, tid, status):
        """Keep the terminal's latest status line (bounded), as it sent it."""
        self._db.execute(
            "INSERT OR REPLACE INTO heartbeats VALUES (?, ?, ?)",
            (tid, status[:200], int(time.time())),
        )

    def heartbeats(self):
        """{terminal: {"status": {name: value}, "received": unix}}"""
        out = {}
        for tid, status, received in self._db.execute("SELECT * FROM heartbeats"):
            fields = dict(p.split("=", 1) for p in status.split(";") if "=" in p)
            out[tid] = {"status": fields, "received": received}
        return out

    def report(self, merchant=None):
        """Per terminal and merchant: counts and totals by type and method, settlements and
        whether each Z reconciles with the records received before it."""
        db = self._db
        names = {
            (tid, number): (merchant_id, name)
            for tid, number, merchant_id, name in db.execute("SELECT * FROM merchants")
        }
        query = (
            "SELECT tid, merchant, counter, kind, method, amount_minor, token, last_four,"
            " reference FROM records"
        )
        rows = db.execute(query + " ORDER BY tid, merchant, counter").fetchall()
        merchants = {}
        for tid, number, counter, kind, method, amount, token, last_four, reference in rows:
            if merchant is not None and number != merchant:
                continue
            entry = merchants.get((tid, number))
            if entry is None:
                merchant_id, name = names.get((tid, number), ("", ""))
                entry = merchants[(tid, number)] = _empty_entry(tid, number, merchant_id, name)
            _count(entry, counter, kind, method, amount, token, last_four, reference)
        quarantined = db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        out = []
        for entry in merchants.values():
            entry.pop("_batch")
            out.append(entry)
        return {"merchants": out, "quarantined": quarantined, "terminals": self.heartbeats()}


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


def _empty_entry(tid, number, merchant_id, name):
    return {
        "terminal": tid,
        "number": number,
        "merchant_id": merchant_id,
        "name": name,
        "sales_count": 0,
        "sales_total_minor": 0,
        "voids_count": 0,
        "voids_total_minor": 0,
        "refunds_count": 0,
        "refunds_total_minor": 0,
        "declines_count": 0,
        "net_total_minor": 0,
        "by_method": {},
        "settlements": [],
        # Since the last Z: [sales net of voids count, total, refund count, total].
        "_batch": [0, 0, 0, 0],
    }


def _count(entry, counter, kind, method, amount, token, last_four, reference):
    batch = entry["_batch"]
    name = KIND_NAMES[kind]
    if kind == SALE:
        entry["sales_count"] += 1
        entry["sales_total_minor"] += amount
        batch[0] += 1
        batch[1] += amount
    elif kind == VOID:
        entry["voids_count"] += 1
        entry["voids_total_minor"] += amount
        batch[0] -= 1
        batch[1] -= amount
    elif kind == REFUND:
        entry["refunds_count"] += 1
        entry["refunds_total_minor"] += amount
        batch[2] += 1
        batch[3] += amount
    elif kind == SETTLEMENT:
        sale_count, refund_total = struct.unpack(">HI", token)
        reported = [sale_count, amount, last_four, refund_total]
        entry["settlements"].append(
            {
                "batch": reference,
                "counter": counter,
                "sales_count": sale_count,
                "sales_total_minor": amount,
                "refunds_count": last_four,
                "refunds_total_minor": refund_total,
                "reconciles": reported == batch,
            }
        )
        entry["_batch"] = [0, 0, 0, 0]
        return
    else:
        entry["declines_count"] += 1
        return
    key = "%s_%s" % (name, METHOD_NAMES[method] or "none")
    entry["by_method"][key] = entry["by_method"].get(key, 0) + amount
    entry["net_total_minor"] = (
        entry["sales_total_minor"] - entry["voids_total_minor"] - entry["refunds_total_minor"]
    )
