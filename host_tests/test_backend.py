"""tools/backend: ingest exactly once, quarantine, reports that match the terminal's own
totals, the HTTP API, the CLI, and a TLS server on loopback."""

import io
import json
import os
import ssl
import struct
import subprocess
import sys
import zlib

import httpx
import pytest
from fastapi.testclient import TestClient
from flashregion import Region

from norflash import NorFlash
from pos.derive import derive_initial_key
from pos.journal import Journal
from pos.ledger import Ledger
from pos.record import CASH, CREDIT, FLAG_SUPERVISOR, REFUND, SALE, VOID, Record
from pos.txq import TxQueue
from tools.host.backend import (
    AuthError,
    IngestError,
    LedgerDB,
    RegistrationError,
    Server,
    StaleRequest,
    make_app,
    make_certs,
)
from tools.host.backend.reports import print_report
from tools.host.linkclient import TerminalSigner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BDK = bytes(range(16, 32))
IK_ID = bytes.fromhex("a1a2a3a4a5a6a7a8")
MERCHANTS = [(1, "100000000000001", "Noodle Bar"), (2, "100000000000002", "Tea House")]


class Terminal:
    """A terminal's ledger on the flash model, as the firmware keeps it."""

    def __init__(self):
        flash = NorFlash(16, sector_size=1024)
        queue, log = Region(flash, 0, 8), Region(flash, 8, 8)
        Journal.provision(log, b"storage-key-0003", derive_initial_key(BDK, IK_ID), IK_ID)
        self.ledger = Ledger(TxQueue(queue), log, b"storage-key-0003")

    def book(self, kind, merchant, amount, method=CASH, reference=0):
        self.ledger.book(Record(kind, merchant, amount, 978, method=method, reference=reference))

    def batch(self):
        return b"".join(bytes(frame) for _, frame in self.ledger.queue.unsent())


@pytest.fixture()
def terminal():
    t = Terminal()
    t.book(SALE, 1, 1250)
    t.book(SALE, 1, 800, CREDIT)
    t.book(SALE, 2, 450)
    t.book(VOID, 1, 800, CREDIT, reference=2)
    t.book(REFUND, 2, 50, reference=3)
    return t


@pytest.fixture()
def db(ledger_at):
    """A ledger with T0001 registered, on each store in turn (SQLite, PostgreSQL)."""
    db = LedgerDB(ledger_at, BDK)
    db.add_terminal("T0001", IK_ID, MERCHANTS)
    yield db
    db.close()


def by_number(report):
    return {entry["number"]: entry for entry in report["merchants"]}


def test_batch_is_stored_once_and_acked(db, terminal):
    body = terminal.batch()
    first = db.ingest("T0001", body)
    assert first["stored"] == 5 and first["ack"] == terminal.ledger.queue.last_counter
    again = db.ingest("T0001", body)
    assert again["stored"] == 0 and again["duplicates"] == 5 and again["ack"] == first["ack"]
    assert sum(e["sales_count"] for e in db.report()["merchants"]) == 3


def test_report_matches_the_terminals_totals_to_the_cent(db, terminal):
    db.ingest("T0001", terminal.batch())
    report = by_number(db.report())
    for number in (1, 2):
        assert report[number]["net_total_minor"] == terminal.ledger.totals.net(number)
    assert report[1]["merchant_id"] == "100000000000001" and report[1]["name"] == "Noodle Bar"
    assert (report[1]["sales_count"], report[1]["sales_total_minor"]) == (2, 2050)
    assert (report[1]["voids_count"], report[1]["net_total_minor"]) == (1, 1250)
    assert (report[2]["refunds_total_minor"], report[2]["net_total_minor"]) == (50, 400)


def test_z_settlement_reconciles(db, terminal):
    ledger = terminal.ledger
    ledger.book(ledger.totals.settlement(1, 978))
    db.ingest("T0001", terminal.batch())
    (z,) = by_number(db.report())[1]["settlements"]
    assert z["batch"] == 1 and z["reconciles"]
    assert (z["sales_count"], z["sales_total_minor"]) == (1, 1250)


def test_report_names_the_supervisor_who_approved_a_sale(db, terminal):
    terminal.ledger.book(
        Record(SALE, 2, 9000, 978, method=CASH, reason=11, flags=FLAG_SUPERVISOR, reference=9)
    )
    db.ingest("T0001", terminal.batch())
    report = db.report()
    (approved,) = by_number(report)[2]["supervisor_approved"]
    assert approved == {
        "counter": terminal.ledger.queue.last_counter,
        "amount_minor": 9000,
        "supervisor": 9,
    }
    assert by_number(report)[1]["supervisor_approved"] == []
    out = io.StringIO()
    print_report(report, out)
    assert "approved by supervisor 9" in out.getvalue()


def test_altered_record_is_quarantined_and_does_not_block_the_rest(db, terminal):
    frames = [bytearray(frame) for _, frame in terminal.ledger.queue.unsent()]
    frames[1][10] ^= 0x40  # change the ciphertext, then give it a good CRC again
    frames[1][-4:] = zlib.crc32(bytes(frames[1][:-4])).to_bytes(4, "little")
    result = db.ingest("T0001", b"".join(bytes(f) for f in frames))
    assert (result["stored"], result["quarantined"]) == (4, 1)
    assert result["ack"] == terminal.ledger.queue.last_counter
    report = db.report()
    assert report["quarantined"] == 1
    assert by_number(report)[1]["sales_count"] == 1  # the altered sale is not money


def test_torn_batch_is_acked_up_to_its_last_good_frame(db, terminal):
    frames = [bytes(frame) for _, frame in terminal.ledger.queue.unsent()]
    body = frames[0] + frames[1] + frames[2][:20]
    result = db.ingest("T0001", body)
    counters = [counter for counter, _ in terminal.ledger.queue.unsent()]
    assert result["stored"] == 2 and result["refused"] == 1 and result["ack"] == counters[1]


def test_unknown_terminal_and_no_bdk_are_refused(ledger_at, terminal):
    db = LedgerDB(ledger_at, BDK)
    with pytest.raises(IngestError, match="unknown terminal"):
        db.ingest("T9999", terminal.batch())
    db.close()
    db = LedgerDB(ledger_at)
    with pytest.raises(IngestError, match="no BDK"):
        db.ingest("T0001", b"")
    db.close()


def test_http_api(db, terminal):
    client = TestClient(make_app(db, docs=True))
    signer = TerminalSigner(BDK, IK_ID)
    path = "/v1/terminals/T0001/records"
    octets = {"Content-Type": "application/octet-stream"}

    def post(body, status="", tid="T0001", **extra):
        signed = signer.headers("POST", "/v1/terminals/%s/records" % tid, body, status)
        return client.post(
            "/v1/terminals/%s/records" % tid, content=body, headers=dict(octets, **signed, **extra)
        )

    reply = post(terminal.batch(), "depth=5;oldest_s=40;counter=6;fw=0.1.0")
    assert reply.status_code == 200
    assert signer.reply_ok(reply.headers["x-onetill-reply"], reply.content)
    assert reply.json()["stored"] == 5 and reply.json()["server_time"] > 1_700_000_000
    assert post(b"").status_code == 400
    big = b"\x00" * 70_000
    assert post(big).status_code == 413
    assert post(b"x", **{"Content-Type": "text/plain"}).status_code == 415
    beat = db.report()["terminals"]["T0001"]["status"]
    assert beat["depth"] == "5" and beat["fw"] == "0.1.0"
    # Unsigned, or signed for another terminal: the same 401, whether the ID is known.
    assert client.post(path, content=b"x", headers=octets).status_code == 401
    assert post(b"x", tid="NOPE").status_code == 401
    spec = client.get("/openapi.json").json()
    assert "/v1/terminals/{tid}/records" in spec["paths"]
    hidden = TestClient(make_app(db))
    assert hidden.get("/openapi.json").status_code == 404
    assert hidden.get("/docs").status_code == 404


def test_cli_register_and_report(tmp_path, ledger_at, terminal):
    path = ledger_at
    merchants = tmp_path / "merchants.json"
    merchants.write_text(
        json.dumps(
            {
                "merchants": [
                    {"number": n, "merchant_id": mid, "name": name} for n, mid, name in MERCHANTS
                ]
            }
        )
    )
    run = [sys.executable, "-m", "tools.host.backend"]
    added = subprocess.run(
        run
        + [
            "terminals",
            "add",
            "--db",
            path,
            "--tid",
            "T0001",
            "--ik-id",
            IK_ID.hex(),
            "--merchants",
            str(merchants),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert added.returncode == 0, added.stderr
    db = LedgerDB(path, BDK)
    db.ingest("T0001", terminal.batch())
    db.close()
    shown = subprocess.run(
        run + ["report", "--db", path, "--json"], cwd=ROOT, capture_output=True, text=True
    )
    report = json.loads(shown.stdout)
    entry = by_number(report)[2]
    for field in (
        "number",
        "merchant_id",
        "name",
        "sales_count",
        "sales_total_minor",
        "refunds_total_minor",
        "net_total_minor",
    ):
        assert field in entry
    assert entry["name"] == "Tea House" and entry["net_total_minor"] == 400


def test_tls_server_on_loopback(tmp_path, ledger_at, terminal):
    certs = str(tmp_path / "certs")
    make_certs(certs)
    key_file = tmp_path / "bdk.key"
    key_file.write_text(BDK.hex())
    path = ledger_at
    db = LedgerDB(path)
    db.add_terminal("T0001", IK_ID, MERCHANTS)
    db.close()
    server = Server(path, str(key_file), certs)
    try:
        trust = ssl.create_default_context(cafile=certs + "/ca.pem")
        body = terminal.batch()
        signed = TerminalSigner(BDK, IK_ID).headers("POST", "/v1/terminals/T0001/records", body)
        reply = httpx.post(
            server.url + "/v1/terminals/T0001/records",
            content=body,
            headers=dict(signed, **{"Content-Type": "application/octet-stream"}),
            verify=trust,
            timeout=10,
        )
        assert reply.status_code == 200 and reply.json()["stored"] == 5
        with pytest.raises(httpx.ConnectError):  # a client that does not trust our CA
            httpx.get(server.url + "/v1/health", timeout=5)
    finally:
        server.stop()


def backend(*args):
    return subprocess.run(
        [sys.executable, "-m", "tools.host.backend", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line_refusal(result, text):
    """Exit 2 and one line that says why: never a traceback, never a silent success."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("tools/backend: ") and result.stderr.count("\n") == 1
    assert text in result.stderr, result.stderr
    assert result.stdout == ""


def files_in(folder):
    """Every file under a folder with its bytes: a refusal must leave all of them alone."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(parent, name), "rb") as source:
                found[os.path.join(parent, name)] = source.read()
    return found


@pytest.mark.parametrize(
    "make, text",
    [
        (lambda path: None, "no ledger at"),  # a mistyped name
        (lambda path: path.parent.rmdir(), "there is no folder"),  # a mistyped folder
        (lambda path: path.mkdir(), "is a folder, not a ledger"),
        (lambda path: path.write_bytes(b""), "is an empty file, not a OneTill ledger"),
        (lambda path: path.write_bytes(b"hello, not a database\n" * 50), "not an SQLite"),
        (
            lambda path: __import__("sqlite3").connect(path).execute("CREATE TABLE x (a)"),
            "is not a OneTill ledger (it has no terminals)",
        ),
    ],
    ids=["missing-file", "missing-folder", "folder", "empty-file", "not-sqlite", "other-db"],
)
def test_report_on_a_wrong_path_says_why_and_writes_nothing(tmp_path, make, text):
    path = tmp_path / "ledgers" / "ledger.db"
    path.parent.mkdir()
    make(path)
    before = files_in(tmp_path)
    for extra in ((), ("--json",), ("--merchant", "1")):
        one_line_refusal(backend("report", "--db", str(path), *extra), text)
    assert files_in(tmp_path) == before  # no ledger made, no schema added


def test_the_write_commands_refuse_a_ledger_that_is_not_there(tmp_path):
    missing = str(tmp_path / "ledgr.db")
    config = tmp_path / "config.json"
    config.write_text('{"merchants": {}}')
    certs = str(tmp_path / "certs")
    make_certs(certs)
    key = tmp_path / "bdk.key"
    key.write_text(BDK.hex())
    for args in (
        ("config", "set", "--db", missing, "--terminal", "T0001", str(config)),
        ("blacklist", "add", "--db", missing, "token:0102030405aa"),
        ("command", "settle", "--db", missing, "--terminal", "T0001"),
        ("serve", "--db", missing, "--bdk-file", str(key), "--port", "1"),
    ):
        if args[0] == "serve":
            args += ("--tls-cert", certs + "/server.pem", "--tls-key", certs + "/server.key")
        one_line_refusal(backend(*args), "no ledger at " + missing)
    assert not os.path.exists(missing)
    one_line_refusal(
        backend(
            "terminals",
            "add",
            "--db",
            missing,
            "--tid",
            "T0001",
            "--ik-id",
            IK_ID.hex(),
            "--merchants",
            str(tmp_path / "merchnts.json"),
        ),
        "cannot read %s" % (tmp_path / "merchnts.json"),
    )
    assert not os.path.exists(missing)
    one_line_refusal(
        backend(
            "terminals",
            "add",
            "--db",
            str(tmp_path / "no" / "l.db"),
            "--tid",
            "T1",
            "--ik-id",
            IK_ID.hex(),
        ),
        "there is no folder",
    )
    one_line_refusal(backend("certs", "--out", str(config) + "/certs"), "cannot write")
    config.write_text("[1, 2]")
    args = ("terminals", "add", "--db", missing, "--tid", "T1", "--ik-id", IK_ID.hex())
    one_line_refusal(backend(*args, "--merchants", str(config)), "is not a merchants.json")
    assert not os.path.exists(missing)
    path = str(tmp_path / "ledger.db")
    LedgerDB(path).close()
    serve = ("serve", "--db", path, "--bdk-file", str(key), "--port", "1")
    one_line_refusal(
        backend(*serve, "--tls-cert", str(key), "--tls-key", str(key)),
        "as the TLS certificate and key",
    )


def registered(path, terminal):
    db = LedgerDB(path, BDK)
    db.add_terminal("T0001", IK_ID, MERCHANTS)
    ledger = terminal.ledger
    terminal.book(SALE, 1, 21710)
    ledger.book(ledger.totals.settlement(1, 978))
    db.ingest("T0001", terminal.batch())
    db.heartbeat("T0001", "depth=0;oldest_s=0;counter=7;heap=31000;fw=0.1.0;cfg=0;bl=0;cmd=0")
    db.close()
    return path


def test_a_merchant_the_ledger_does_not_have_is_refused(ledger_at, terminal):
    path = registered(ledger_at, terminal)
    one_line_refusal(backend("report", "--db", path, "--merchant", "7"), "no merchant 7 in")
    assert "it has merchants 1, 2" in backend("report", "--db", path, "--merchant", "7").stderr
    shown = backend("report", "--db", path, "--merchant", "2", "--json")
    assert shown.returncode == 0 and [m["number"] for m in json.loads(shown.stdout)["merchants"]]


def test_the_text_report_shows_money_as_the_receipt_does(tmp_path, ledger_at, terminal):
    path = registered(ledger_at, terminal)
    before = files_in(tmp_path).get(path)
    shown = backend("report", "--db", path)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "Terminal T0001"
    assert "  Merchant 1  Noodle Bar  (MID 100000000000001)" in lines
    # merchant 1: 12.50 cash, 8.00 credit voided, then 217.10 cash, and a Z of it all
    sales = next(line for line in lines if line.startswith("    Sales"))
    assert sales.split() == ["Sales", "3", "EUR", "237.60"]
    net = next(line for line in lines if line.startswith("    Net"))
    assert net.split() == ["Net", "EUR", "229.60"]
    assert "    Z 1: sales 2 EUR 229.60, refunds 0 EUR 0.00: reconciles" in lines
    assert "    Refunds       1            EUR 0.50" in lines  # merchant 2
    assert not any(str(amount) in shown.stdout for amount in (21710, 23760, 22960))
    assert lines[-1] == "Quarantined records (not counted as money): 0"
    assert "  Link: 0 unsent, oldest 0 s, counter 7" in shown.stdout
    # the JSON keeps minor units; the ledger file is never written by a report
    entry = by_number(json.loads(backend("report", "--db", path, "--json").stdout))[1]
    assert (entry["net_total_minor"], entry["currency"]) == (22960, 978)
    assert files_in(tmp_path).get(path) == before


def test_a_report_read_into_a_closed_pipe_ends_quietly(ledger_at, terminal):
    path = registered(ledger_at, terminal)
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.host.backend", "report", "--db", path],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()  # as `| head` does once it has its lines
    _, err = process.communicate(timeout=60)
    assert (process.returncode, err) == (0, b"")


def test_registering_an_id_again_needs_replace(db, terminal):
    db.ingest("T0001", terminal.batch())
    db.add_terminal("T0001", IK_ID, MERCHANTS)  # the same IK ID again: nothing changes
    assert db.ingest("T0001", terminal.batch())["duplicates"] == 5
    other = bytes.fromhex("0102030405060708")
    with pytest.raises(RegistrationError, match="--replace"):
        db.add_terminal("T0001", other)
    assert db.report()["merchants"][0]["terminal"] == "T0001"
    db.add_terminal("T0001", other, replace=True)
    # The old terminal's records are kept under its old identity; the new one starts afresh.
    terminals = {entry["terminal"] for entry in db.report()["merchants"]}
    assert terminals == {"T0001@" + IK_ID.hex()}
    row = db._db.execute("SELECT ack, nonce FROM terminals WHERE tid = 'T0001'").fetchone()
    assert row == (0, 0)


def test_stale_or_unknown_requests_are_told_apart_only_for_the_terminal(db):
    signer = TerminalSigner(BDK, IK_ID)
    path = "/v1/terminals/T0001/versions"
    signed = signer.headers("GET", path)["X-OneTill-Auth"]
    caller = db.authenticate("T0001", "GET", path, "", signed)
    db.poll("T0001", caller, "")
    with pytest.raises(StaleRequest) as stale:
        db.authenticate("T0001", "GET", path, "", signed)
    assert stale.value.last == 1
    with pytest.raises(AuthError):
        db.authenticate("T0002", "GET", path.replace("T0001", "T0002"), "", signed)
    with pytest.raises(AuthError):
        db.authenticate("T0001", "GET", path, "cfg=9", signed)  # the heartbeat is covered


def test_blacklist_deltas_name_their_base_and_a_wrong_digest_gets_the_whole_list(db, tmp_path):
    from pos.blacklist import Blacklist

    a, b, c = b"\x01" * 6, b"\x02" * 6, b"\x03" * 6
    db.change_blacklist(add=[a, b])
    db.change_blacklist(add=[c], remove=[a])

    def take(since, listing):
        version, payload = db.document("T0001", "B", since)
        base, adding, removing = struct.unpack_from(">III", payload)
        tokens = [payload[12 + 6 * i : 18 + 6 * i] for i in range(adding + removing)]
        listing.apply(version, tokens[:adding], tokens[adding:], replace=not base)
        return base

    terminal = Blacklist(str(tmp_path / "bl"))
    assert take(0, terminal) == 0 and terminal.version == 2  # from nothing: the whole list
    assert db.blacklist_digest(2) == terminal.digest  # the back end's digest is the file's
    older = Blacklist(str(tmp_path / "older"))
    older.apply(1, [a, b], [])
    assert take(1, older) == 1 and older.digest == terminal.digest  # a delta from 1
    beat = "bl=2;bld=%s;cmd=0"
    db.heartbeat("T0001", beat % terminal.digest)
    assert not db.blacklist_whole("T0001")
    db.heartbeat("T0001", beat % "00000000")  # a list that is not what version 2 says
    assert db.blacklist_whole("T0001")
    damaged = Blacklist(str(tmp_path / "damaged"))
    damaged.apply(2, [a], [])
    assert take(2, damaged) == 0 and damaged.digest == terminal.digest


def test_a_cloned_terminal_is_suspected_and_held_until_cleared(db, tmp_path):
    """A copy of a terminal's flash sells under the same counters as the original: both
    records are kept, neither counter's second record is money, the terminal is flagged at
    the top of the report, and its later records wait in quarantine until an operator
    clears it."""
    import copy

    original = Terminal()
    original.book(SALE, 1, 1000)
    db.ingest("T0001", original.batch())
    clone = copy.copy(original)
    flash = copy.deepcopy(original.ledger.queue._bdev.flash)  # the chip, read out and copied
    queue, log = Region(flash, 0, 8), Region(flash, 8, 8)
    clone.ledger = Ledger(TxQueue(queue), log, b"storage-key-0003")
    original.book(SALE, 1, 2000)  # counter 2 on the original...
    clone.book(SALE, 2, 9900)  # ...and counter 2 on the copy, another sale
    assert db.ingest("T0001", original.batch())["stored"] == 1
    taken = db.ingest("T0001", clone.batch())
    assert taken["stored"] == 0 and taken["quarantined"] == 1
    assert taken["ack"] == clone.ledger.queue.last_counter  # kept: an ack means stored
    report = db.report()
    assert "clone" in report["alerts"]["T0001"]["suspected"]
    kept = db._db.execute("SELECT COUNT(*) FROM quarantine WHERE tid = 'T0001'").fetchone()
    assert kept[0] == 1
    original.book(SALE, 1, 3000)  # later records of the suspected terminal are held
    held = db.ingest("T0001", original.batch())
    assert (held["stored"], held["quarantined"]) == (0, 1)
    assert sum(e["sales_total_minor"] for e in db.report()["merchants"]) == 3000
    again = db.ingest("T0001", original.batch())  # sent again: held once, not twice
    assert again["duplicates"] == 3 and again["quarantined"] == 0
    run = [sys.executable, "-m", "tools.host.backend"]
    shown = subprocess.run(
        run + ["report", "--db", db._path], cwd=ROOT, capture_output=True, text=True
    )
    assert shown.stdout.startswith("SUSPECTED CLONE: terminal T0001: clone"), shown.stdout
    cleared = subprocess.run(
        run + ["terminals", "clear", "--db", db._path, "--tid", "T0001"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert cleared.returncode == 0 and "cleared" in cleared.stdout
    original.book(SALE, 1, 4000)
    assert db.ingest("T0001", original.batch())["stored"] == 1  # money again


def test_forged_frames_and_fault_logs_are_bounded_per_terminal(db, terminal, monkeypatch):
    from tools.host.backend import documents, ingest

    monkeypatch.setattr(ingest, "MAX_QUARANTINE_PER_TERMINAL", 3)
    monkeypatch.setattr(documents, "MAX_FAULT_LOGS_PER_TERMINAL", 2)
    frames = [bytearray(frame) for _, frame in terminal.ledger.queue.unsent()]
    for forged in frames:  # every tag broken, every CRC good again
        forged[10] ^= 0x40
        forged[-4:] = zlib.crc32(bytes(forged[:-4])).to_bytes(4, "little")
    result = db.ingest("T0001", b"".join(bytes(f) for f in frames))
    # The oldest three are kept; the fourth does not fit, so the batch stops before it and
    # nothing forged ever moves the ack.
    assert (result["quarantined"], result["refused"], result["ack"]) == (3, 1, 0)
    for number in range(5):
        db.store_faults("T0001", "fault log %d" % number)
    kept = db._db.execute("SELECT text FROM faults ORDER BY seq").fetchall()
    assert kept == [("fault log 0",), ("fault log 1",)]
    assert db.report()["alerts"]["T0001"] == {
        "suspected": None,
        "quarantine_dropped": 1,
        "faults_dropped": 3,
    }


def test_refusals_are_logged_at_most_once_a_minute():
    import io

    from tools.host.backend import RefusalLog

    out = io.StringIO()
    log = RefusalLog(every_s=60, out=out)
    for _ in range(1000):
        log.refused()
    assert out.getvalue() == "" and log.total == 1000
    log._since -= 61  # a minute later
    log.refused()
    assert out.getvalue().count("\n") == 1 and "1001 unauthenticated" in out.getvalue()
