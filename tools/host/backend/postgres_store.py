"""The PostgreSQL store: psycopg 3 and its connection pool, for several worker processes on
several hosts over one database.

Transactions are READ COMMITTED; a batch locks its terminal's row first (SELECT ... FOR
UPDATE), so two copies of one terminal's batch, on any worker of any host, run one after
the other, while different terminals' batches run side by side. (terminal, counter) is the
records' primary key: exactly-once holds in the database whatever the code above it does.

When the server goes away (a restart, a failover), a connection breaks: work that broke
before its COMMIT was sent changed nothing, and is tried once more on a checked
connection; if the server is still away it ends in StoreUnavailable (the API's 503, and
the terminal sends again later). Work whose COMMIT was sent is never repeated here: it may
have been stored, and the terminal's next copy is answered from the ledger.
"""

import re
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg_pool

from tools.host.backend.errors import LedgerError
from tools.host.backend.storage import StoreUnavailable

POOL_MIN = 1
POOL_MAX = 8  # per process: 4 workers on 2 hosts hold at most 64 of the server's 100
POOL_WAIT_S = 5  # a request waits this long for a connection, then 503
CONNECT_TIMEOUT_S = 5
_MIGRATION_LOCK = 0x4F6E6554  # "OneT": the advisory lock migrations take
_PLACEHOLDER = re.compile(r"\?")


def redacted(url):
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc="%s:***@%s" % (user, netloc[1])))


class _Rows:
    """A statement's rows, read whole (the connection goes back to the pool at once)."""

    def __init__(self, rows, rowcount):
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self):
        return self._rows[0] if self._rows else None

    def fetchall(self):
        return self._rows

    def __iter__(self):
        return iter(self._rows)


class _Connection:
    """One pooled connection inside a transaction, spoken to with `?` placeholders."""

    def __init__(self, connection, translate):
        self._connection = connection
        self._translate = translate

    def execute(self, sql, params=()):
        return self._connection.execute(self._translate(sql), params or None)

    def executemany(self, sql, rows):
        with self._connection.cursor() as cursor:
            cursor.executemany(self._translate(sql), rows)


class _Reader:
    """store.db: each statement on a pooled connection of its own, outside a transaction."""

    def __init__(self, store):
        self._store = store

    def execute(self, sql, params=()):
        def read(connection):
            cursor = connection.execute(sql, params)
            rows = cursor.fetchall() if cursor.description is not None else []
            return _Rows(rows, cursor.rowcount)

        return self._store.transaction(read, begin=False)


class PostgresStore:
    name = "postgresql"
    for_update = " FOR UPDATE"

    def __init__(self, url, mode="create", pool_max=POOL_MAX):
        self.label = redacted(url)
        self.mode = mode
        self.commit_seconds = 0.0
        self.commits = 0
        self._sql = {}
        try:
            # One connection first, so that a wrong URL or a server that is away is one line
            # here (the pool would retry it in the background, and log each try).
            psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S).close()
        except psycopg.Error as exc:
            raise LedgerError(
                "cannot open the ledger %s: %s" % (self.label, _first_line(exc))
            ) from None
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=POOL_MIN,
            max_size=pool_max,
            timeout=POOL_WAIT_S,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            open=False,
            name="onetill",
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except psycopg_pool.PoolTimeout:
            self._pool.close()
            raise LedgerError(
                "cannot open the ledger %s: no connection within %d s"
                % (self.label, CONNECT_TIMEOUT_S)
            ) from None
        self.db = _Reader(self)
        if mode != "create" and not self.has_table(self.db, "terminals"):
            self.close()
            raise LedgerError(self.no_ledger())

    def _translate(self, sql):
        translated = self._sql.get(sql)
        if translated is None:
            translated = self._sql[sql] = _PLACEHOLDER.sub("%s", sql)
        return translated

    def transaction(self, work, begin=True):
        """work(db) in one transaction (begin=False: one statement, autocommitted)."""
        for attempt in (1, 2):
            committing = False
            try:
                with self._pool.connection() as connection:
                    db = _Connection(connection, self._translate)
                    if not begin:
                        return work(db)
                    connection.execute("BEGIN")
                    try:
                        result = work(db)
                        committing = True
                        started = time.perf_counter()
                        connection.execute("COMMIT")
                        self.commit_seconds += time.perf_counter() - started
                        self.commits += 1
                        return result
                    except BaseException:
                        if not connection.broken and not committing:
                            connection.execute("ROLLBACK")
                        raise
            except psycopg_pool.PoolTimeout:
                raise StoreUnavailable(
                    "the ledger %s is unavailable (no connection within %d s)"
                    % (self.label, POOL_WAIT_S)
                ) from None
            except psycopg.OperationalError as exc:
                if committing or attempt == 2:
                    raise StoreUnavailable(
                        "the ledger %s is unavailable: %s" % (self.label, _first_line(exc))
                    ) from None
                # The server went away since this connection was made: every idle one is
                # as stale; the pool checks them before the one more try.
                self._pool.check()

    def close(self):
        self._pool.close()

    @staticmethod
    def has_table(db, name):
        row = db.execute("SELECT to_regclass(?)", (name,)).fetchone()
        return row is not None and row[0] is not None

    def lock_migrations(self, db):
        db.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))

    def no_ledger(self):
        return "no ledger in %s (tools/backend terminals add --db URL makes one)" % self.label

    def adopt(self, db):
        pass  # every PostgreSQL ledger was made by migrations


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
