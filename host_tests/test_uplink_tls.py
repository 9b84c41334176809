"""pos.uplink on MicroPython against the real back end over TLS: the right CA is accepted; a
wrong CA, a certificate for another host and a server that never answers are refused, and
none of them acks anything."""

import os
import socket
import subprocess
import sys
import threading

import pytest

from tools.host import mpybuild
from tools.host.backend import Server, make_certs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IK_ID = bytes.fromhex("b1b2b3b4b5b6b7b8")
BDK = bytes(range(48, 64))

SCRIPT = """
import asyncio, struct, sys
sys.path[:0] = ["build/mpy/lib", "build/mpy/emu"]
from flashregion import Region
from norflash import NorFlash
from pos.downlink import derive_downlink_key
from pos.derive import derive_initial_key
from pos.journal import Journal
from pos.ledger import Ledger
from pos.record import CASH, SALE, Record
from pos.txq import TxQueue
from pos.contact import authenticate, sync
from pos.uplink import Uplink, UplinkError, tls_context

flash = NorFlash(12, sector_size=1024)
queue, log = Region(flash, 0, 4), Region(flash, 4, 8)
Journal.provision(log, b"storage-key-0004", derive_initial_key(BDK, IK_ID), IK_ID)
ledger = Ledger(TxQueue(queue), log, b"storage-key-0004")
ledger.book(Record(SALE, 1, 700, 978, method=CASH))
uplink = Uplink(ledger.queue, HOST, PORT, "T0007", tls_context(open(CA, "rb").read()))
authenticate(uplink, derive_downlink_key(BDK, IK_ID))
uplink.timeout_s = 3

async def main():
    try:
        print("acked", await sync(uplink))
    except UplinkError as exc:
        print("refused", exc)
    print("unsent", ledger.queue.unsent_count())

asyncio.run(main())
"""


def run_uplink(host, port, ca):
    mpybuild.build_for_unix_port()
    script = (
        "BDK = %r\nIK_ID = %r\nHOST = %r\nPORT = %d\nCA = %r\n" % (BDK, IK_ID, host, port, ca)
        + SCRIPT
    )
    result = subprocess.run(
        [os.path.join(ROOT, ".venv", "bin", "micropython"), "-X", "heapsize=256k", "-c", script],
        cwd=ROOT,
        env=dict(os.environ, MICROPYPATH=".frozen"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result.stdout


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    base = tmp_path_factory.mktemp("tls")
    good, other_host = str(base / "good"), str(base / "other")
    make_certs(good)
    make_certs(other_host, hosts=("example.invalid",))
    key_file = base / "bdk.key"
    key_file.write_text(BDK.hex())
    db_path = str(base / "ledger.db")
    sys.path.insert(0, os.path.join(ROOT, "lib"))
    from tools.host.backend import LedgerDB

    db = LedgerDB(db_path)
    db.add_terminal("T0007", IK_ID)
    db.close()
    servers = {
        "good": Server(db_path, str(key_file), good),
        "other_host": Server(db_path, str(key_file), other_host),
    }
    yield {"good": good, "other_host": other_host, "servers": servers, "db": db_path}
    for server in servers.values():
        server.stop()


def test_pinned_ca_is_accepted(backend):
    port = backend["servers"]["good"].port
    out = run_uplink("127.0.0.1", port, backend["good"] + "/ca.der")
    assert "acked 1" in out and "unsent 0" in out


def test_wrong_ca_is_refused(backend):
    port = backend["servers"]["good"].port
    out = run_uplink("127.0.0.1", port, backend["other_host"] + "/ca.der")
    assert "refused" in out and "unsent 1" in out


def test_certificate_for_another_host_is_refused(backend):
    # The right CA, but the server's certificate names example.invalid, not 127.0.0.1.
    port = backend["servers"]["other_host"].port
    out = run_uplink("127.0.0.1", port, backend["other_host"] + "/ca.der")
    assert "refused" in out and "unsent 1" in out


def test_stalled_server_times_out(backend):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    held = []
    threading.Thread(target=lambda: held.append(listener.accept()), daemon=True).start()
    try:
        out = run_uplink("127.0.0.1", listener.getsockname()[1], backend["good"] + "/ca.der")
        assert "refused no answer" in out and "unsent 1" in out
        assert held  # the server took the connection and never answered
    finally:
        listener.close()
