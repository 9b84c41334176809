"""tools/bench uplink's load: simulated terminals in processes of their own send the back end
batches exactly as a terminal does, and the bench reports what the server did with them.

Every simulated terminal runs pos.uplink.Uplink itself: most on CPython (several terminals
to a process, asyncio), a few on the MicroPython unix port (one a process, over a real
Ledger on the NOR-flash model, booking as the terminal books). So every request is the
terminal's: a new TLS connection, the signed head (X-OneTill-Auth, the heartbeat), the
sealed frames of its queue as the body, `Connection: close`, and the reply's tag checked.

Two loads:

offered  each terminal books sales at a steady rate and, as pos.app does, sends what waits
         SYNC_EVERY_S (plus pos.app's jitter) after its last sync ended: 200 terminals at 5
         sales a second offer 1,000 records/s in batches of about 10.
flood    each terminal starts with a backlog and sends full batches (2 KiB, 41 records)
         back to back: the rate the server sustains.

The parent starts the back end (tools/backend serve, --workers N), registers the terminals,
starts the clients, gives them one start time, and samples the CPU time of the server's
processes (the serving process and its workers, from /proc) at the start and end of the
window, so the server's CPU per record is measured apart from the clients'.
"""

import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for _folder in ("lib", os.path.join("tools", "emu")):
    if os.path.join(ROOT, _folder) not in sys.path:
        sys.path.insert(0, os.path.join(ROOT, _folder))

SYNC_EVERY_S = 2.0  # pos.app.SYNC_EVERY_MS: the wait after a sync, plus up to 1/4 jitter
BATCH_RECORDS = 41  # what fits pos.uplink.BATCH_BYTES (49-byte frames)
BDK = bytes(range(16))
HEARTBEAT = (
    "depth=10;oldest_s=12;counter=80;heap=8000;reset=power;rssi=-60;fw=0.1.0;cfg=1;bl=1;"
    "bld=-;cmd=0"
)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def ik_id_of(number):
    return b"\xbe\x00" + number.to_bytes(6, "big")


def tid_of(number):
    return "B%05d" % number


def sealed_frames(bdk, ik_id, count):
    """`count` (counter, frame) pairs of one terminal's card sales, sealed as pos.seal seals
    them (AES-CBC, then an 8-byte AES-CMAC tag over counter and ciphertext) and framed as
    its queue stores them (length byte, body, CRC-32). The keys come from the back end's
    KeyDeriver and the AES from `cryptography`, 20 times faster on CPython than pos.dukpt
    and pos.seal (test_backend_keys holds the two equal); the back end checks every tag."""
    import struct
    import zlib

    from cryptography.hazmat.primitives import cmac
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from pos.record import CREDIT, SALE, Record
    from pos.seal import TAG_SIZE
    from tools.host.backend.ingest import KeyDeriver

    deriver = KeyDeriver(bdk)
    frames = []
    counter = 0
    for number in range(count):
        counter += 1
        while bin(counter).count("1") > 16:  # counters a terminal never uses (X9.24-3)
            counter += 1
        record = Record(
            SALE, 1, 1234, 978, method=CREDIT, token=b"\x01" * 6, last_four=4242, receipt=number
        )
        data_key, mac_key = deriver.keys(ik_id, counter)
        encryptor = Cipher(algorithms.AES(data_key), modes.CBC(bytes(16))).encryptor()
        body = struct.pack(">I", counter) + encryptor.update(record.pack())
        mac = cmac.CMAC(algorithms.AES(mac_key))
        mac.update(body)
        body += mac.finalize()[:TAG_SIZE]
        frame = bytes([len(body)]) + body
        frames.append((counter, frame + struct.pack("<I", zlib.crc32(frame))))
    return frames


class BookedQueue:
    """The part of pos.txq.TxQueue that pos.uplink uses, over frames sealed beforehand: a
    frame is unsent once its booking time has come and until an ack covers it."""

    def __init__(self, frames, booked_at):
        self.frames = frames
        self.booked_at = booked_at
        self.ack_watermark = 0
        self._first = 0  # index of the oldest frame not acked

    def unsent(self, max_records=0x7FFFFFFF):
        now = time.time()
        for index in range(self._first, min(len(self.frames), self._first + max_records)):
            if self.booked_at[index] > now:
                return
            yield self.frames[index]

    def unsent_count(self):
        return sum(1 for _ in self.unsent())

    def ack(self, watermark):
        self.ack_watermark = watermark
        while self._first < len(self.frames) and self.frames[self._first][0] <= watermark:
            self._first += 1

    def all_acked(self):
        return self._first == len(self.frames)


def client_main():
    """A client process: its terminals from the JSON spec on stdin; `ready` once the frames
    are sealed; then the start time on stdin; then one JSON line of results."""
    from pos.contact import authenticate, sync
    from pos.downlink import derive_downlink_key
    from pos.uplink import Uplink, UplinkError, tls_context

    spec = json.loads(sys.stdin.readline())
    bdk = bytes.fromhex(spec["bdk"])
    with open(spec["ca"], "rb") as file:
        context = tls_context(file.read())
    terminals = []
    for number in spec["terminals"]:
        ik_id = ik_id_of(number)
        frames = sealed_frames(bdk, ik_id, spec["records"])
        uplink = Uplink(None, "127.0.0.1", spec["port"], tid_of(number), context)
        authenticate(uplink, derive_downlink_key(bdk, ik_id))
        uplink.status = lambda: HEARTBEAT
        uplink.timeout_s = spec["timeout_s"]
        terminals.append((number, frames, uplink))
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    end = start + spec["duration_s"]
    rate = spec["rate"]
    retry_s = spec["retry_s"]
    batches = []  # (terminal, started after start s, latency s, records acked, error or "")
    unfinished = []

    async def terminal(number, frames, uplink):
        rng = random.Random(number)
        if rate:  # offered: sales booked at a steady rate from a random moment of the first
            booked_from = start + rng.random() / rate  # second on, the first sync after it
            booked = [booked_from + index / rate for index in range(len(frames))]
            first_sync = start + rng.random() * SYNC_EVERY_S
        else:  # flood: a backlog from the start, sent back to back
            booked = [0.0] * len(frames)
            first_sync = start
        uplink.queue = queue = BookedQueue(frames, booked)
        await asyncio.sleep(max(0.0, first_sync - time.time()))
        while not queue.all_acked():
            now = time.time()
            if now >= end and (not spec["drain"] or now >= end + spec["drain_s"]):
                break
            began = time.perf_counter()
            error = ""
            acked = 0
            try:
                acked = await sync(uplink)
            except UplinkError as exc:
                error = str(exc)
            if acked or error:
                batches.append((number, now - start, time.perf_counter() - began, acked, error))
            if error:
                wait = retry_s
            elif rate:
                wait = SYNC_EVERY_S * (1 + rng.randrange(256) / 1024)  # pos.app's jitter
            else:
                wait = 0
            if spec["drain"] and time.time() >= end and not error:
                wait = min(wait, retry_s)
            await asyncio.sleep(wait)
        if spec["drain"] and not queue.all_acked():
            unfinished.append(number)

    async def run():
        await asyncio.gather(*(terminal(*t) for t in terminals))

    # The clients on uvloop too: its loop and TLS leave more of the cores to the server.
    import uvloop

    uvloop.run(run())
    json.dump({"batches": batches, "unfinished": unfinished}, sys.stdout)
    sys.stdout.write("\n")
    return 0


def process_tree_cpu(pid):
    """CPU seconds (user and system) of a process and every living descendant."""
    return process_tree_times(pid)[0]


def process_tree_times(pid):
    """(CPU seconds, seconds waited on the run queue: runnable but not given a core) of a
    process and every living descendant, their threads summed (/proc's schedstat)."""
    total = waited = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            with open("/proc/%d/stat" % current) as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            for task in os.listdir("/proc/%d/task" % current):
                with open("/proc/%d/task/%s/schedstat" % (current, task)) as schedstat:
                    waited += int(schedstat.read().split()[1]) / 1e9
                with open("/proc/%d/task/%s/children" % (current, task)) as children:
                    pending += [int(child) for child in children.read().split()]
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
    return total, waited


def worker_pids(pid):
    """The worker processes of `serve --workers N` (the children that serve)."""
    with open("/proc/%d/task/%d/children" % (pid, pid)) as children:
        found = [int(child) for child in children.read().split()]
    workers = []
    for child in found:
        try:
            with open("/proc/%d/cmdline" % child, "rb") as cmdline:
                if b"spawn_main" in cmdline.read():
                    workers.append(child)
        except OSError:
            continue
    return workers


class Load:
    """One run: the back end, its ledger and certificates in a scratch folder, the clients."""

    def __init__(
        self,
        terminals=200,
        rate=5.0,
        duration_s=20.0,
        workers=2,
        micropython_terminals=4,
        client_processes=4,
        records=None,
        drain=False,
        drain_s=30.0,
        retry_s=2.0,
        timeout_s=10,
        db=None,
        database_cpu=None,
        client_sessions=True,
    ):
        self.terminals = terminals
        self.rate = rate
        self.duration_s = duration_s
        self.workers = workers
        self.micropython_terminals = min(micropython_terminals, terminals)
        self.client_processes = client_processes
        self.drain = drain
        self.drain_s = drain_s
        self.retry_s = retry_s
        self.timeout_s = timeout_s
        self.db = db
        # Each client process in a session of its own: Linux (autogroup) shares the CPU
        # between sessions first, so clients in the server's session would take their CPU
        # out of the server's share, as terminals elsewhere never do.
        self.client_sessions = client_sessions
        # CPU seconds of a database server the back end uses (PostgreSQL's processes), counted
        # as the server's: a record's cost is the back end's and its database's together.
        self.database_cpu = database_cpu or (lambda: 0.0)
        if records is None:
            # Enough for the window: the rate's worth, or for a flood what a fast server
            # could take from each (about 8,000 records/s in all).
            if rate:
                records = int(rate * duration_s) + 2
            else:
                records = int(8000 * duration_s / terminals) + BATCH_RECORDS
        self.records = records
        # The first round of syncs (terminals start at random moments of it) is not measured.
        self.warmup_s = min(duration_s / 4, SYNC_EVERY_S * 1.25 if rate else 1.0)
        self.scratch = None
        self.server = None
        self.on_start = None  # called with the Load once the window has begun (chaos)

    def __enter__(self):
        from tools.host.backend import LedgerDB, Server, make_certs

        self._scratch = tempfile.TemporaryDirectory()
        self.scratch = self._scratch.name
        make_certs(self.scratch)
        bdk_file = os.path.join(self.scratch, "bdk.key")
        with open(os.open(bdk_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as out:
            out.write(BDK.hex())
        self.ca_der = os.path.join(self.scratch, "ca.der")
        self.db_path = self.db or os.path.join(self.scratch, "ledger.db")
        ledger = LedgerDB(self.db_path)
        for number in range(self.terminals):
            ledger.add_terminal(tid_of(number), ik_id_of(number))
        ledger.close()
        # Workers import FastAPI each: on shared, busy cores that can take longer than the
        # simulator's 15 s.
        self.server = Server(
            self.db_path, bdk_file, self.scratch, workers=self.workers, timeout_s=60
        )
        return self

    def __exit__(self, *exc):
        if self.server is not None:
            self.server.stop()
        self._scratch.cleanup()

    def _python_clients(self, numbers):
        spec = {
            "bdk": BDK.hex(),
            "ca": os.path.join(self.scratch, "ca.der"),
            "port": self.server.port,
            "records": self.records,
            "duration_s": self.duration_s,
            "rate": self.rate,
            "drain": self.drain,
            "drain_s": self.drain_s,
            "retry_s": self.retry_s,
            "timeout_s": self.timeout_s,
        }
        clients = []
        for part in range(self.client_processes):
            mine = numbers[part :: self.client_processes]
            if not mine:
                continue
            process = subprocess.Popen(
                [sys.executable, "-m", "tools.host.benchuplink", "client"],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=self.client_sessions,
            )
            process.stdin.write(json.dumps(dict(spec, terminals=mine)) + "\n")
            process.stdin.flush()
            clients.append(process)
        return clients

    def _micropython_clients(self, numbers):
        from tools.host import mpybuild

        out_dir = mpybuild.build_for_unix_port()
        compiled = os.path.join(out_dir, "benchmp")
        mpybuild.compile_tree("tools/host/benchmp", compiled)
        env = dict(os.environ)
        env["MICROPYPATH"] = ":".join(
            [".frozen", compiled] + [os.path.join(out_dir, p) for p in ("emu", "lib")]
        )
        clients = []
        for number in numbers:
            arguments = (
                tid_of(number),
                BDK,
                ik_id_of(number),
                self.server.port,
                os.path.join(self.scratch, "ca.der"),
                self.records,
                self.rate,
                self.duration_s,
                self.drain_s if self.drain else 0,
                self.retry_s,
                self.timeout_s,
            )
            code = "import uplink_terminal; uplink_terminal.main(%s)" % ", ".join(
                repr(a) for a in arguments
            )
            process = subprocess.Popen(
                [os.path.join(ROOT, ".venv", "bin", "micropython"), "-X", "heapsize=1m", "-c"]
                + [code],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=self.client_sessions,
            )
            clients.append(process)
        return clients

    def run(self):
        """Start every client, wait until all are ready, run the window; the figures."""
        numbers = list(range(self.terminals))
        on_micropython = numbers[: self.micropython_terminals]
        clients = self._micropython_clients(on_micropython)
        clients += self._python_clients(numbers[self.micropython_terminals :])
        try:
            for client in clients:
                if client.stdout.readline().strip() != "ready":
                    raise RuntimeError("a bench client did not start")
            start = time.time() + 0.5
            for client in clients:
                client.stdin.write("%.6f\n" % start)
                client.stdin.flush()
            warmup = self.warmup_s
            time.sleep(max(0.0, start + warmup - time.time()))
            server_cpu, server_wait = process_tree_times(self.server.process.pid)
            server_cpu += self.database_cpu()
            clients_cpu = sum(process_tree_cpu(c.pid) for c in clients)
            load_before = os.getloadavg()[0]
            if self.on_start is not None:
                self.on_start(self)
            time.sleep(max(0.0, start + self.duration_s - time.time()))
            server_cpu_end, server_wait_end = process_tree_times(self.server.process.pid)
            server_cpu = server_cpu_end + self.database_cpu() - server_cpu
            server_wait = server_wait_end - server_wait
            clients_cpu = sum(process_tree_cpu(c.pid) for c in clients) - clients_cpu
            results = []
            for client in clients:
                line = client.stdout.readline()
                results.append(json.loads(line) if line.strip() else None)
                client.wait(timeout=60)
        finally:
            for client in clients:
                if client.poll() is None:
                    client.kill()
                    client.wait()
        if any(result is None for result in results):
            raise RuntimeError("a bench client failed")
        batches, unfinished = [], []
        for result in results:
            batches += [tuple(b) for b in result["batches"]]
            unfinished += result["unfinished"]
        return Figures(
            self, batches, unfinished, (server_cpu, server_wait), clients_cpu, load_before, warmup
        )


class Figures:
    """What one run measured, as `name: value unit` lines."""

    def __init__(self, load, batches, unfinished, server, clients_cpu, load_before, warmup):
        server_cpu, server_wait = server
        self.load = load
        self.batches = batches
        self.unfinished = unfinished
        # Batches begun in the window after the first round of syncs (the warm-up) and
        # answered by its end.
        window = load.duration_s - warmup
        inside = [b for b in batches if warmup <= b[1] and b[1] + b[2] <= load.duration_s]
        self.records = sum(b[3] for b in inside)
        self.rate = self.records / window
        self.failed = sum(1 for b in batches if b[4])
        # Latency from the CPython terminals; the MicroPython ones apart, as their own TLS
        # handshake (mbedTLS, P-256 in software on the unix port) takes about 100 ms of
        # their CPU, which is the client's cost, not the server's.
        latencies = sorted(b[2] for b in inside if not b[4] and not isinstance(b[0], str))
        self.p50_ms = _percentile(latencies, 0.50) * 1000
        self.p99_ms = _percentile(latencies, 0.99) * 1000
        on_micropython = sorted(b[2] for b in inside if not b[4] and isinstance(b[0], str))
        self.micropython_p50_ms = _percentile(on_micropython, 0.50) * 1000
        self.micropython_batches = len(on_micropython)
        self.batch_records = statistics.mean(b[3] for b in inside if not b[4]) if inside else 0
        self.server_cpu_us = server_cpu / self.records * 1e6 if self.records else 0
        self.server_cores = server_cpu / window
        # How long the server's threads were ready to run but waited for a core, per second
        # of CPU they got: near 0 on an idle machine; what other load costs the server.
        self.server_wait_per_cpu = server_wait / server_cpu if server_cpu else 0
        self.clients_cores = clients_cpu / window
        self.load_before = load_before

    def rows(self):
        """(name, value, unit) of every figure; values are numbers but the offered load."""
        load = self.load
        offered = "%.0f" % (load.terminals * load.rate) if load.rate else "flood"
        return [
            ("terminals", load.terminals, "(%d on MicroPython)" % load.micropython_terminals),
            ("workers", load.workers, "processes"),
            ("offered_records_per_s", offered, "records/s"),
            ("records_per_s", self.rate, "records/s"),
            ("batch_records", self.batch_records, "records"),
            ("batch_p50_ms", self.p50_ms, "ms"),
            ("batch_p99_ms", self.p99_ms, "ms"),
            ("micropython_batch_p50_ms", self.micropython_p50_ms, "ms"),
            ("failed_batches", self.failed, "batches"),
            ("server_cpu_us_per_record", self.server_cpu_us, "us"),
            ("server_cpu_cores", self.server_cores, "cores"),
            ("server_runqueue_wait_per_cpu_s", self.server_wait_per_cpu, "s (waiting for a core)"),
            ("clients_cpu_cores", self.clients_cores, "cores"),
            ("load_average", self.load_before, "(1 min, at the start)"),
        ]

    def lines(self, prefix):
        out = []
        for name, value, unit in self.rows():
            if isinstance(value, float):
                value = "%.2f" % value if value < 100 else "%.0f" % value
            out.append("%s_%s: %s %s" % (prefix, name, value, unit))
        return out


def _percentile(values, fraction):
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(len(values) * fraction))]


def kill_one_worker(load):
    """For the chaos run: kill -9 one of the back end's worker processes."""
    workers = worker_pids(load.server.process.pid)
    if not workers:
        raise RuntimeError("no worker process to kill")
    os.kill(workers[0], signal.SIGKILL)
    return workers[0]


def wire_bytes(port, ca_der_path, records=10):
    """(application bytes per sale, handshake bytes) of one batch of `records` sales sent as
    pos.uplink sends it, counted on the socket under CPython's TLS (the terminal's mbedTLS
    handshake differs by some hundred bytes): request head and body, the reply, their TLS
    records; the handshake apart, as a terminal makes one per batch."""
    import socket
    import ssl

    from pos.contact import authenticate, head
    from pos.downlink import derive_downlink_key
    from pos.uplink import Uplink

    number = 0
    frames = sealed_frames(BDK, ik_id_of(number), records)
    uplink = Uplink(None, "127.0.0.1", port, tid_of(number), None)
    authenticate(uplink, derive_downlink_key(BDK, ik_id_of(number)))
    uplink.status = lambda: HEARTBEAT
    uplink.nonce = 1 << 30  # above every counter the load used
    body = b"".join(frame for _, frame in frames)
    request = head(uplink, "POST", "records", body) + body
    context = ssl.create_default_context(cafile=None)
    with open(ca_der_path, "rb") as file:
        context.load_verify_locations(cadata=file.read())
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    counted = {"sent": 0, "received": 0}
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:

        def pump(wanted):
            data = outgoing.read()
            if data:
                sock.sendall(data)
                counted["sent"] += len(data)
            if wanted:
                data = sock.recv(65536)
                counted["received"] += len(data)
                if data:
                    incoming.write(data)
                else:
                    incoming.write_eof()

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pump(True)
        pump(False)
        # TLS 1.3 session tickets follow the handshake: the connection's cost, not the batch's.
        sock.settimeout(0.2)
        try:
            pump(True)
            tls.read(1)
        except (TimeoutError, ssl.SSLWantReadError):
            pass
        sock.settimeout(10)
        handshake = counted["sent"] + counted["received"]
        tls.write(request)
        pump(False)
        reply = b""
        while True:
            try:
                chunk = tls.read(65536)
                if not chunk:
                    break
                reply += chunk
            except ssl.SSLWantReadError:
                pump(True)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            if incoming.eof and not incoming.pending:
                break
    if not reply.startswith(b"HTTP/1.1 200"):
        raise RuntimeError("the wire-size batch was refused: %r" % reply[:80])
    total = counted["sent"] + counted["received"] - handshake
    return total / records, handshake


if __name__ == "__main__":
    if sys.argv[1:] == ["client"]:
        sys.exit(client_main())
    raise SystemExit("usage: python -m tools.host.benchuplink client (tools/bench uplink runs it)")
