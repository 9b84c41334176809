"""The back end's ledger: SQLite (WAL) storage of terminals, their sealed records and the
per-merchant totals, and the ingest rule that stores every record exactly once.

Ingest takes a batch exactly as the terminal's queue stores it (frames of length byte, body,
CRC-32), checks each frame's CRC, rebuilds the record's keys from the BDK, the terminal's IK
ID and the record's counter (pos.dukpt), checks the tag, decrypts, and stores the record
under (terminal, counter) in one transaction for the batch. A record whose tag does not
check is quarantined, never counted as money, and does not hold up the records after it. A
frame that does not parse (bad length or CRC, cut short) ends the batch there.

The answer's ack is the highest counter below which every record of the batch is durably
here, as money or in the terminal's kept quarantine: the terminal reclaims exactly that, and
the same batch sent again is stored once. Only a frame whose tag checks can move the ack (a
forged frame's counter is the forger's choice); a counter far beyond the terminal's last
known one, or not above the frame before it, ends the batch unstored.

Every request of a terminal is authenticated (pos.uplink: a request key derived from the
BDK and the terminal's IK ID, a counter above the last one seen, the body's hash, the
heartbeat): authenticate() checks a request before its body is read, and the counter is
taken in the same transaction as what the request changes, so a replay changes nothing.
One SQLite connection per thread (WAL: readers do not wait; writers queue in SQLite), so
the back end checks requests in parallel and holds no lock of its own.
"""

import hashlib
import hmac
import json
import os
import re
import sqlite3
import struct
import threading
import time
import zlib
from urllib.parse import quote

from cryptography.hazmat.primitives import cmac as _cmac
from cryptography.hazmat.primitives.ciphers import algorithms as _algorithms

from pos.downlink import BLACKLIST, CONFIG, MAX_PLAIN, derive_downlink_key, seal_document
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
from pos.uplink import link_keys, signed_message

MAX_BATCH_BYTES = 64 * 1024
MAX_QUARANTINE_PER_TERMINAL = 1000  # forged frames kept; later ones are counted, not kept
MAX_FAULT_LOGS_PER_TERMINAL = 16
# How far above the last counter the back end knows a record's counter may lie: a full
# queue (about 10,500 records) and the DUKPT counter's skips fit many times over.
MAX_COUNTER_JUMP = 1 << 20
EMPTY_BODY_HASH = hashlib.sha256(b"").digest()
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


class RegistrationError(ValueError):
    """A terminal ID registered already with another IK ID (and no --replace)."""


class AuthError(Exception):
    """A request that does not prove it comes from the terminal it names: 401, nothing
    changes. The message is for tests and logs, never for the caller."""


class StaleRequest(AuthError):
    """A well-signed request whose counter is not above the last one taken (a replay, or a
    terminal that lost its counter): 401 with a tagged {"last": N}."""

    def __init__(self, caller, last):
        super().__init__("request counter %d is not above %d" % (caller.nonce, last))
        self.caller = caller
        self.last = last


class Caller:
    """An authenticated request: whose, its counter, body hash, tag and the reply key."""

    def __init__(self, tid, nonce, body_hash, tag, reply_key):
        self.tid = tid
        self.nonce = nonce
        self.body_hash = body_hash
        self.tag = tag
        self.reply_key = reply_key

    def reply_tag(self, body):
        """The tag of a reply body, bound to this request (pos.uplink.reply_tag)."""
        return cmac(self.reply_key, self.tag + bytes(body))


def cmac(key, data):
    """AES-CMAC (16 bytes) with the cryptography package: the back end's fast path, and an
    implementation apart from pos.seal's, so the tests compare two."""
    mac = _cmac.CMAC(_algorithms.AES(bytes(key)))
    mac.update(bytes(data))
    return mac.finalize()


def parse_auth(value):
    """(nonce, body hash, tag) of an X-OneTill-Auth header, or None if it is not one."""
    parts = (value or "").split(":")
    if len(parts) != 3 or not parts[0].isdigit() or len(parts[0]) > 10:
        return None
    try:
        body_hash, tag = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
    except ValueError:
        return None
    nonce = int(parts[0])
    if not 0 < nonce <= 0xFFFFFFFF or len(body_hash) != 32 or len(tag) != 16:
        return None
    return nonce, body_hash, tag


def create_private(path):
    """Create a file 0600 (whatever the umask) if it does not exist yet."""
    if path not in ("", ":memory:") and not os.path.exists(path):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


_COLUMNS = (
    ("nonce", "INTEGER NOT NULL DEFAULT 0"),
    ("quarantine_dropped", "INTEGER NOT NULL DEFAULT 0"),
    ("faults_dropped", "INTEGER NOT NULL DEFAULT 0"),
    ("suspected", "TEXT"),  # why the terminal is thought cloned; NULL: it is not
)


class LedgerDB:
    def __init__(self, path, bdk=None, mode="create"):
        if mode != "create":
            _check_ledger_file(path)
        else:
            try:
                # SQLite gives the -wal and -shm files the database file's mode: 0600 here.
                create_private(path)
            except OSError as exc:
                raise LedgerError(_cannot_open(path, exc)) from None
        self._path = path
        self._mode = mode
        self._uri = "file:%s?mode=%s" % (quote(os.path.abspath(path)), _MODES[mode])
        self._local = threading.local()
        self._connections = []
        self._connections_lock = threading.Lock()
        self._keys = {}  # IK ID -> (request key, reply key): derived once per terminal
        self._digests = {}  # blacklist version -> digest of the whole list at it
        self._writer = threading.Lock()  # write transactions, one at a time; reads never wait
        try:
            db = self._db
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
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
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
                have = {row[1] for row in db.execute("PRAGMA table_info(terminals)")}
                for name, kind in _COLUMNS:  # a database made before these columns existed
                    if name not in have:
                        db.execute("ALTER TABLE terminals ADD COLUMN %s %s" % (name, kind))
        except sqlite3.Error as exc:
            self.close()
            raise LedgerError(_cannot_open(path, exc)) from None
        except LedgerError:
            self.close()
            raise
        self._bdk = bdk
        self._sealer_local = threading.local()

    @property
    def _db(self):
        """This thread's connection (sqlite3 connections are not shared between threads)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(
                self._uri, uri=True, timeout=30, check_same_thread=False, isolation_level=None
            )
            if self._mode != "read":
                db.execute("PRAGMA synchronous=FULL")  # a stored record survives a power cut
            self._local.db = db
            with self._connections_lock:
                self._connections.append(db)
        return db

    @property
    def _sealer(self):
        sealer = getattr(self._sealer_local, "sealer", None)
        if sealer is None:
            sealer = self._sealer_local.sealer = Sealer()
        return sealer

    def close(self):
        with self._connections_lock:
            for db in self._connections:
                db.close()
            self._connections = []
        self._local = threading.local()

    def add_terminal(self, tid, ik_id, merchants=(), replace=False):
        """Register a terminal (its IK ID) and the merchants of its config. The same ID
        with another IK ID is refused unless `replace`: then the old terminal's records
        and quarantine move to TID@OLDIKID (nothing is deleted) and its counters, ack and
        request counter start afresh."""
        if len(ik_id) != 8:
            raise ValueError("IK ID must be 8 bytes")
        db = self._db
        with self._writer:  # writers queue here, not in SQLite's busy-wait sleeps
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT ik_id FROM terminals WHERE tid = ?", (tid,)).fetchone()
                if row is not None and bytes(row[0]) != bytes(ik_id):
                    if not replace:
                        raise RegistrationError(
                            "terminal %s is registered with IK ID %s; give --replace to start it "
                            "afresh with %s" % (tid, bytes(row[0]).hex(), bytes(ik_id).hex())
                        )
                    retired = "%s@%s" % (tid, bytes(row[0]).hex())
                    for table in ("records", "quarantine"):
                        db.execute("UPDATE %s SET tid = ? WHERE tid = ?" % table, (retired, tid))
                    db.execute(
                        "UPDATE terminals SET ik_id = ?, ack = 0, nonce = 0 WHERE tid = ?",
                        (ik_id, tid),
                    )
                db.execute(
                    "INSERT INTO terminals (tid, ik_id, registered) VALUES (?, ?, ?) "
                    "ON CONFLICT(tid) DO NOTHING",
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

    def _link_keys(self, ik_id):
        keys = self._keys.get(ik_id)
        if keys is None:
            keys = self._keys[ik_id] = link_keys(derive_downlink_key(self._bdk, ik_id))
        return keys

    def authenticate(self, tid, method, path, status, auth):
        """The Caller of a request whose X-OneTill-Auth header `auth` proves it comes from
        terminal `tid` (pos.uplink): AuthError otherwise, StaleRequest for a counter not
        above the last one taken. Reads one row; changes nothing. The body is checked
        against the hash later, when it has been read."""
        if self._bdk is None:
            raise AuthError("the back end has no BDK loaded")
        parsed = parse_auth(auth)
        if parsed is None:
            raise AuthError("no X-OneTill-Auth header, or a malformed one")
        nonce, body_hash, tag = parsed
        row = self._db.execute("SELECT ik_id, nonce FROM terminals WHERE tid = ?", (tid,))
        row = row.fetchone()
        # An unknown terminal costs the same work as a known one and gets the same answer.
        ik_id, last = (bytes(row[0]), row[1]) if row is not None else (bytes(8), 0)
        request_key, reply_key = self._link_keys(ik_id)
        expected = cmac(request_key, signed_message(method, path, nonce, body_hash, status))
        if not hmac.compare_digest(expected, tag) or row is None:
            raise AuthError("request tag does not match")
        caller = Caller(tid, nonce, body_hash, tag, reply_key)
        if nonce <= last:
            raise StaleRequest(caller, last)
        return caller

    @staticmethod
    def _take(db, caller):
        """Take the caller's request counter, in the transaction of what it changes."""
        if caller is None:
            return
        taken = db.execute(
            "UPDATE terminals SET nonce = ? WHERE tid = ? AND nonce < ?",
            (caller.nonce, caller.tid, caller.nonce),
        ).rowcount
        if not taken:
            row = db.execute("SELECT nonce FROM terminals WHERE tid = ?", (caller.tid,))
            raise StaleRequest(caller, row.fetchone()[0])

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
                ik = derive_initial_key(self._bdk, ik_id)
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
                    outcome = self._store(db, tid, ik, ik_id, counter, frame, now)
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
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        result["ack"] = dealt
        return result

    def _store(self, db, tid, ik, ik_id, counter, frame, now):
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
        ksn = ksn_bytes(ik_id, counter)
        try:
            key = derive_transaction_key(ik, ksn)
            plain = self._sealer.open(
                frame[1:-4],
                derive_working_key(key, ksn, USAGE_DATA_ENCRYPT),
                derive_working_key(key, ksn, USAGE_MAC_GENERATION),
            )
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

    def clear_terminal(self, tid):
        """An operator's word that a suspected terminal was investigated: its next records
        are money again (those held stay in quarantine). Returns the reason it was held,
        or None if it was not suspected."""
        self._terminal(tid)

        def work(db):
            row = db.execute("SELECT suspected FROM terminals WHERE tid = ?", (tid,)).fetchone()
            db.execute("UPDATE terminals SET suspected = NULL WHERE tid = ?", (tid,))
            return row[0]

        return self._transaction(work)

    def alerts(self):
        """Per terminal: why it is suspected of being cloned (if it is), and how many
        forged frames and fault logs its bounds dropped."""
        out = {}
        for tid, suspected, quarantine, faults in self._db.execute(
            "SELECT tid, suspected, quarantine_dropped, faults_dropped FROM terminals "
            "WHERE suspected IS NOT NULL OR quarantine_dropped > 0 OR faults_dropped > 0"
        ):
            out[tid] = {
                "suspected": suspected,
                "quarantine_dropped": quarantine,
                "faults_dropped": faults,
            }
        return out

    def poll(self, tid, caller, status):
        """An authenticated poll: its counter taken and its heartbeat kept; the versions."""

        def work(db):
            self._take(db, caller)
            if status:
                self._beat(db, tid, status, int(time.time()))

        self._terminal(tid)
        self._transaction(work)
        return self.versions(tid)

    def take(self, caller):
        """Take an authenticated request's counter (a request that changes nothing else)."""
        self._transaction(lambda db: self._take(db, caller))

    # --- the downlink: versioned config, blacklist and commands ---------------------------

    def _terminal(self, tid):
        row = self._db.execute("SELECT ik_id FROM terminals WHERE tid = ?", (tid,)).fetchone()
        if row is None:
            raise IngestError("unknown terminal %s" % tid)
        return bytes(row[0])

    def _transaction(self, work):
        db = self._db
        with self._writer:  # writers queue here, not in SQLite's busy-wait sleeps
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
            # The whole list (base 0) from nothing, from a version we never made, or when
            # the terminal's list is not what its version says (its heartbeat's digest).
            if not since or since > version or self.blacklist_whole(tid):
                base, since, removed = 0, 0, "1 = 0"
            else:
                base, removed = since, "removed > ?"
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
                    "SELECT token FROM blacklist WHERE %s ORDER BY token" % removed,
                    (since,) if base else (),
                )
            ]
            counts = struct.pack(">III", base, len(add), len(remove))
            return version, counts + b"".join(add) + b"".join(remove)
        rows = db.execute(
            "SELECT id, name FROM commands WHERE tid = ? AND id > ? ORDER BY id LIMIT ?",
            (tid, since, MAX_COMMANDS_A_DOCUMENT),
        ).fetchall()
        if not rows:
            return None
        return rows[-1][0], json.dumps([list(r) for r in rows]).encode()

    def blacklist_digest(self, version):
        """What a terminal's list at the newest version digests to: the first 4 bytes of
        SHA-256 over the file pos.blacklist keeps, in hex (cached per version)."""
        digests = self._digests
        if version not in digests:
            tokens = [
                bytes(r[0])
                for r in self._db.execute(
                    "SELECT token FROM blacklist WHERE removed IS NULL ORDER BY token"
                )
            ]
            listed = b"BL" + struct.pack(">II", version, len(tokens)) + b"".join(tokens)
            digests[version] = hashlib.sha256(listed).digest()[:4].hex()
        return digests[version]

    def blacklist_whole(self, tid):
        """Whether the terminal says it has the newest list but its digest (bld= in its
        heartbeat) is another: then it is offered the whole list again."""
        newest = self.versions(tid)["blacklist"]
        row = self._db.execute("SELECT status FROM heartbeats WHERE tid = ?", (tid,)).fetchone()
        if not newest or row is None:
            return False
        fields = dict(p.split("=", 1) for p in row[0].split(";") if "=" in p)
        if fields.get("bl") != str(newest) or len(fields.get("bld", "")) != 8:
            return False
        return fields["bld"] != self.blacklist_digest(newest)

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

    def store_faults(self, tid, text, caller=None):
        """Keep a terminal's fault log, within its bound (the oldest kept, the rest
        counted in faults_dropped)."""
        self._terminal(tid)

        def work(db):
            self._take(db, caller)
            count = db.execute("SELECT COUNT(*) FROM faults WHERE tid = ?", (tid,)).fetchone()
            if count[0] >= MAX_FAULT_LOGS_PER_TERMINAL:
                db.execute(
                    "UPDATE terminals SET faults_dropped = faults_dropped + 1 WHERE tid = ?",
                    (tid,),
                )
                return
            db.execute(
                "INSERT INTO faults VALUES (?, ?, ?)",
                (tid, text[:MAX_FAULT_LOG_BYTES], int(time.time())),
            )

        self._transaction(work)

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
        self._beat(self._db, tid, status, int(time.time()))

    @staticmethod
    def _beat(db, tid, status, now):
        db.execute("INSERT OR REPLACE INTO heartbeats VALUES (?, ?, ?)", (tid, status[:200], now))

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
            "alerts": self.alerts(),
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
