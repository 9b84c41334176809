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

import json
import os
import re
import sqlite3
import struct
import time
import zlib
from urllib.parse import quote

from pos.downlink import BLACKLIST, CONFIG, MAX_PLAIN, derive_downlink_key, seal_document
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
CREATE TABLE IF NOT EXISTS configs (
    tid TEXT NOT NULL, version INTEGER NOT NULL, payload TEXT NOT NULL, created INTEGER NOT NULL,
    PRIMARY KEY (tid, version));
CREATE TABLE IF NOT EXISTS blacklist (
    token BLOB PRIMARY KEY, added INTEGER NOT NULL, removed INTEGER);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    tid TEXT NOT NULL, id INTEGER NOT NULL, name TEXT NOT NULL, created INTEGER NOT NULL,
    PRIMARY KEY (tid, id));
CREATE TABLE IF NOT EXISTS faults (
    tid TEXT NOT NULL, text TEXT NOT NULL, received INTEGER NOT NULL);
"""
COMMANDS = ("settle", "faultlog")
MAX_COMMANDS_A_DOCUMENT = 8  # keeps a commands document within the terminal's 512 bytes
MAX_FAULT_LOG_BYTES = 4096


class IngestError(Exception):
    """A request that is refused whole (unknown terminal, too large); the message says why."""


class DownlinkError(Exception):
    """A config, blacklist entry or command the back end refuses; the message says why."""


class LedgerError(Exception):
    """A ledger that cannot be opened as asked (no such file, not a ledger) or read, or a
    report of a merchant it does not have; the message says why, in one line."""


_TABLES = frozenset(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", _SCHEMA))
# How a ledger is opened: "create" makes the file and its tables when missing (registering
# the first terminal); "write" changes an existing ledger only; "read" never writes (the
# reports): a mistyped path must not leave a new, empty ledger behind.
_MODES = {"create": "rwc", "write": "rw", "read": "ro"}


class LedgerDB:
    def __init__(self, path, bdk=None, mode="create"):
        if mode != "create":
            _check_ledger_file(path)
        uri = "file:%s?mode=%s" % (quote(os.path.abspath(path)), _MODES[mode])
        try:
            self._db = sqlite3.connect(
                uri, uri=True, check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise LedgerError(_cannot_open(path, exc)) from None
        try:
            tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master")}
            if (tables and "terminals" not in tables) or (mode != "create" and not tables):
                raise LedgerError("%s is not a OneTill ledger (it has no terminals)" % path)
            if mode == "read":
                missing = sorted(_TABLES - tables)
                if missing:
                    raise LedgerError(
                        "%s is a ledger of an older version (no %s table): run "
                        "tools/backend serve on it once" % (path, missing[0])
                    )
            else:
                self._db.execute("PRAGMA journal_mode=WAL")
                # a stored record survives a power cut
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._db.close()
            raise LedgerError(_cannot_open(path, exc)) from None
        except LedgerError:
            self._db.close()
            raise
        self._path = path
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

    # --- the downlink: versioned config, blacklist and commands ---------------------------

    def _terminal(self, tid):
        row = self._db.execute("SELECT ik_id FROM terminals WHERE tid = ?", (tid,)).fetchone()
        if row is None:
            raise IngestError("unknown terminal %s" % tid)
        return bytes(row[0])

    def _transaction(self, work):
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            result = work(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return result

    def set_config(self, tid, doc):
        """Store a new config for a terminal ({"merchants": ..., "cashiers": ...}, as the
        terminal's merchants.json and cashiers.json), checked with the terminal's own
        parser; returns its version (one above the last)."""
        from pos import config

        self._terminal(tid)
        if not isinstance(doc, dict) or set(doc) - {"merchants", "cashiers", "version"}:
            raise DownlinkError('a config is {"merchants": {...}, "cashiers": {...}}')

        def store(db):
            row = db.execute("SELECT MAX(version) FROM configs WHERE tid = ?", (tid,)).fetchone()
            version = (row[0] or 0) + 1
            pushed = {
                "version": version,
                "merchants": doc.get("merchants"),
                "cashiers": doc.get("cashiers"),
            }
            try:
                _, merchants, _ = config.parse_pushed(pushed, "config")
            except config.ConfigError as exc:
                raise DownlinkError("config refused: %s" % exc) from None
            payload = json.dumps(pushed, separators=(",", ":"))
            if len(payload) > MAX_PLAIN[CONFIG]:
                raise DownlinkError("config larger than %d bytes" % MAX_PLAIN[CONFIG])
            db.execute(
                "INSERT INTO configs VALUES (?, ?, ?, ?)",
                (tid, version, payload, int(time.time())),
            )
            for merchant in merchants:
                db.execute(
                    "INSERT OR REPLACE INTO merchants VALUES (?, ?, ?, ?)",
                    (tid, merchant.number, merchant.merchant_id, merchant.name),
                )
            return version

        return self._transaction(store)

    def change_blacklist(self, add=(), remove=()):
        """Add and remove 6-byte card tokens (one list for every terminal: the token key is
        the same everywhere); returns the new blacklist version."""
        for token in list(add) + list(remove):
            if len(token) != 6:
                raise DownlinkError("a card token is 6 bytes")
        if set(add) & set(remove):
            raise DownlinkError("the same token added and removed")

        def store(db):
            version = self._next(db, "blacklist")
            for token in add:
                db.execute(
                    "INSERT INTO blacklist VALUES (?, ?, NULL) ON CONFLICT(token) DO UPDATE SET "
                    "added = excluded.added, removed = NULL WHERE removed IS NOT NULL",
                    (bytes(token), version),
                )
            for token in remove:
                db.execute(
                    "UPDATE blacklist SET removed = ? WHERE token = ? AND removed IS NULL",
                    (version, bytes(token)),
                )
            return version

        return self._transaction(store)

    def add_command(self, tid, name):
        """Queue a command for a terminal; returns its id (per terminal, from 1)."""
        if name not in COMMANDS:
            raise DownlinkError("unknown command %s (known: %s)" % (name, ", ".join(COMMANDS)))
        self._terminal(tid)

        def store(db):
            row = db.execute("SELECT MAX(id) FROM commands WHERE tid = ?", (tid,)).fetchone()
            number = (row[0] or 0) + 1
            db.execute(
                "INSERT INTO commands VALUES (?, ?, ?, ?)", (tid, number, name, int(time.time()))
            )
            return number

        return self._transaction(store)

    @staticmethod
    def _next(db, name):
        db.execute("INSERT OR IGNORE INTO counters VALUES (?, 0)", (name,))
        db.execute("UPDATE counters SET value = value + 1 WHERE name = ?", (name,))
        return db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0]

    def versions(self, tid):
        """{"config", "blacklist", "commands"}: the newest of each the terminal can fetch."""
        self._terminal(tid)
        db = self._db
        config = db.execute("SELECT MAX(version) FROM configs WHERE tid = ?", (tid,)).fetchone()
        listed = db.execute("SELECT value FROM counters WHERE name = 'blacklist'").fetchone()
        command = db.execute("SELECT MAX(id) FROM commands WHERE tid = ?", (tid,)).fetchone()
        return {
            "config": config[0] or 0,
            "blacklist": listed[0] if listed else 0,
            "commands": command[0] or 0,
        }

    def document(self, tid, kind, since):
        """(version, payload) of the newest document of a kind for a terminal, from `since`
        (blacklist: the delta from that version; commands: those after that id), or None."""
        self._terminal(tid)
        db = self._db
        if kind == CONFIG:
            row = db.execute(
                "SELECT version, payload FROM configs WHERE tid = ? ORDER BY version DESC LIMIT 1",
                (tid,),
            ).fetchone()
            return None if row is None else (row[0], row[1].encode())
        if kind == BLACKLIST:
            version = self.versions(tid)["blacklist"]
            if not version:
                return None
            add = [
                bytes(r[0])
                for r in db.execute(
                    "SELECT token FROM blacklist WHERE removed IS NULL AND added > ? "
                    "ORDER BY token",
                    (since,),
                )
            ]
            # Every token removed since: one the terminal never had is simply not there.
            remove = [
                bytes(r[0])
                for r in db.execute(
                    "SELECT token FROM blacklist WHERE removed > ? ORDER BY token", (since,)
                )
            ]
            payload = struct.pack(">II", len(add), len(remove)) + b"".join(add) + b"".join(remove)
            return version, payload
        rows = db.execute(
            "SELECT id, name FROM commands WHERE tid = ? AND id > ? ORDER BY id LIMIT ?",
            (tid, since, MAX_COMMANDS_A_DOCUMENT),
        ).fetchall()
        if not rows:
            return None
        return rows[-1][0], json.dumps([list(r) for r in rows]).encode()

    def sealed_document(self, tid, kind, since):
        """The document sealed with the terminal's downlink key (from the BDK and its IK ID),
        or None when there is none."""
        if self._bdk is None:
            raise IngestError("the back end has no BDK loaded")
        found = self.document(tid, kind, since)
        if found is None:
            return None
        key = derive_downlink_key(self._bdk, self._terminal(tid))
        return seal_document(key, kind, found[0], found[1])

    def store_faults(self, tid, text):
        self._terminal(tid)
        self._db.execute(
            "INSERT INTO faults VALUES (?, ?, ?)",
            (tid, text[:MAX_FAULT_LOG_BYTES], int(time.time())),
        )

    def downlink_report(self):
        """Per terminal: versions on offer, what the terminal says is in force (heartbeat),
        the commands and whether each was taken, the last fault log sent."""
        db = self._db
        beats = self.heartbeats()
        out = {}
        for (tid,) in db.execute("SELECT tid FROM terminals ORDER BY tid").fetchall():
            status = beats.get(tid, {}).get("status", {})
            taken = int(status.get("cmd", 0) or 0)
            commands = [
                {"id": number, "name": name, "taken": number <= taken}
                for number, name in db.execute(
                    "SELECT id, name FROM commands WHERE tid = ? ORDER BY id", (tid,)
                )
            ]
            fault = db.execute(
                "SELECT text FROM faults WHERE tid = ? ORDER BY rowid DESC LIMIT 1", (tid,)
            ).fetchone()
            out[tid] = {
                "offered": self.versions(tid),
                "in_force": {
                    "config": int(status.get("cfg", 0) or 0),
                    "blacklist": int(status.get("bl", 0) or 0),
                    "commands": taken,
                },
                "refused": status.get("refused", ""),
                "commands": commands,
                "fault_log": fault[0] if fault else None,
            }
        return out

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

    def merchant_numbers(self):
        """Every merchant number the ledger knows, registered or seen in a record."""
        rows = self._db.execute(
            "SELECT number FROM merchants UNION SELECT merchant FROM records ORDER BY 1"
        )
        return [row[0] for row in rows]

    def report(self, merchant=None):
        """Per terminal and merchant: counts and totals by type and method, settlements and
        whether each Z reconciles with the records received before it."""
        db = self._db
        names = {
            (tid, number): (merchant_id, name)
            for tid, number, merchant_id, name in db.execute("SELECT * FROM merchants")
        }
        if merchant is not None:
            known = self.merchant_numbers()
            if merchant not in known:
                raise LedgerError(
                    "no merchant %d in %s (it has %s)"
                    % (
                        merchant,
                        self._path,
                        "merchants " + ", ".join(map(str, known)) if known else "none",
                    )
                )
        query = (
            "SELECT tid, merchant, counter, kind, method, amount_minor, currency, token,"
            " last_four, reference FROM records"
        )
        rows = db.execute(query + " ORDER BY tid, merchant, counter").fetchall()
        merchants = {}
        for row in rows:
            tid, number, counter, kind, method, amount, currency, token, last_four, reference = row
            if merchant is not None and number != merchant:
                continue
            entry = merchants.get((tid, number))
            if entry is None:
                merchant_id, name = names.get((tid, number), ("", ""))
                entry = merchants[(tid, number)] = _empty_entry(tid, number, merchant_id, name)
                entry["currency"] = currency  # ISO 4217 numeric, as the records carry it
            _count(entry, counter, kind, method, amount, token, last_four, reference)
        quarantined = db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        out = []
        for entry in merchants.values():
            entry.pop("_batch")
            out.append(entry)
        return {
            "merchants": out,
            "quarantined": quarantined,
            "terminals": self.heartbeats(),
            "downlink": self.downlink_report(),
        }


def _check_ledger_file(path):
    """An existing ledger is a file: say plainly what the path is instead."""
    if os.path.isdir(path):
        raise LedgerError("%s is a folder, not a ledger" % path)
    if not os.path.exists(path):
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise LedgerError("no ledger at %s: there is no folder %s" % (path, folder))
        raise LedgerError(
            "no ledger at %s (tools/backend terminals add --db FILE makes one)" % path
        )
    if os.path.getsize(path) == 0:
        raise LedgerError("%s is an empty file, not a OneTill ledger" % path)


def _cannot_open(path, exc):
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        return "%s is not a OneTill ledger (not an SQLite database)" % path
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        return "cannot make a ledger at %s: there is no folder %s" % (
            path,
            os.path.dirname(os.path.abspath(path)),
        )
    if os.path.isdir(path):
        return "%s is a folder, not a ledger" % path
    return "cannot open the ledger %s: %s" % (path, exc)


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
