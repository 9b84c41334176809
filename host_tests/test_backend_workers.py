"""`tools/backend serve --workers 2`: two worker processes over one ledger (SQLite, then
PostgreSQL) store a terminal's batch once, whichever worker each copy reaches and however
the copies race."""

import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, os.path.join(ROOT, "tools", "emu"))

from test_backend import BDK, IK_ID, Terminal  # noqa: E402

from pos.record import CASH, SALE  # noqa: E402
from tools.host.backend import LedgerDB, Server, make_certs  # noqa: E402
from tools.host.linkclient import TerminalSigner  # noqa: E402

COPIES = 8  # the batch and its retries, sent at once


def test_two_workers_store_racing_copies_of_a_batch_once(tmp_path, ledger_at):
    make_certs(str(tmp_path))
    (tmp_path / "bdk.key").write_text(BDK.hex())
    db_path = ledger_at
    db = LedgerDB(db_path)
    db.add_terminal("T0001", IK_ID)
    db.close()
    terminal = Terminal()
    for number in range(30):
        terminal.book(SALE, 1, 100 + number, CASH)
    body = terminal.batch()
    signer = TerminalSigner(BDK, IK_ID)
    path = "/v1/terminals/T0001/records"
    server = Server(db_path, str(tmp_path / "bdk.key"), str(tmp_path), workers=2)
    try:
        with open("/proc/%d/task/%d/children" % ((server.process.pid,) * 2)) as children:
            assert len(children.read().split()) >= 2  # the workers are processes
        trust = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        trust.check_hostname = False

        def send(headers):
            request = urllib.request.Request(
                server.url + path,
                data=body,
                method="POST",
                headers=dict(headers, **{"Content-Type": "application/octet-stream"}),
            )
            try:  # a new connection each: the copies spread over the workers
                with urllib.request.urlopen(request, context=trust, timeout=30) as reply:
                    return reply.status, json.loads(reply.read())
            except urllib.error.HTTPError as refused:
                return refused.code, json.loads(refused.read())

        replies = []
        for _ in range(3):  # rounds of racing copies, each signed as a retry would be
            signed = [signer.headers("POST", path, body) for _ in range(COPIES)]
            with ThreadPoolExecutor(COPIES) as pool:
                replies += list(pool.map(send, signed))
    finally:
        server.stop()
    accepted = [reply for status, reply in replies if status == 200]
    # A copy whose counter an earlier-signed copy overtook is told so (401, stale); every
    # other copy is answered, and the records are stored by exactly one of them.
    assert all(status in (200, 401) for status, _ in replies)
    assert len(accepted) >= 3
    assert sum(reply["stored"] for reply in accepted) == 30
    assert all(reply["ack"] == terminal.ledger.queue.last_counter for reply in accepted)
    assert sum(r["stored"] + r["duplicates"] for r in accepted) == 30 * len(accepted)
    db = LedgerDB(db_path, mode="read")
    try:
        rows = db._db.execute("SELECT COUNT(*), COUNT(DISTINCT counter) FROM records")
        assert rows.fetchone() == (30, 30)
        (entry,) = db.report()["merchants"]
        assert entry["sales_count"] == 30 and entry["sales_total_minor"] == sum(range(100, 130))
        assert db.report()["quarantined"] == 0
    finally:
        db.close()
