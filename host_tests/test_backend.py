"""tools/backend: ingest exactly once, quarantine, reports that match the terminal's own
totals, the HTTP API, the CLI, and a TLS server on loopback."""

import json
import os
import ssl
import subprocess
import sys
import zlib

import httpx
import pytest
from fastapi.testclient import TestClient
from flashregion import Region

from norflash import NorFlash
from pos.dukpt import derive_initial_key
from pos.journal import Journal
from pos.ledger import Ledger
from pos.record import CASH, CREDIT, REFUND, SALE, VOID, Record
from pos.txq import TxQueue
from tools.host.backend import Server, make_app, make_certs
from tools.host.ledgerdb import IngestError, LedgerDB

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
def db(tmp_path):
    db = LedgerDB(str(tmp_path / "backend.db"), BDK)
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


def test_unknown_terminal_and_no_bdk_are_refused(tmp_path, terminal):
    db = LedgerDB(str(tmp_path / "x.db"), BDK)
    with pytest.raises(IngestError, match="unknown terminal"):
        db.ingest("T9999", terminal.batch())
    db.close()
    with pytest.raises(IngestError, match="no BDK"):
        LedgerDB(str(tmp_path / "y.db")).ingest("T0001", b"")


def test_http_api(db, terminal):
    client = TestClient(make_app(db))
    octets = {"Content-Type": "application/octet-stream"}
    reply = client.post(
        "/v1/terminals/T0001/records",
        content=terminal.batch(),
        headers=dict(octets, **{"X-OneTill-Status": "depth=5;oldest_s=40;counter=6;fw=0.1.0"}),
    )
    assert reply.status_code == 200
    assert reply.json()["stored"] == 5 and reply.json()["server_time"] > 1_700_000_000
    post = client.post
    assert post("/v1/terminals/NOPE/records", content=b"x", headers=octets).status_code == 404
    assert post("/v1/terminals/T0001/records", content=b"", headers=octets).status_code == 400
    big = b"\x00" * 70_000
    assert post("/v1/terminals/T0001/records", content=big, headers=octets).status_code == 413
    assert post("/v1/terminals/T0001/records", content=b"x").status_code == 415
    beat = db.report()["terminals"]["T0001"]["status"]
    assert beat["depth"] == "5" and beat["fw"] == "0.1.0"
    spec = client.get("/openapi.json").json()
    assert "/v1/terminals/{tid}/records" in spec["paths"]


def test_cli_register_and_report(tmp_path, terminal):
    path = str(tmp_path / "cli.db")
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


def test_tls_server_on_loopback(tmp_path, terminal):
    certs = str(tmp_path / "certs")
    make_certs(certs)
    key_file = tmp_path / "bdk.key"
    key_file.write_text(BDK.hex())
    path = str(tmp_path / "tls.db")
    db = LedgerDB(path)
    db.add_terminal("T0001", IK_ID, MERCHANTS)
    db.close()
    server = Server(path, str(key_file), certs)
    try:
        trust = ssl.create_default_context(cafile=certs + "/ca.pem")
        reply = httpx.post(
            server.url + "/v1/terminals/T0001/records",
            content=terminal.batch(),
            headers={"Content-Type": "application/octet-stream"},
            verify=trust,
            timeout=10,
        )
        assert reply.status_code == 200 and reply.json()["stored"] == 5
        with pytest.raises(httpx.ConnectError):  # a client that does not trust our CA
            httpx.get(server.url + "/v1/health", timeout=5)
    finally:
        server.stop()
