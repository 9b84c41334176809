"""An attacker against the real back end over TLS (tools/backend serve on loopback), with
the server's CA but none of the terminals' keys: forged, replayed, oversized, slow and
spoofed requests are each refused with the expected status, and the database's money, ack,
quarantine, fault and heartbeat tables are byte for byte what they were. Then the genuine
terminal sends its backlog and every sale is stored once: a host-side terminal, and the
simulator's real firmware at 96 KiB.

A malicious back end too (the server's certificate, not the BDK): the real firmware behind it
keeps every record, its limits hold and its fault log says why each reply was refused; a
copied terminal is caught end to end."""

import json
import os
import socket
import sqlite3
import ssl
import struct
import threading
import time
import zlib

import httpx
import pytest
from test_backend import BDK, IK_ID, Terminal

from pos.record import CREDIT, SALE
from tools.host.backend import BODY_TIMEOUT_S, HEADER_TIMEOUT_S, LedgerDB, Server, make_certs
from tools.host.linkclient import TerminalSigner

OTHER_IK_ID = bytes.fromhex("c1c2c3c4c5c6c7c8")
RECORDS = "/v1/terminals/T0001/records"
OCTETS = {"Content-Type": "application/octet-stream"}


def frame(counter, body=b""):
    """A frame with a good CRC: length byte, counter, 40 bytes, CRC-32 (little-endian)."""
    inner = struct.pack(">I", counter) + (body or bytes(40))
    data = bytes([len(inner)]) + inner
    return data + zlib.crc32(data).to_bytes(4, "little")


def tables(path):
    """Everything an attacker could want changed, as bytes: money, quarantine, faults,
    heartbeats, and each terminal's ack and request counter."""
    db = LedgerDB(path, mode="read")
    try:
        dump = []
        for query in (
            "SELECT * FROM records ORDER BY tid, counter",
            "SELECT * FROM quarantine ORDER BY tid, counter, frame",
            "SELECT * FROM faults ORDER BY tid, seq",
            "SELECT * FROM heartbeats ORDER BY tid",
            "SELECT tid, ik_id, ack, nonce FROM terminals ORDER BY tid",
        ):
            dump.append(repr([tuple(row) for row in db._db.execute(query)]).encode())
        return b"\n".join(dump)
    finally:
        db.close()


def http_only(site):
    """A test of the HTTP layer alone (the same code whatever the store): run once."""
    if site["store"] != "sqlite":
        pytest.skip("the HTTP layer, tested on SQLite's run")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request, tmp_path_factory):
    """A back end over TLS with two terminals, on each store in turn."""
    base = tmp_path_factory.mktemp("attack")
    certs = str(base / "certs")
    make_certs(certs)
    key_file = base / "bdk.key"
    key_file.write_text(BDK.hex())
    if request.param == "sqlite":
        path = str(base / "backend.db")
    else:
        path = request.getfixturevalue("postgres_server").new_database()
    db = LedgerDB(path)
    db.add_terminal("T0001", IK_ID)
    db.add_terminal("T0002", OTHER_IK_ID)
    db.close()
    server = Server(path, str(key_file), certs)
    terminal = Terminal()
    for amount in (1250, 800, 450):
        terminal.book(SALE, 1, amount, CREDIT)
    signer = TerminalSigner(BDK, IK_ID)
    client = httpx.Client(
        base_url=server.url, verify=ssl.create_default_context(cafile=certs + "/ca.pem")
    )
    # The genuine terminal's first batch: what there is to protect.
    first = terminal.batch()
    signed = signer.headers("POST", RECORDS, first, "depth=3;cfg=0;bl=0;cmd=0")
    first_reply = client.post(RECORDS, content=first, headers=dict(OCTETS, **signed))
    assert first_reply.status_code == 200 and first_reply.json()["stored"] == 3
    yield {
        "store": request.param,
        "server": server,
        "client": client,
        "db": path,
        "certs": certs,
        "terminal": terminal,
        "signer": signer,
        "first": (first, signed, first_reply),
    }
    client.close()
    server.stop()


def unchanged(site, attack):
    """Run an attack; assert that no table changed; return what it returned."""
    before = tables(site["db"])
    result = attack()
    assert tables(site["db"]) == before
    return result


def post(site, body, headers=None, tid="T0001"):
    return site["client"].post(
        "/v1/terminals/%s/records" % tid, content=body, headers=dict(OCTETS, **(headers or {}))
    )


def test_unsigned_frames_are_refused_and_change_nothing(site):
    for body in (
        frame(0xFFFF0000),  # used to become the terminal's ack, stopping it for good
        frame(0xFFFFFFFF),  # used to be a 500 (an uncaught DukptError)
        frame(0x7FFFFFFF),
        b"".join(frame(n) for n in range(100, 1437))[: 64 * 1024],  # a 64 KiB batch of junk
        site["first"][0],  # T0001's own frames, replayed without its signature
    ):
        reply = unchanged(site, lambda b=body: post(site, b))
        assert reply.status_code == 401 and reply.json() == {"detail": "not authenticated"}


def test_unknown_and_known_terminals_look_the_same(site):
    replies = [
        unchanged(site, lambda t=tid: post(site, frame(5), tid=t))
        for tid in ("T0001", "T0002", "NOPE")
    ]
    assert {(r.status_code, r.content) for r in replies} == {
        (401, b'{"detail":"not authenticated"}')
    }


def test_replays_are_refused(site):
    body, signed, first_reply = site["first"]
    # Word for word again: the counter was taken. The tagged answer tells only the
    # terminal where its counter is.
    again = unchanged(site, lambda: post(site, body, signed))
    assert again.status_code == 401 and again.json()["last"] >= 1
    # Under another terminal's ID, with T0001's signature: the tag covers the path.
    other = unchanged(site, lambda: post(site, body, signed, tid="T0002"))
    assert other.status_code == 401
    # The back end's reply to T0001, presented as a reply to a new request: the terminal
    # checks the tag against its new request and refuses it.
    signer = site["signer"]
    signer.headers("GET", "/v1/terminals/T0001/versions")
    assert not signer.reply_ok(first_reply.headers["x-onetill-reply"], first_reply.content)


def test_spoofed_heartbeats_are_refused(site):
    spoof = {"X-OneTill-Status": "cfg=99;bl=99;cmd=99"}
    reply = unchanged(
        site, lambda: site["client"].get("/v1/terminals/T0001/versions", headers=spoof)
    )
    assert reply.status_code == 401
    # A good signature over another heartbeat does not cover this one.
    signed = site["signer"].headers("GET", "/v1/terminals/T0001/versions", b"", "cfg=1")
    signed["X-OneTill-Status"] = "cfg=99;bl=99;cmd=99"
    reply = unchanged(
        site, lambda: site["client"].get("/v1/terminals/T0001/versions", headers=signed)
    )
    assert reply.status_code == 401
    assert "cfg=99" not in json.dumps(LedgerDB(site["db"]).report()["terminals"])


def test_fault_flood_is_refused(site):
    def flood():
        return [
            site["client"]
            .post("/v1/terminals/T0001/faults", content=b"x" * 4096, headers=OCTETS)
            .status_code
            for _ in range(50)
        ]

    assert set(unchanged(site, flood)) == {401}


def test_documents_need_a_signature(site):
    for kind in ("config", "blacklist?since=0", "commands?since=0"):
        reply = unchanged(site, lambda k=kind: site["client"].get("/v1/terminals/T0001/" + k))
        assert reply.status_code == 401


def raw(site, head, body=b"", read=True):
    """Send a request head (and body) over TLS by hand; the reply, or the open socket."""
    context = ssl.create_default_context(cafile=site["certs"] + "/ca.pem")
    server = site["server"]
    sock = context.wrap_socket(
        socket.create_connection(("127.0.0.1", server.port), timeout=30),
        server_hostname="127.0.0.1",
    )
    sock.sendall(head + body)
    if not read:
        return sock
    reply = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
        if b"\r\n\r\n" in reply:
            length = int(reply.split(b"content-length: ")[1].split(b"\r\n")[0])
            if len(reply.split(b"\r\n\r\n", 1)[1]) >= length:
                break
    sock.close()
    return reply


def head(path, length, headers=None):
    lines = ["POST %s HTTP/1.1" % path, "Host: 127.0.0.1", "Content-Length: %d" % length]
    lines.append("Content-Type: application/octet-stream")
    lines += ["%s: %s" % item for item in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_huge_body_is_refused_without_being_read(site):
    http_only(site)
    huge = 300 * 1024 * 1024
    started = time.monotonic()
    reply = unchanged(site, lambda: raw(site, head(RECORDS, huge), b"\x00" * 1024))
    assert reply.startswith(b"HTTP/1.1 401")  # a stranger: refused on its head alone
    signed = site["signer"].headers("POST", RECORDS, b"\x00" * huge)
    reply = unchanged(site, lambda: raw(site, head(RECORDS, huge, signed), b"\x00" * 1024))
    assert reply.startswith(b"HTTP/1.1 413")  # even the terminal: by Content-Length
    assert time.monotonic() - started < 5


def test_slow_heads_and_bodies_are_cut_off(site):
    """A head sent a byte at a time is closed at the head deadline; a signed body that
    stops half way gets 408 at the body deadline; neither changes anything."""
    http_only(site)
    outcome = {}

    def slow_head():
        sock = raw(site, b"POST /v1/terminals/T0001/records HTTP/1.1\r\nHost: x\r\n", read=False)
        started = time.monotonic()
        try:
            while time.monotonic() - started < HEADER_TIMEOUT_S + 10:
                sock.sendall(b"X-Slow: 1\r\n")
                time.sleep(1)
        except OSError:
            pass  # the back end hung up
        outcome["head"] = time.monotonic() - started
        sock.close()

    def slow_body():
        body = frame(99) * 10
        signed = site["signer"].headers("POST", RECORDS, body)
        sock = raw(site, head(RECORDS, len(body), signed), body[:10], read=False)
        started = time.monotonic()
        reply = sock.recv(4096)
        outcome["body"] = (time.monotonic() - started, reply[:12])
        sock.close()

    def both():
        threads = [threading.Thread(target=slow_head), threading.Thread(target=slow_body)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    unchanged(site, both)
    assert outcome["head"] < HEADER_TIMEOUT_S + 5, outcome
    seconds, status = outcome["body"]
    assert status == b"HTTP/1.1 408" and seconds < BODY_TIMEOUT_S + 5, outcome


def test_signed_frames_far_ahead_or_forged_never_move_the_ack(site):
    """The terminal's own key over frames it did not make (a bug, a copy of its keys): a
    counter far ahead ends the batch unstored, a frame whose tag fails is quarantined and
    never becomes the ack, and 0xFFFFFFFF is no 500."""

    def ack():
        db = LedgerDB(site["db"], mode="read")
        try:
            return db._db.execute("SELECT ack FROM terminals WHERE tid = 'T0001'").fetchone()[0]
        finally:
            db.close()

    before = ack()
    for counter in (0xFFFF0000, 0xFFFFFFFF, 0x7FFFFFFF, 0x1FFFF, before + 5):
        body = frame(counter)
        reply = post(site, body, site["signer"].headers("POST", RECORDS, body))
        assert reply.status_code == 200, reply.text
        assert reply.json()["ack"] == before and ack() == before


def test_then_the_terminal_sends_its_backlog_every_sale_once(site):
    terminal, signer, client = site["terminal"], site["signer"], site["client"]
    for amount in (300, 400):
        terminal.book(SALE, 2, amount, CREDIT)
    body = terminal.batch()  # the first three again (the terminal never saw an ack) + two
    reply = post(site, body, signer.headers("POST", RECORDS, body))
    assert reply.status_code == 200
    assert signer.reply_ok(reply.headers["x-onetill-reply"], reply.content)
    assert reply.json()["ack"] == terminal.ledger.queue.last_counter
    assert (reply.json()["stored"], reply.json()["duplicates"]) == (2, 3)
    report = LedgerDB(site["db"]).report()
    sales = sorted(
        (e["number"], e["sales_count"], e["sales_total_minor"]) for e in report["merchants"]
    )
    assert sales == [(1, 3, 2500), (2, 2, 700)]
    client.get("/v1/health")


class ServerWithoutTheBdk:
    """A back end holding the server's certificate but not the BDK: it acks every batch
    whole without storing it, puts the time back a day and offers new versions, in replies
    it can tag only with a key of its own."""

    def __init__(self, cert_dir):
        self.requests = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_dir + "/server.pem", cert_dir + "/server.key")
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.context = context
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                raw_sock, _ = self.listener.accept()
            except OSError:
                return
            try:
                self._answer(self.context.wrap_socket(raw_sock, server_side=True))
            except (OSError, ValueError):
                pass

    def _answer(self, sock):
        sock.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        head, body = data.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(body) < length:
            body += sock.recv(4096)
        self.requests.append(head.split(b"\r\n")[0])
        top, offset = 0, 0
        while offset < len(body):  # the highest counter of the batch: "all of it is here"
            top = struct.unpack_from(">I", body, offset + 1)[0]
            offset += 1 + body[offset] + 4
        reply = json.dumps(
            {
                "ack": top,
                "stored": 0,
                "duplicates": 0,
                "quarantined": 0,
                "refused": 0,
                "server_time": int(time.time()) - 86400,
                "config": 9,
                "blacklist": 9,
                "commands": 9,
                "blacklist_whole": True,
            }
        ).encode()
        forged = bytes(16).hex()  # any tag it can make: it has no reply key
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-OneTill-Reply: %s\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (forged.encode(), len(reply), reply)
        )
        sock.close()

    def stop(self):
        self.listener.close()


def test_a_server_without_the_bdk_cannot_make_the_terminal_drop_sales(tmp_path):
    """The real firmware (tools/sim's, MicroPython at the default 96 KiB heap) against a
    server that holds the certificate: it sells, sends, gets acks for everything, and keeps
    every record unsent, fetching nothing, with the reason in its fault log."""
    from tools.host import sim

    state = str(tmp_path / "state")
    sim.prepare_state(state)
    make_certs(os.path.join(state, "backend"))
    server = ServerWithoutTheBdk(os.path.join(state, "backend"))
    try:
        sim.use_backend(state, "https://127.0.0.1:%d" % server.port)
        lock = sim.StateLock(state)
        firmware = sim.Firmware(state, sim.parse_heap("96k") + sim.TLS_ALLOWANCE, lock)
        try:
            firmware.wait_for_start()
            events = 0
            for key in "1 1 1 1 # 2 # 1 2 3 4 # 4 # # 2 # 5 0 0 # 4 #".split():
                firmware.send("key " + key)
                events += 1
                firmware.wait_for_events(events)
            assert not firmware.drain(timeout_s=12)  # it sent, and keeps what it sent
            assert firmware.unsent == 2
        finally:
            firmware.stop()
            lock.release()
    finally:
        server.stop()
    assert any(line.startswith(b"POST /v1/terminals/") for line in server.requests)
    assert not any(b"/blacklist" in line or b"/config" in line for line in server.requests)
    refusals = [f for f in firmware.faults if "not tagged for this request" in f]
    assert refusals, firmware.faults


def test_connections_from_one_address_are_capped(site):
    http_only(site)
    from tools.host.backend import MAX_CONNECTIONS_PER_SOURCE

    context = ssl.create_default_context(cafile=site["certs"] + "/ca.pem")
    held, closed = [], 0
    try:
        for _ in range(MAX_CONNECTIONS_PER_SOURCE + 16):
            sock = context.wrap_socket(
                socket.create_connection(("127.0.0.1", site["server"].port), timeout=5),
                server_hostname="127.0.0.1",
            )
            held.append(sock)
        for sock in held:
            sock.settimeout(0.2)
            try:
                closed += sock.recv(1) == b""  # the back end hung up at once
            except (TimeoutError, OSError):
                pass  # still open, waiting for a request
        assert closed >= 16, closed
    finally:
        for sock in held:
            sock.close()
    assert site["client"].get("/v1/health").status_code == 200  # others are still served


def test_a_copied_terminal_is_caught_end_to_end():
    """The simulator's state copied (flash, keys and all), a different sale made on each
    copy under the same counter, both drained to one back end: both records are kept, the
    copy's is not money, and the report opens with the suspicion."""
    import shutil
    import subprocess
    import sys

    from test_sim import ROOT, sim, state_folder

    original = state_folder("clone-a")
    first = sim(original, "1 1 1 1 # 2 # 1 0 0 # 4 #", "--drain")
    assert first.returncode == 0, first.stdout + first.stderr
    copy = state_folder("clone-b")
    shutil.rmtree(copy)
    shutil.copytree(original, copy)
    os.remove(os.path.join(copy, "backend.db"))  # one back end: the copy sends to it too
    os.symlink(os.path.join(original, "backend.db"), os.path.join(copy, "backend.db"))
    sold = sim(original, "1 1 1 1 # 2 # 2 0 0 # 4 #", "--offline")
    assert sold.returncode == 0, sold.stdout + sold.stderr
    copied = sim(copy, "1 1 1 1 # 3 # 9 9 9 # 4 #", "--offline")
    assert copied.returncode == 0, copied.stdout + copied.stderr
    for state in (original, copy):  # the copy's request counter is behind: it catches up
        drained = sim(state, "wait:500", "--drain")
        assert drained.returncode == 0, drained.stdout + drained.stderr
    shown = subprocess.run(
        [sys.executable, "-m", "tools.host.backend", "report", "--db"]
        + [os.path.join(original, "backend.db")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.stdout.startswith("SUSPECTED CLONE: terminal SIM"), shown.stdout
    db = sqlite3.connect(os.path.join(original, "backend.db"))
    try:
        money = db.execute("SELECT amount_minor FROM records ORDER BY counter").fetchall()
        kept = db.execute("SELECT reason FROM quarantine").fetchall()
    finally:
        db.close()
    assert money == [(100,), (200,)]  # the copy's 9.99 is not money
    assert len(kept) == 1 and kept[0][0].startswith("clone")


class MaliciousProxy:
    """A back end holding the server's certificate but not the BDK, in front of the real one
    (a TLS-terminating proxy). What it cannot forge it relays (polls, the config document);
    it answers every batch itself, acked whole and stored nowhere, with the time put back a
    day and newer versions on offer, under a tag it has to make up; and to a terminal asking
    for its whole blacklist it serves a delta made for another base (a genuine document of
    this terminal, as a recording of its traffic would hold one: it cannot make one)."""

    def __init__(self, cert_dir, real_port, delta):
        self.real_port = real_port
        self.delta = delta
        self.seen = []  # (request line, what the proxy did)
        self.client = ssl.create_default_context(cafile=cert_dir + "/ca.pem")
        self.server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server.load_cert_chain(cert_dir + "/server.pem", cert_dir + "/server.key")
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                raw_sock, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.server.wrap_socket(raw_sock, server_side=True) as sock:
                    self._answer(sock)
            except (OSError, ValueError):
                pass

    def _answer(self, sock):
        sock.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(body) < length:
            body += sock.recv(4096)
        request = head.split(b"\r\n")[0]
        if request.startswith(b"POST ") and b"/records " in request:
            self.seen.append((request, "forged an ack"))
            sock.sendall(self._forged_ack(body))
        elif b"/blacklist?since=0 " in request:
            self.seen.append((request, "served a delta from base 1"))
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(self.delta), self.delta)
            )
        else:
            self.seen.append((request, "relayed"))
            with socket.create_connection(("127.0.0.1", self.real_port), timeout=10) as raw:
                with self.client.wrap_socket(raw, server_hostname="127.0.0.1") as real:
                    real.sendall(head + b"\r\n\r\n" + body)
                    while True:
                        chunk = real.recv(4096)
                        if not chunk:
                            break
                        sock.sendall(chunk)

    @staticmethod
    def _forged_ack(body):
        top, offset = 0, 0
        while offset < len(body):  # the highest counter of the batch: "all of it is here"
            top = struct.unpack_from(">I", body, offset + 1)[0]
            offset += 1 + body[offset] + 4
        reply = json.dumps(
            {
                "ack": top,
                "stored": 0,
                "duplicates": 0,
                "quarantined": 0,
                "refused": 0,
                "server_time": int(time.time()) - 86400,
                "config": 9,
                "blacklist": 9,
                "commands": 9,
                "blacklist_whole": True,
            }
        ).encode()
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-OneTill-Reply: %s\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (bytes(16).hex().encode(), len(reply), reply)
        )

    def stop(self):
        self.listener.close()


def wait_for(firmware, done, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, firmware.faults
        firmware.read_message(0.5)


def test_a_malicious_back_end_changes_nothing_then_the_real_one_drains_every_sale_once():
    """The real firmware (tools/sim's, MicroPython at the default 96 KiB heap) behind a proxy
    that holds the certificate, not the BDK. It acks every batch without storing it, puts the
    time back a day and serves a blacklist delta for another base: the terminal keeps every
    record, its offline limit holds (the third card sale is declined), the clock is not
    moved, the delta is refused, and the fault log says why each time. Then, pointed at the
    real back end, it drains its backlog: every record stored once."""
    from test_downlink_sim import backend, new_config
    from test_sim import state_folder

    from tools.host import sim

    state = state_folder("malicious")
    sim.prepare_state(state)
    keys = os.path.join(state, "backend")
    real = sim.Backend(state)  # registers the terminal; its TLS keys are the sim's
    proxy = None
    firmware = None
    lock = sim.StateLock(state)
    try:
        db = os.path.join(state, "backend.db")
        with open(os.path.join(keys, "terminals.json")) as source:
            tid = next(iter(json.load(source)))
        config = new_config(100000)  # merchant 1, cashier 1111; two unsent card sales at most
        config["merchants"]["merchants"][0]["limits"]["max_offline_count"] = 2
        with open(os.path.join(state, "config.json"), "w") as out:
            json.dump(config, out)
        assert backend("config", "set", "--db", db, "--terminal", tid, out.name).returncode == 0
        token_key = os.path.join(keys, "card_token.key")
        for card in ("4000000000000002", "4012888888881881"):  # versions 1 and 2
            added = backend("blacklist", "add", "--db", db, "--token-key-file", token_key, card)
            assert added.returncode == 0, added.stderr
        with open(os.path.join(keys, "bdk.key")) as source:
            bdk = bytes.fromhex(source.read().strip())
        ledger = LedgerDB(db, bdk=bdk)
        delta = ledger.sealed_document(tid, "B", 1)  # version 1 to 2: the second card only
        ledger.close()

        proxy = MaliciousProxy(keys, real.port, delta)
        sim.use_backend(state, "https://127.0.0.1:%d" % proxy.port)
        firmware = sim.Firmware(state, sim.parse_heap("96k") + sim.TLS_ALLOWANCE, lock)
        firmware.wait_for_start()
        wait_for(firmware, lambda: any("config 1 in force" in f for f in firmware.faults))
        wait_for(
            firmware, lambda: any("blacklist 2: a delta from 1" in f for f in firmware.faults)
        )
        assert any(
            f.startswith("downlink refused: blacklist 2: a delta from 1, the list is at 0")
            for f in firmware.faults
        ), firmware.faults

        events = 0

        def keys_in(text):
            nonlocal events
            for _, line in sim.parse_keys(text):
                firmware.send(line)
                events += 1
            firmware.wait_for_events(events)

        def refusals():
            return sum("not tagged for this request" in f for f in firmware.faults)

        keys_in("1 1 1 1 #")
        for number, amount in enumerate(("5 0 0", "6 0 0", "7 0 0")):
            keys_in("1 # %s # 1 card:4111111111111111 #" % amount)
            headline = firmware.screen[2] + firmware.screen[3]
            if number < 2:
                assert "APPROVED" in "".join(firmware.screen), firmware.screen
                wait_for(firmware, lambda n=number: refusals() > n)
            else:  # the two unsent are still unsent: the offline count holds
                assert "Offline count" in "".join(firmware.screen), (headline, firmware.screen)
            keys_in("#")
        assert firmware.unsent_count() == 3  # two sales and the decline, every one kept
        assert not any(f.startswith("clock set") for f in firmware.faults), firmware.faults
        assert not any("blacklist 2:" in f and "added" in f for f in firmware.faults)
        firmware.stop()
        firmware = None
        done = {what for _, what in proxy.seen}
        assert done == {"relayed", "forged an ack", "served a delta from base 1"}, proxy.seen
        stored = sqlite3.connect(db)
        try:
            assert stored.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0
        finally:
            stored.close()

        sim.use_backend(state, real.server.url)  # the real back end: the backlog drains
        firmware = sim.Firmware(state, sim.parse_heap("96k") + sim.TLS_ALLOWANCE, lock)
        firmware.wait_for_start()
        assert firmware.drain(timeout_s=60), firmware.faults
        firmware.stop()
        firmware = None
    finally:
        if firmware is not None:
            firmware.stop()
        if proxy is not None:
            proxy.stop()
        real.stop()
        lock.release()
    stored = sqlite3.connect(db)
    try:
        rows = stored.execute("SELECT counter, kind, amount_minor FROM records").fetchall()
    finally:
        stored.close()
    assert len(rows) == 3 and len({r[0] for r in rows}) == 3, rows
    assert sorted(r[2] for r in rows) == [500, 600, 700], rows


def test_after_the_attacks_the_simulated_terminal_drains_every_sale_once():
    """The simulator's terminal sells offline; the attacks above hit its own back end
    (unsigned, its genuine frames replayed unsigned and under another key, spoofed
    heartbeats, an oversized body): each refused, nothing changed. Then the real firmware
    (MicroPython, 96 KiB) drains its backlog: every sale stored once."""
    from test_sim import SALE, sim, state_folder

    from tools.host import sim as simulator

    state = state_folder("attacked")
    sold = sim(state, SALE + " # " + SALE[len("1 1 1 1 # ") :], "--offline")
    assert sold.returncode == 0, sold.stdout + sold.stderr
    keys = os.path.join(state, "backend")
    real = simulator.Backend(state)
    lock = simulator.StateLock(state)
    firmware = None
    try:
        with open(os.path.join(keys, "terminals.json")) as source:
            tid = next(iter(json.load(source)))
        path = "/v1/terminals/%s/records" % tid
        db = os.path.join(state, "backend.db")
        with open(os.path.join(state, "flash.bin"), "rb") as image:
            image.seek(0x8000)
            genuine = image.read()  # the frames are in here somewhere; any bytes will do
        stranger = TerminalSigner(BDK, OTHER_IK_ID)  # a key of its own, not this terminal's
        context = ssl.create_default_context(cafile=keys + "/ca.pem")
        with httpx.Client(base_url=real.server.url, verify=context) as client:
            before = tables(db)
            for body, headers, status in (
                (frame(0xFFFF0000), {}, 401),
                (frame(0xFFFFFFFF) + frame(1), {}, 401),
                (genuine[:2048], {}, 401),
                (frame(1), stranger.headers("POST", path, frame(1)), 401),
                (frame(2), {"X-OneTill-Status": "cfg=99;bl=99;cmd=99"}, 401),
            ):
                reply = client.post(path, content=body, headers=dict(OCTETS, **headers))
                assert reply.status_code == status, (reply.status_code, reply.text)
            huge = client.post(path, content=b"\0" * (64 * 1024 + 1), headers=dict(OCTETS, **{}))
            assert huge.status_code in (401, 413)
            assert tables(db) == before
        simulator.use_backend(state, real.server.url)
        firmware = simulator.Firmware(
            state, simulator.parse_heap("96k") + simulator.TLS_ALLOWANCE, lock
        )
        firmware.wait_for_start()
        assert firmware.drain(timeout_s=60), firmware.faults
    finally:
        if firmware is not None:
            firmware.stop()
        real.stop()
        lock.release()
    stored = sqlite3.connect(db)
    try:
        rows = stored.execute("SELECT counter, amount_minor FROM records").fetchall()
    finally:
        stored.close()
    assert sorted(rows) == [(rows[0][0], 1234), (rows[0][0] + 1, 1234)], rows
