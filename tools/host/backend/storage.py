"""The ledger's storage behind one interface, with an implementation per database:
SQLite (a file: `--db ledger.db`, the embedded default) and PostgreSQL (`--db
postgresql://...`, several processes on several hosts). One schema, the numbered SQL files
in migrations/, applied at start; the terminals and what they last said.

What the rest of the back end sees of a store (sqlite_store.SQLiteStore,
postgres_store.PostgresStore):

    store.db                 runs one statement outside a transaction: .execute(sql, params)
                             gives rows (fetchone, fetchall, iteration, rowcount)
    store.transaction(work)  work(db) inside one write transaction, committed or rolled back
    store.for_update         the suffix that locks a terminal's row for its transaction
                             (SQLite: nothing, BEGIN IMMEDIATE locks the whole ledger)
    store.close()

Statements are written once, in what both databases take, with `?` for parameters (the
PostgreSQL store turns them into `%s`). A store that cannot reach its database raises
StoreUnavailable (the API answers 503; the terminal sends again later).

Migrations are plain numbered SQL files rather than a tool such as Alembic: the back end
speaks SQL through its drivers with no ORM to generate them from, the schema is a dozen
tables, and each file is applied with its version row in one transaction (both databases
roll back DDL), under a lock, so workers starting together apply it once. A new table is
a new file, NNNN_what.sql, in the common SQL.
"""

import os
import re
import time

from tools.host.backend.errors import IngestError, LedgerError, RegistrationError
from tools.host.backend.keyring import as_keyring

MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")


class StoreUnavailable(LedgerError):
    """The database did not answer (restarting, unreachable): nothing was changed by the
    work that failed; try again later."""


def is_url(locator):
    return locator.startswith(("postgresql://", "postgres://"))


def open_store(locator, mode="create"):
    """The store of `--db`: a PostgreSQL URL or an SQLite file. `mode`: "create" makes the
    ledger's tables when missing (registering the first terminal), "write" changes an
    existing ledger only, "read" never writes (the reports): a mistyped --db must not leave
    a new, empty ledger behind. Migrations are applied unless reading."""
    if is_url(locator):
        from tools.host.backend.postgres_store import PostgresStore

        store = PostgresStore(locator, mode)
    else:
        from tools.host.backend.sqlite_store import SQLiteStore

        store = SQLiteStore(locator, mode)
    try:
        if mode == "read":
            missing = pending(store)
            if missing:
                raise LedgerError(
                    "%s is a ledger of an older version (schema %s not applied): run "
                    "tools/backend serve on it once" % (store.label, missing[0])
                )
        else:
            migrate(store)
    except BaseException:
        store.close()
        raise
    return store


def migration_files():
    """[(version, name, statements)] of migrations/NNNN_name.sql, by version."""
    found = []
    for name in sorted(os.listdir(MIGRATIONS)):
        matched = re.match(r"(\d{4})_(\w+)\.sql$", name)
        if not matched:
            continue
        with open(os.path.join(MIGRATIONS, name)) as source:
            text = re.sub(r"--[^\n]*", "", source.read())
        statements = [s.strip() for s in text.split(";") if s.strip()]
        found.append((int(matched.group(1)), matched.group(2), statements))
    return found


def applied(store, db):
    """The versions a ledger has applied, or None when it has no migrations table."""
    if not store.has_table(db, "schema_migrations"):
        return None
    return {row[0] for row in db.execute("SELECT version FROM schema_migrations")}


def pending(store):
    """The migrations a ledger has not applied, by version."""
    done = applied(store, store.db) or set()
    return [version for version, _, _ in migration_files() if version not in done]


def migrate(store):
    """Apply every migration not applied yet, each in one transaction with its version row,
    under the store's migration lock (several workers may start at once)."""

    def work(db):
        store.lock_migrations(db)
        done = applied(store, db)
        if done is None:
            if store.mode == "write" and not store.has_table(db, "terminals"):
                raise LedgerError(store.no_ledger())
            store.adopt(db)  # a ledger made before migrations existed
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, "
                "name TEXT NOT NULL, applied BIGINT NOT NULL)"
            )
            done = set()
        for version, name, statements in migration_files():
            if version in done:
                continue
            for statement in statements:
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, int(time.time()))
            )

    store.transaction(work)


class Storage:
    """LedgerDB's storage: the store it was opened on, and the terminals."""

    def __init__(self, locator, bdk=None, mode="create"):
        self._store = open_store(locator, mode)
        self._path = self._store.label
        self._keys = {}  # IK ID -> (request key, reply key): derived once per terminal
        self._digests = {}  # blacklist version -> digest of the whole list at it
        self._bdk = as_keyring(bdk)  # every BDK, by BDK ID (keyring.py), or None

    @property
    def _db(self):
        return self._store.db

    def _transaction(self, work):
        return self._store.transaction(work)

    @property
    def commit_seconds(self):
        """Time spent in COMMITs, and how many (tools/bench ingest reads them)."""
        return self._store.commit_seconds

    @property
    def commits(self):
        return self._store.commits

    def close(self):
        self._store.close()

    def add_terminal(self, tid, ik_id, merchants=(), replace=False):
        """Register a terminal (its IK ID) and the merchants of its config. The same ID
        with another IK ID is refused unless `replace`: then the old terminal's records
        and quarantine move to TID@OLDIKID (nothing is deleted) and its counters, ack and
        request counter start afresh."""
        if len(ik_id) != 8:
            raise ValueError("IK ID must be 8 bytes")
        ik_id = bytes(ik_id)

        def work(db):
            db.execute(
                "INSERT INTO terminals (tid, ik_id, registered) VALUES (?, ?, ?) "
                "ON CONFLICT (tid) DO NOTHING",
                (tid, ik_id, int(time.time())),
            )
            row = db.execute(
                "SELECT ik_id FROM terminals WHERE tid = ?" + self._store.for_update, (tid,)
            ).fetchone()
            if bytes(row[0]) != ik_id:
                if not replace:
                    raise RegistrationError(
                        "terminal %s is registered with IK ID %s; give --replace to start it "
                        "afresh with %s" % (tid, bytes(row[0]).hex(), ik_id.hex())
                    )
                retired = "%s@%s" % (tid, bytes(row[0]).hex())
                for table in ("records", "quarantine"):
                    db.execute("UPDATE %s SET tid = ? WHERE tid = ?" % table, (retired, tid))
                db.execute(
                    "UPDATE terminals SET ik_id = ?, ack = 0, nonce = 0 WHERE tid = ?",
                    (ik_id, tid),
                )
            for number, merchant_id, name in merchants:
                self._name_merchant(db, tid, number, merchant_id, name)

        self._transaction(work)

    @staticmethod
    def _name_merchant(db, tid, number, merchant_id, name):
        db.execute(
            "INSERT INTO merchants (tid, number, merchant_id, name) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (tid, number) DO UPDATE SET merchant_id = excluded.merchant_id, "
            "name = excluded.name",
            (tid, number, merchant_id, name),
        )

    def clear_terminal(self, tid):
        """An operator's word that a suspected terminal was investigated: its next records
        are money again (those held stay in quarantine). Returns the reason it was held,
        or None if it was not suspected."""
        self._terminal(tid)

        def work(db):
            row = db.execute(
                "SELECT suspected FROM terminals WHERE tid = ?" + self._store.for_update, (tid,)
            ).fetchone()
            db.execute("UPDATE terminals SET suspected = NULL WHERE tid = ?", (tid,))
            return row[0]

        return self._transaction(work)

    def alerts(self):
        """Per terminal: why it is suspected of being cloned (if it is), and how many
        forged frames and fault logs its bounds dropped."""
        out = {}
        for tid, suspected, quarantine, faults in by_terminal(
            self._db.execute(
                "SELECT tid, suspected, quarantine_dropped, faults_dropped FROM terminals "
                "WHERE suspected IS NOT NULL OR quarantine_dropped > 0 OR faults_dropped > 0"
            )
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

    def heartbeat(self, tid, status):
        """Keep the terminal's latest status line (bounded), as it sent it."""
        self._transaction(lambda db: self._beat(db, tid, status, int(time.time())))

    @staticmethod
    def _beat(db, tid, status, now):
        db.execute(
            "INSERT INTO heartbeats (tid, status, received) VALUES (?, ?, ?) "
            "ON CONFLICT (tid) DO UPDATE SET status = excluded.status, "
            "received = excluded.received",
            (tid, status[:200], now),
        )

    def heartbeats(self):
        """{terminal: {"status": {name: value}, "received": unix}}"""
        out = {}
        for tid, status, received in by_terminal(
            self._db.execute("SELECT tid, status, received FROM heartbeats")
        ):
            fields = dict(p.split("=", 1) for p in status.split(";") if "=" in p)
            out[tid] = {"status": fields, "received": received}
        return out

    def merchant_numbers(self):
        """Every merchant number the ledger knows, registered or seen in a record."""
        rows = self._db.execute(
            "SELECT number FROM merchants UNION SELECT merchant FROM records ORDER BY 1"
        )
        return [row[0] for row in rows]


def by_terminal(rows):
    """Rows ordered by their first column, a terminal ID, by code point: the same order on
    every store (a database's ORDER BY on text follows its collation)."""
    return sorted(rows, key=lambda row: row[0])
