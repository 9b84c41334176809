"""The SQLite store: one ledger file (WAL), one connection per thread, write transactions
that take the file's write lock from their first statement (BEGIN IMMEDIATE)."""

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from urllib.parse import quote

from tools.host.backend.errors import LedgerError
from tools.host.backend.storage import StoreUnavailable

_MODES = {"create": "rwc", "write": "rw", "read": "ro"}
# Columns a ledger made before migrations may lack (adopt() adds them).
_LEGACY_COLUMNS = (
    ("nonce", "INTEGER NOT NULL DEFAULT 0"),
    ("quarantine_dropped", "INTEGER NOT NULL DEFAULT 0"),
    ("faults_dropped", "INTEGER NOT NULL DEFAULT 0"),
    ("suspected", "TEXT"),
)


def create_private(path):
    """Create a file 0600 (whatever the umask) if it does not exist yet."""
    if path not in ("", ":memory:") and not os.path.exists(path):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


class SQLiteStore:
    name = "sqlite"
    for_update = ""  # BEGIN IMMEDIATE holds the whole ledger's write lock

    def __init__(self, path, mode="create"):
        if mode != "create":
            _check_ledger_file(path)
        else:
            try:
                # SQLite gives the -wal and -shm files the database file's mode: 0600 here.
                create_private(path)
            except OSError as exc:
                raise LedgerError(_cannot_open(path, exc)) from None
        self.label = path
        self.mode = mode
        self._uri = "file:%s?mode=%s" % (quote(os.path.abspath(path)), _MODES[mode])
        self._local = threading.local()
        self._connections = []
        self._connections_lock = threading.Lock()
        self.commit_seconds = 0.0
        self.commits = 0
        self._writer = None  # the writer lock's file, opened at the first write
        self._writer_path = None
        if mode != "read" and path not in ("", ":memory:"):
            self._writer_path = path + "-writer"
        # Re-entrant: a transaction begun inside another on the same thread is SQLite's error
        # to report ("within a transaction"), not a deadlock here.
        self._writer_thread_lock = threading.RLock()
        self._writer_depth = 0
        try:
            db = self.db
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            if (tables and "terminals" not in tables) or (mode != "create" and not tables):
                raise LedgerError("%s is not a OneTill ledger (it has no terminals)" % path)
            if mode != "read":
                db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            self.close()
            raise LedgerError(_cannot_open(path, exc)) from None
        except LedgerError:
            self.close()
            raise

    @property
    def db(self):
        """This thread's connection (sqlite3 connections are not shared between threads)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(
                self._uri, uri=True, timeout=30, check_same_thread=False, isolation_level=None
            )
            if self.mode != "read":
                db.execute("PRAGMA synchronous=FULL")  # a stored record survives a power cut
            self._local.db = db
            with self._connections_lock:
                self._connections.append(db)
        return db

    def transaction(self, work):
        db = self.db
        if getattr(self._local, "grouped", False):
            return _savepoint(db, lambda: work(db))  # inside transactions(): part of a group
        return self._write(db, lambda: work(db))

    def transactions(self, works):
        """Group commit (tools/host/backend/writer.py): every work() of `works` in one write
        transaction, each under a savepoint of its own, and one COMMIT (one fsync) for
        them all. [(True, result) or (False, exception)] in order, once the COMMIT has
        returned: a work that raises is rolled back to its savepoint, the others stand.
        Raises, with nothing stored, if the transaction itself fails (BEGIN, COMMIT, or an
        error that ended it, such as a full disk). A work's own transaction() calls are
        savepoints inside its own."""
        db = self.db

        def group():
            outcomes = []
            self._local.grouped = True
            try:
                for work in works:
                    try:
                        outcomes.append((True, _savepoint(db, work)))
                    except Exception as exc:
                        if not db.in_transaction:
                            raise  # SQLite ended the whole transaction: none of it stands
                        outcomes.append((False, exc))
            finally:
                self._local.grouped = False
            return outcomes

        return self._write(db, group)

    def _write(self, db, work):
        with self._writer_lock():
            return self._write_locked(db, work)

    @contextlib.contextmanager
    def _writer_lock(self):
        """The ledger's writer lock, taken before SQLite's: a thread lock within the process
        and an flock(2) on LEDGER-writer between processes (serve --workers N, the CLI).

        SQLite's own lock is enough for correctness, but a writer that finds it taken waits
        in SQLite's busy handler, which sleeps 1 ms growing to 100 ms between tries: with
        two workers each committing groups, one waited for the other up to 450 ms while
        the ledger was free most of that time (tools/bench uplink). A process waiting in
        flock(2) is woken when the lock is released. Writers that do not take it (an older
        back end, the sqlite3 shell) still meet in SQLite's lock."""
        if self._writer_path is None:
            yield
            return
        with self._writer_thread_lock:
            if self._writer is None:
                self._writer = os.open(self._writer_path, os.O_RDWR | os.O_CREAT, 0o600)
            if not self._writer_depth:
                fcntl.flock(self._writer, fcntl.LOCK_EX)
            self._writer_depth += 1
            try:
                yield
            finally:
                self._writer_depth -= 1
                if not self._writer_depth:
                    fcntl.flock(self._writer, fcntl.LOCK_UN)

    def _write_locked(self, db, work):
        db.execute("BEGIN IMMEDIATE")
        try:
            result = work()
            committing = time.perf_counter()
            db.execute("COMMIT")
            self.commit_seconds += time.perf_counter() - committing
            self.commits += 1
        except sqlite3.OperationalError as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreUnavailable("the ledger %s is busy: %s" % (self.label, exc)) from None
            raise
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return result

    def close(self):
        with self._connections_lock:
            for db in self._connections:
                db.close()
            self._connections = []
        self._local = threading.local()
        with self._writer_thread_lock:
            if self._writer is not None:
                os.close(self._writer)
                self._writer = None

    @staticmethod
    def has_table(db, name):
        row = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    def lock_migrations(self, db):
        pass  # BEGIN IMMEDIATE: one writer at a time already

    def no_ledger(self):
        return "no ledger at %s (tools/backend terminals add --db FILE makes one)" % self.label

    def adopt(self, db):
        """A ledger made before migrations existed: the columns it may lack, so that the
        first migration's CREATE ... IF NOT EXISTS finds the tables as it makes them."""
        if self.has_table(db, "terminals"):
            have = {row[1] for row in db.execute("PRAGMA table_info(terminals)")}
            for name, kind in _LEGACY_COLUMNS:
                if name not in have:
                    db.execute("ALTER TABLE terminals ADD COLUMN %s %s" % (name, kind))
        if self.has_table(db, "faults"):
            have = {row[1] for row in db.execute("PRAGMA table_info(faults)")}
            if "seq" not in have:
                db.execute("ALTER TABLE faults ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")
                db.execute("UPDATE faults SET seq = rowid")


def _savepoint(db, work):
    """work() under a savepoint of the open transaction: rolled back to it if it raises."""
    db.execute("SAVEPOINT work")
    try:
        result = work()
    except BaseException:
        if db.in_transaction:  # an error that ended the transaction has rolled it back
            db.execute("ROLLBACK TO work")
            db.execute("RELEASE work")
        raise
    db.execute("RELEASE work")
    return result


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
