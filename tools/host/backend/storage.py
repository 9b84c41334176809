"""The ledger's storage: one SQLite (WAL) file, its schema, one connection per thread, write
transactions, the terminals and what they last said."""

import os
import re
import sqlite3
import threading
import time
from urllib.parse import quote

from tools.host.backend.errors import IngestError, LedgerError, RegistrationError
from tools.host.backend.keyring import as_keyring

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
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS key_generations (
    tid TEXT NOT NULL, generation INTEGER NOT NULL, ik_id BLOB NOT NULL, offered INTEGER NOT NULL,
    installed INTEGER, PRIMARY KEY (tid, generation));
CREATE TABLE IF NOT EXISTS auto_blocks (
    tid TEXT NOT NULL, counter INTEGER NOT NULL, token BLOB NOT NULL, lifted INTEGER NOT NULL,
    status TEXT NOT NULL, blacklist_version INTEGER, decided INTEGER,
    PRIMARY KEY (tid, counter));
"""
_TABLES = frozenset(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", _SCHEMA))
# How a ledger is opened: "create" makes the file and its tables when missing (registering
# the first terminal); "write" changes an existing ledger only; "read" never writes (the
# reports): a mistyped path must not leave a new, empty ledger behind.
_MODES = {"create": "rwc", "write": "rw", "read": "ro"}


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


class SQLiteStorage:
    """The connection, transactions and terminal rows LedgerDB is built on."""

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
        self._bdk = as_keyring(bdk)  # every BDK, by BDK ID (keyring.py), or None
        self.commit_seconds = 0.0  # spent in ingest's COMMITs, and how many
        self.commits = 0

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
