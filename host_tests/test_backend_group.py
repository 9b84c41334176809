"""Group commit (tools/host/backend/writer.py): on SQLite a worker's writes that wait
together go into one transaction and one COMMIT, a savepoint each. Many terminals' batches
and retries racing their originals are each stored once with the right acks, on either
store; a batch that fails after writing leaves nothing behind and does not take the others
of its group down."""

import asyncio
import struct
import zlib

import httpx

from tools.host.backend import LedgerDB, make_app
from tools.host.backend.sqlite_store import SQLiteStore
from tools.host.benchuplink import BDK, HEARTBEAT, ik_id_of, sealed_frames, tid_of
from tools.host.linkclient import TerminalSigner

TERMINALS = 20
RECORDS = 20  # a batch
RETRIED = 15  # terminals whose batch is sent twice more, signed as a retry is
FORGED = 3  # the terminal with a forged frame in its batch
FAILING = 7  # the terminal whose batch fails after its records are written


def forge(frame):
    """The frame with its ciphertext altered and its CRC made good again: it parses, and
    its tag does not check."""
    body = bytearray(frame[:-4])
    body[10] ^= 0x01
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


def test_concurrent_batches_and_racing_retries_are_stored_once(ledger_at, monkeypatch):
    db = LedgerDB(ledger_at, BDK)
    try:
        for number in range(TERMINALS):
            db.add_terminal(tid_of(number), ik_id_of(number))
        batches = {}
        for number in range(TERMINALS):
            frames = sealed_frames(BDK, ik_id_of(number), RECORDS)
            if number == FORGED:
                frames[5] = (frames[5][0], forge(frames[5][1]))
            batches[number] = (frames[-1][0], b"".join(frame for _, frame in frames))
        # A batch that fails in the middle of its transaction: its records and ack are
        # written when its heartbeat is kept, and the heartbeat raises.
        beat = db._beat

        def failing_beat(connection, tid, status, now):
            if tid == tid_of(FAILING):
                raise RuntimeError("the disk is on fire")
            return beat(connection, tid, status, now)

        monkeypatch.setattr(db, "_beat", failing_beat)
        groups = []
        store = db._store
        if store.name == "sqlite":
            transactions = store.transactions

            def spy(works):
                if not groups:  # the first group waits, so that the others queue behind it
                    import time

                    time.sleep(0.1)
                groups.append(len(works))
                return transactions(works)

            monkeypatch.setattr(store, "transactions", spy)
        signers = {number: TerminalSigner(BDK, ik_id_of(number)) for number in range(TERMINALS)}
        app = make_app(db)

        async def send(client, number):
            path = "/v1/terminals/%s/records" % tid_of(number)
            body = batches[number][1]
            headers = signers[number].headers("POST", path, body, status=HEARTBEAT)
            headers["Content-Type"] = "application/octet-stream"
            reply = await client.post(path, content=body, headers=headers)
            if reply.status_code == 500:  # starlette's plain "Internal Server Error"
                return number, 500, None
            return number, reply.status_code, reply.json()

        async def flood():
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
                senders = [number for number in range(TERMINALS)]
                senders += [number for number in range(RETRIED) for _ in range(2)]
                first = await asyncio.gather(*(send(client, n) for n in senders))
                # Every batch once more, now that the first round is committed: duplicates.
                again = await asyncio.gather(*(send(client, n) for n in range(TERMINALS)))
                return first, again

        first, again = asyncio.run(flood())
        assert len(first) == 50
        if store.name == "sqlite":
            assert max(groups) > 1  # the writes waiting together were committed together
        stored = {}
        for number, status, reply in first:
            if number == FAILING:
                assert status == 500
                continue
            # A copy whose request counter a later-signed copy overtook is told so (401,
            # stale); every other copy is answered with the batch's whole ack.
            assert status in (200, 401), (number, status, reply)
            if status == 200:
                assert reply["ack"] == batches[number][0]
                assert reply["stored"] + reply["duplicates"] + reply["quarantined"] == RECORDS
                stored[number] = stored.get(number, 0) + reply["stored"]
        assert stored == {
            n: RECORDS - (1 if n == FORGED else 0) for n in range(TERMINALS) if n != FAILING
        }
        for number, status, reply in again:
            if number == FAILING:
                assert status == 500
                continue
            assert status == 200 and reply["stored"] == 0, (number, reply)
            assert reply["ack"] == batches[number][0]
        rows = db._db.execute(
            "SELECT tid, COUNT(*), COUNT(DISTINCT counter) FROM records GROUP BY tid"
        ).fetchall()
        assert sorted(rows) == sorted(
            (tid_of(n), RECORDS - (n == FORGED), RECORDS - (n == FORGED))
            for n in range(TERMINALS)
            if n != FAILING
        )
        # The failing batch left nothing: no record, no ack, no request counter taken, and
        # the forged frame is in its terminal's quarantine once.
        row = db._db.execute(
            "SELECT ack, nonce FROM terminals WHERE tid = ?", (tid_of(FAILING),)
        ).fetchone()
        assert tuple(row) == (0, 0)
        quarantine = db._db.execute("SELECT tid, COUNT(*) FROM quarantine GROUP BY tid")
        assert [tuple(r) for r in quarantine] == [(tid_of(FORGED), 1)]
    finally:
        db.close()


def test_a_failing_write_is_rolled_back_alone_and_a_nested_one_to_its_savepoint(tmp_path):
    store = SQLiteStore(str(tmp_path / "ledger.db"))
    try:
        store.db.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")

        def put(x):
            return lambda: store.db.execute("INSERT INTO t VALUES (?)", (x,)).rowcount

        def fails_after_writing():
            store.db.execute("INSERT INTO t VALUES (2)")
            raise ValueError("refused")

        def recovers_from_a_nested_failure():
            store.db.execute("INSERT INTO t VALUES (4)")
            try:
                store.transaction(lambda db: (db.execute("INSERT INTO t VALUES (5)"), 1 / 0))
            except ZeroDivisionError:
                pass
            return "kept"

        def duplicate():  # the unique key refuses it; the group goes on
            store.db.execute("INSERT INTO t VALUES (1)")

        commits = store.commits
        outcomes = store.transactions(
            [put(1), fails_after_writing, put(3), recovers_from_a_nested_failure, duplicate]
        )
        assert store.commits == commits + 1  # one COMMIT for the group
        assert outcomes[0] == (True, 1) and outcomes[2] == (True, 1)
        assert outcomes[1][0] is False and isinstance(outcomes[1][1], ValueError)
        assert outcomes[3] == (True, "kept")
        assert outcomes[4][0] is False and "UNIQUE" in str(outcomes[4][1])
        assert [row[0] for row in store.db.execute("SELECT x FROM t ORDER BY x")] == [1, 3, 4]
        assert not store.db.in_transaction
    finally:
        store.close()


def test_writers_of_every_process_take_the_ledgers_writer_lock_first(tmp_path):
    """The lock other processes wait on in flock(2) (woken at its release) rather than in
    SQLite's busy handler (sleeps of up to 100 ms): held for the whole of a write
    transaction, grouped or not, and free again after it, whether it commits or fails."""
    import fcntl
    import os

    path = str(tmp_path / "ledger.db")
    store = SQLiteStore(path)
    store.transaction(lambda db: db.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
    other = os.open(path + "-writer", os.O_RDWR)  # another process's view of the lock
    try:

        def held():
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(other, fcntl.LOCK_UN)
            return False

        def work():
            store.db.execute("INSERT INTO t VALUES (NULL)")
            return held()

        assert not held()
        assert store.transaction(lambda db: work()) is True
        assert store.transactions([work, lambda: 1 / 0]) == [(True, True), (False, ANY_ERROR)]
        assert not held()
        try:
            store.transaction(lambda db: 1 / 0)
        except ZeroDivisionError:
            pass
        assert not held()
        # Waiting for it: a write of this process waits while another process holds it.
        fcntl.flock(other, fcntl.LOCK_EX)
        import threading

        done = threading.Event()
        writer = threading.Thread(
            target=lambda: (store.transaction(lambda db: db.execute("DELETE FROM t")), done.set())
        )
        writer.start()
        assert not done.wait(0.3)
        fcntl.flock(other, fcntl.LOCK_UN)
        assert done.wait(10)
        writer.join()
    finally:
        os.close(other)
        store.close()


class _AnyError:
    def __eq__(self, other):
        return isinstance(other, Exception)


ANY_ERROR = _AnyError()
