"""The back end on PostgreSQL (a server of the tests' own, tools/host/pgserver.py): the
README's walkthrough with `serve --workers 4`, the same report as SQLite for the same
traffic, migrations applied once when workers start together, an old SQLite ledger taken
over, one-line refusals for a wrong URL, and PostgreSQL restarted in the middle of a flood
with every sale stored once and no terminal stuck."""

import io
import json
import os
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import zlib

import httpx
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, os.path.join(ROOT, "tools", "emu"))

from test_backend import BDK, IK_ID, MERCHANTS, Terminal  # noqa: E402

from pos.record import CASH, CREDIT, FLAG_SUPERVISOR, REFUND, SALE, VOID, Record  # noqa: E402
from tools.host.backend import LedgerDB, LedgerError, Server, StoreUnavailable  # noqa: E402
from tools.host.backend.postgres_store import POOL_WAIT_S  # noqa: E402
from tools.host.backend.reports import print_alerts, print_report  # noqa: E402
from tools.host.backend.storage import migration_files  # noqa: E402
from tools.host.bench import ingest_frames  # noqa: E402
from tools.host.linkclient import TerminalSigner  # noqa: E402

OCTETS = {"Content-Type": "application/octet-stream"}


def backend(*args):
    return subprocess.run(
        [sys.executable, "-m", "tools.host.backend", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def one_line_refusal(result, text):
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("tools/backend: ") and result.stderr.count("\n") == 1
    assert text in result.stderr, result.stderr


def test_the_readme_walkthrough_on_postgresql_with_four_workers(tmp_path, postgres_server):
    """README "The back end" and "The downlink", command by command, with --db a
    postgresql:// URL and four worker processes; the terminal is the real MicroPython
    uplink client (the wire format is the terminal's)."""
    from test_uplink_tls import BDK as TLS_BDK
    from test_uplink_tls import IK_ID as TLS_IK_ID
    from test_uplink_tls import run_uplink

    url = postgres_server.new_database()
    keys = tmp_path / "keys"
    ok(backend("certs", "--out", keys))
    merchants = tmp_path / "merchants.json"
    merchants.write_text(
        json.dumps(
            {
                "merchants": [
                    {
                        "number": 1,
                        "merchant_id": "100000000000001",
                        "name": "Noodle Bar",
                        "currency": "EUR",
                    }
                ]
            }
        )
    )
    ok(backend("terminals", "add", "--db", url, "--tid", "T0007", "--ik-id", TLS_IK_ID.hex(),
               "--merchants", merchants))  # fmt: skip
    bdk_file = tmp_path / "bdk.key"
    bdk_file.write_text(TLS_BDK.hex())
    server = Server(url, str(bdk_file), str(keys), workers=4, timeout_s=60)
    try:
        with open("/proc/%d/task/%d/children" % ((server.process.pid,) * 2)) as children:
            assert len(children.read().split()) >= 4  # four worker processes
        out = run_uplink("127.0.0.1", server.port, str(keys / "ca.der"))
        assert "acked 1" in out and "unsent 0" in out  # the terminal's sale, stored
        config = tmp_path / "config.json"
        config.write_text(json.dumps(pushed_config()))
        assert "config 1 for T0007 stored" in ok(
            backend("config", "set", "--db", url, "--terminal", "T0007", config)
        )
        assert "blacklist 1: 1 added" in ok(
            backend("blacklist", "add", "--db", url, "token:0a1b2c3d4e5f")
        )
        assert "command 1 (settle) queued" in ok(
            backend("command", "settle", "--db", url, "--terminal", "T0007")
        )
        # The terminal's side of the downlink, signed as it signs (its counter is past the
        # uplink client's).
        signer = TerminalSigner(TLS_BDK, TLS_IK_ID, nonce=1000)
        trust = ssl.create_default_context(cafile=str(keys / "ca.pem"))
        client = httpx.Client(base_url=server.url, verify=trust, timeout=30)
        path = "/v1/terminals/T0007/versions"
        reply = client.get(path, headers=signer.headers("GET", path, b"", "cfg=0;bl=0;cmd=0"))
        assert reply.status_code == 200 and signer.reply_ok(
            reply.headers["x-onetill-reply"], reply.content
        )
        versions = reply.json()
        assert (versions["config"], versions["blacklist"], versions["commands"]) == (1, 1, 1)
        for kind in ("config", "blacklist?since=0", "commands?since=0"):
            path = "/v1/terminals/T0007/" + kind
            reply = client.get(path, headers=signer.headers("GET", path))
            assert reply.status_code == 200 and len(reply.content) >= 48, (kind, reply.text)
        path = "/v1/terminals/T0007/faults"
        log = b"E boot: a fault worth seeing\n"
        reply = client.post(
            path, content=log, headers=dict(OCTETS, **signer.headers("POST", path, log))
        )
        assert reply.status_code == 200
        client.close()
    finally:
        server.stop()
    text = ok(backend("report", "--db", url))
    assert text.startswith("Terminal T0007\n")
    assert "  Merchant 1  Noodles  (MID 42)" in text  # as the pushed config renamed it
    sales = next(line for line in text.splitlines() if line.startswith("    Sales"))
    assert sales.split() == ["Sales", "1", "EUR", "7.00"]
    assert (
        "Downlink: config 1 (terminal has 0), blacklist 1 (has 0), commands 1 settle waiting"
        in text
    )
    report = json.loads(ok(backend("report", "--db", url, "--json")))
    assert report["downlink"]["T0007"]["fault_log"] == log.decode()
    assert "was not suspected" in ok(backend("terminals", "clear", "--db", url, "--tid", "T0007"))
    ok(backend("blacklist", "remove", "--db", url, "token:0a1b2c3d4e5f"))


def pushed_config():
    """A config as `config set` takes it (merchants and cashiers; version set by the back end)."""
    from test_app_downlink import pushed_doc

    doc = pushed_doc(1)
    del doc["version"]
    return doc


def traffic():
    """A day's traffic as (terminal, body) batches and operator steps, made once so that each
    store is given exactly the same bytes: two terminals, sales, a void, a refund, a
    supervised sale, a Z, a forged frame, a clone, the downlink and a fault log."""
    steps = []
    first = Terminal()
    first.book(SALE, 1, 1250)
    first.book(SALE, 1, 800, CREDIT)
    first.book(SALE, 2, 450)
    first.book(VOID, 1, 800, CREDIT, reference=2)
    first.book(REFUND, 2, 50, reference=3)
    steps.append(("ingest", "T0001", first.batch()))
    first.ledger.book(
        Record(SALE, 2, 9000, 978, method=CASH, reason=11, flags=FLAG_SUPERVISOR, reference=9)
    )
    first.ledger.book(first.ledger.totals.settlement(1, 978))
    steps.append(("ingest", "T0001", first.batch()))  # the first five again, and two more
    # A second terminal under a lower-case ID (orders differ there: "a0002" comes before
    # "T0001" in an en-US collation, after it by code point as in SQLite), with
    # one frame altered in flight (its CRC made good again): quarantined, not money.
    other = Terminal()
    other.book(SALE, 1, 300)
    other.book(SALE, 1, 400, CREDIT)
    frames = [bytearray(frame) for _, frame in other.ledger.queue.unsent()]
    frames[0][10] ^= 0x40
    frames[0][-4:] = zlib.crc32(bytes(frames[0][:-4])).to_bytes(4, "little")
    steps.append(("ingest", "a0002", b"".join(bytes(f) for f in frames)))
    # A copy of the second terminal's keys selling another sale under its counter 2.
    clone = Terminal()
    clone.book(SALE, 1, 111)
    clone.book(SALE, 2, 999)
    steps.append(("ingest", "a0002", clone.batch()))
    steps.append(("beat", "T0001", "depth=0;oldest_s=-1;counter=7;heap=30000;fw=0.1.0;cmd=1"))
    steps.append(("beat", "a0002", "depth=2;oldest_s=40;counter=2;heap=29000;fw=0.1.0"))
    return steps


def play(db, steps):
    db.add_terminal("T0001", IK_ID, MERCHANTS)
    db.add_terminal("a0002", IK_ID, [(1, "100000000000009", "Zed's")])
    answers = []
    for step, tid, payload in steps:
        if step == "ingest":
            answers.append(db.ingest(tid, payload))
        else:
            db.heartbeat(tid, payload)
    db.set_config("T0001", pushed_config())
    db.change_blacklist(add=[b"\x01" * 6, b"\x02" * 6])
    db.change_blacklist(remove=[b"\x01" * 6])
    db.add_command("T0001", "settle")
    db.add_command("a0002", "faultlog")
    db.store_faults("a0002", "fault one")
    db.store_faults("a0002", "fault two")
    db.add_terminal("T0003", bytes.fromhex("0102030405060708"))
    return answers


def test_the_report_is_the_same_on_both_stores(tmp_path, postgres_server, monkeypatch):
    """The same traffic on SQLite and on PostgreSQL: the same answers to every batch, the
    same report (JSON, text, per merchant), to the byte."""
    monkeypatch.setattr(time, "time", lambda: 1_790_000_000.0)  # the same "received" times
    steps = traffic()
    seen = []
    postgres = postgres_server.new_database(icu_locale="en-US")  # as many servers are set up
    for where in (str(tmp_path / "ledger.db"), postgres):
        db = LedgerDB(where, BDK)
        try:
            answers = play(db, steps)
            report = db.report()
            text = io.StringIO()
            print_alerts(report, text)
            print_report(report, text)
            seen.append(
                (answers, json.dumps(report), text.getvalue(), json.dumps(db.report(merchant=2)))
            )
        finally:
            db.close()
    sqlite_seen, postgres_seen = seen
    assert sqlite_seen == postgres_seen
    report = json.loads(sqlite_seen[1])
    assert [e["terminal"] for e in report["merchants"]] == ["T0001", "T0001", "a0002"]
    assert "clone" in report["alerts"]["a0002"]["suspected"] and report["quarantined"] == 2
    assert report["downlink"]["a0002"]["fault_log"] == "fault two"
    assert sqlite_seen[2].startswith("SUSPECTED CLONE: terminal a0002")


def test_workers_starting_together_apply_each_migration_once(postgres_server):
    """Six processes' worth of LedgerDBs opening a new database at the same moment: each
    migration is applied once (the advisory lock), and none of them fails."""
    url = postgres_server.new_database()
    start = threading.Barrier(6)
    errors, opened = [], []

    def open_one():
        start.wait()
        try:
            opened.append(LedgerDB(url))
        except Exception as exc:  # noqa: BLE001 (any failure fails the test below)
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = opened[0]._db.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    assert [row[0] for row in rows] == [version for version, _, _ in migration_files()]
    for db in opened:
        db.close()


# The SQLite schema before migrations (the last one made by `CREATE TABLE IF NOT EXISTS` at
# start), less the columns added since by hand: what an old ledger file holds.
OLD_SCHEMA = """
CREATE TABLE terminals (tid TEXT PRIMARY KEY, ik_id BLOB NOT NULL, ack INTEGER NOT NULL
    DEFAULT 0, registered INTEGER NOT NULL);
CREATE TABLE records (tid TEXT NOT NULL, counter INTEGER NOT NULL, kind INTEGER NOT NULL,
    merchant INTEGER NOT NULL, method INTEGER NOT NULL, amount_minor INTEGER NOT NULL,
    currency INTEGER NOT NULL, time INTEGER NOT NULL, receipt INTEGER NOT NULL,
    reference INTEGER NOT NULL, cashier INTEGER NOT NULL, reason INTEGER NOT NULL,
    flags INTEGER NOT NULL, token BLOB NOT NULL, last_four INTEGER NOT NULL,
    frame BLOB NOT NULL, received INTEGER NOT NULL, PRIMARY KEY (tid, counter));
CREATE TABLE faults (tid TEXT NOT NULL, text TEXT NOT NULL, received INTEGER NOT NULL);
INSERT INTO terminals VALUES ('T0001', x'a1a2a3a4a5a6a7a8', 0, 1700000000);
INSERT INTO faults VALUES ('T0001', 'old fault one', 1700000000);
INSERT INTO faults VALUES ('T0001', 'old fault two', 1700000001);
"""


def test_a_sqlite_ledger_made_before_migrations_is_taken_over(tmp_path, terminal):
    path = str(tmp_path / "old.db")
    old = sqlite3.connect(path)
    old.executescript(OLD_SCHEMA)
    old.close()
    # A report never writes: it says the ledger is older and what to do.
    one_line_refusal(backend("report", "--db", path), "run tools/backend serve on it once")
    db = LedgerDB(path, BDK, mode="write")  # as serve opens it
    try:
        assert db.ingest("T0001", terminal.batch())["stored"] == 5
        db.store_faults("T0001", "new fault")
        assert db.downlink_report()["T0001"]["fault_log"] == "new fault"
        kept = db._db.execute("SELECT text FROM faults ORDER BY seq").fetchall()
        assert [row[0] for row in kept] == ["old fault one", "old fault two", "new fault"]
    finally:
        db.close()
    assert "Sales" in ok(backend("report", "--db", path))


def test_a_wrong_postgresql_url_is_one_line_and_no_password_is_shown(postgres_server):
    port = postgres_server.port
    nowhere = "postgresql://onetill:s3cret@127.0.0.1:1/ledger"
    result = backend("report", "--db", nowhere)
    one_line_refusal(result, "cannot open the ledger postgresql://onetill:***@127.0.0.1:1/")
    assert "s3cret" not in result.stderr
    missing = "postgresql://onetill@127.0.0.1:%d/no_such_database" % port
    one_line_refusal(backend("report", "--db", missing), 'database "no_such_database"')
    empty = postgres_server.new_database()
    for args in (("report",), ("command", "settle", "--terminal", "T1")):
        one_line_refusal(backend(args[0], "--db", empty, *args[1:]), "no ledger in " + empty)
    with pytest.raises(LedgerError, match="no ledger in"):
        LedgerDB(empty, mode="write")
    assert LedgerDB(empty, mode="create").report()["merchants"] == []  # terminals add makes it


@pytest.fixture()
def terminal():
    t = Terminal()
    t.book(SALE, 1, 1250)
    t.book(SALE, 1, 800, CREDIT)
    t.book(SALE, 2, 450)
    t.book(VOID, 1, 800, CREDIT, reference=2)
    t.book(REFUND, 2, 50, reference=3)
    return t


def test_a_stopped_database_is_unavailable_then_heals(postgres_server, terminal):
    """While PostgreSQL is down a batch is refused whole (StoreUnavailable: the API's 503)
    and nothing is half stored; when it is back the same LedgerDB (its pool) carries on."""
    url = postgres_server.new_database()
    db = LedgerDB(url, BDK)
    try:
        db.add_terminal("T0001", IK_ID, MERCHANTS)
        postgres_server.stop_server()
        try:
            with pytest.raises(StoreUnavailable, match="unavailable"):
                db.ingest("T0001", terminal.batch())
        finally:
            postgres_server.start()
        first = db.ingest("T0001", terminal.batch())
        assert first["stored"] == 5 and first["ack"] == terminal.ledger.queue.last_counter
    finally:
        db.close()


FLOOD_TERMINALS = 12
FLOOD_SALES = 60  # per terminal
FLOOD_BATCH = 6
FLOOD_DEADLINE_S = 120


def test_postgresql_restarted_in_a_flood_stores_every_sale_once(tmp_path, postgres_server):
    """Twelve simulated terminals flood two workers with batches (retries resend what was
    not acked); PostgreSQL is restarted (fast shutdown: every connection cut) in the middle.
    Afterwards every sale is stored exactly once, every terminal's queue is empty (none is
    stuck), and requests did meet the restart (503s, nothing worse)."""
    from tools.host.backend import make_certs

    url = postgres_server.new_database()
    make_certs(str(tmp_path))
    (tmp_path / "bdk.key").write_text(BDK.hex())
    fleet = []
    db = LedgerDB(url)
    for number in range(FLOOD_TERMINALS):
        ik_id = b"\xf1\x00" + number.to_bytes(6, "big")
        tid = "F%04d" % number
        db.add_terminal(tid, ik_id)
        fleet.append((tid, ik_id, ingest_frames(BDK, ik_id, FLOOD_SALES)))
    db.close()
    server = Server(url, str(tmp_path / "bdk.key"), str(tmp_path), workers=2, timeout_s=60)
    trust = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    acked = [0] * FLOOD_TERMINALS
    unsent_left = [FLOOD_SALES] * FLOOD_TERMINALS
    failures = []  # (terminal, what) of every request that did not get a 200
    deadline = time.monotonic() + FLOOD_DEADLINE_S

    def run_terminal(index):
        tid, ik_id, frames = fleet[index]
        signer = TerminalSigner(BDK, ik_id)
        path = "/v1/terminals/%s/records" % tid
        unsent = list(frames)
        with httpx.Client(base_url=server.url, verify=trust, timeout=10) as client:
            while unsent and time.monotonic() < deadline:
                body = b"".join(frame for _, frame in unsent[:FLOOD_BATCH])
                try:
                    reply = client.post(
                        path,
                        content=body,
                        headers=dict(OCTETS, **signer.headers("POST", path, body)),
                    )
                except httpx.HTTPError as exc:
                    failures.append((tid, type(exc).__name__))
                    time.sleep(0.2)
                    continue
                if reply.status_code == 200:
                    assert signer.reply_ok(reply.headers["x-onetill-reply"], reply.content)
                    ack = reply.json()["ack"]
                    unsent = [(c, f) for c, f in unsent if c > ack]
                    acked[index] = ack
                    unsent_left[index] = len(unsent)
                    time.sleep(0.01)
                    continue
                failures.append((tid, reply.status_code))
                if reply.status_code == 401 and "last" in reply.text:
                    signer.nonce = max(signer.nonce, reply.json()["last"])
                time.sleep(0.2)

    threads = [threading.Thread(target=run_terminal, args=(i,)) for i in range(FLOOD_TERMINALS)]
    try:
        for thread in threads:
            thread.start()
        # In the middle of the flood: a third of the sales stored, most still to come.
        while sum(FLOOD_SALES - left for left in unsent_left) < FLOOD_SALES * FLOOD_TERMINALS // 3:
            assert time.monotonic() < deadline, "the flood never got going"
            time.sleep(0.02)
        stored_before = sum(FLOOD_SALES - left for left in unsent_left)
        # Down longer than a request waits for a connection (POOL_WAIT_S): the workers
        # answer 503 meanwhile, and the terminals must come back on their own.
        postgres_server.restart(down_s=POOL_WAIT_S + 2)
        for thread in threads:
            thread.join()
    finally:
        server.stop()
    assert unsent_left == [0] * FLOOD_TERMINALS, (unsent_left, failures[-5:])  # none stuck
    assert stored_before < FLOOD_SALES * FLOOD_TERMINALS  # the restart was mid-flood
    assert 503 in {what for _, what in failures}, failures  # and the flood met it
    # Only "unavailable", or a stale counter told in a tagged reply; never a server error.
    assert {what for _, what in failures} <= {503, 401}, failures
    db = LedgerDB(url, mode="read")
    try:
        rows = db._db.execute("SELECT COUNT(*), COUNT(DISTINCT (tid, counter)) FROM records")
        assert rows.fetchone() == (FLOOD_TERMINALS * FLOOD_SALES,) * 2
        (entry_count,) = db._db.execute("SELECT COUNT(*) FROM quarantine").fetchone()
        assert entry_count == 0
        sales = sum(entry["sales_count"] for entry in db.report()["merchants"])
        assert sales == FLOOD_TERMINALS * FLOOD_SALES
        for index, (_, _, frames) in enumerate(fleet):
            assert acked[index] == frames[-1][0]
    finally:
        db.close()
