"""tools/bench: measured figures as `name: value unit` lines.

queue   flash cost and speed of the whole sale (queue + state log, through the real ledger
        with the three demo merchants): bytes and erases per sale over a long run with acks,
        reclaims, checkpoints and Z reports (counted on the NOR-flash model, the same on any
        runtime), device flash time priced from a W25Q32 datasheet, capacity and lifetime of
        the partition that wears first, and sale/append/recover times on the MicroPython unix
        port against a naive LittleFS-file baseline measured in the same run.
sale    heap allocated and time taken by one sale through the terminal on MicroPython.
ingest  records per second one back-end process ingests in process (no HTTP) on SQLite and
        on PostgreSQL from 20 terminals' full batches, key derivation per record, the
        COMMIT per batch.
blacklist  bytes per entry and lookup time of a 10,000-card blacklist on MicroPython.
heap    the lowest app heap at which the firmware gets through a scripted busy day in the
        simulator on five fresh terminals, offline and with the back end, and the margin
        that leaves below the default 96 KiB (tools/host/benchheap.py).
update  signature size, verify time and peak heap of the terminal's release check on
        MicroPython (tools/release keys), and a W8 key's verify time for comparison.
uplink  what signing a request and checking its reply cost the terminal on MicroPython
        (heap kept, garbage, time); the back end (serve --workers 2) under load from
        terminals in processes of their own, pos.uplink on CPython and on MicroPython
        (tools/host/benchuplink.py): 200 terminals offering 1,000 records/s, then a flood of
        full batches for the sustained rate; records/s, batch latency p50/p99, the server's
        CPU per record; bytes on the wire per sale. Median of 3 runs, on SQLite, then on
        PostgreSQL (a server of the bench's own).
"""

import argparse
import os
import subprocess
import sys
import tempfile

from tools.host import mpybuild

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "lib"), os.path.join(ROOT, "tools", "emu")]

PARTITION_SECTORS = 128  # the 512 KiB txq partition
STATELOG_SECTORS = 16  # the 64 KiB statelog partition
SALES_PER_DAY = 2000
ERASE_CYCLES = 100_000
HEAP = "96k"
# The device's flash time is priced by the flash model with one datasheet, the Winbond
# W25Q32JV's typical figures (tools/emu/norflash.py): a program command 30 us for its first
# byte and 2.5 us for each further one, at most 0.7 ms for a whole 256-byte page; a 4 KiB
# sector erase 45 ms. Reads (microseconds over SPI) are not priced.
HEARTBEAT = (
    "depth=10;oldest_s=12;counter=80;heap=8000;reset=power;rssi=-60;fw=0.1.0;cfg=1;bl=1;cmd=0"
)


def line(name, value, unit):
    print("%s: %s %s" % (name, value, unit), flush=True)


def device_flash_ms(program_us, erases):
    from norflash import SECTOR_ERASE_US

    return (program_us + erases * SECTOR_ERASE_US) / 1000


def demo_sale(number):
    """The three demo merchants in turn, every payment method, card sales with a token."""
    from pos.record import CASH, CREDIT, DEBIT, MOBILE, SALE, Record

    method = (CREDIT, CASH, DEBIT, MOBILE)[number % 4]
    card = {"token": b"\x01\x02\x03\x04\x05\x06", "last_four": 4242} if method != CASH else {}
    return Record(
        SALE,
        1 + number % 3,
        100 + number % 5000,
        978,
        method=method,
        time=1_795_000_000 + number * 30,
        **card,
    )


def queue_wear(sales=12_000, batch=10):
    """A long run of whole sales through the real ledger (journal, queue, state log) on the
    flash model, with acks every batch sales and a Z for each merchant every day's worth."""
    from norflash import NorFlash
    from pos.journal import Journal
    from pos.ledger import Ledger
    from pos.txq import HEADER_SIZE, SECTOR_SIZE, SPARE_SECTORS, TxQueue

    flash = NorFlash(PARTITION_SECTORS)
    log_flash = NorFlash(STATELOG_SECTORS)
    Journal.provision(log_flash, bytes(16), bytes(range(16)), bytes(8))
    ledger = Ledger(TxQueue(flash), log_flash, bytes(16))
    start = (flash.programmed_bytes, flash.program_us, flash.erases)
    log_start = (log_flash.programmed_bytes, log_flash.program_us, log_flash.erases)
    log_erases_before = list(log_flash.erase_counts)
    frame_size = 0
    for number in range(1, sales + 1):
        counter = ledger.book(demo_sale(number))
        if number % batch == 0:
            ledger.queue.ack(counter)
        if number % SALES_PER_DAY == 0:
            for merchant in (1, 2, 3):
                ledger.book(ledger.totals.settlement(merchant, 978))
    for _, _, frame in ledger.queue.records():
        frame_size = len(frame)
        break
    queue_bytes = flash.programmed_bytes - start[0]
    log_bytes = log_flash.programmed_bytes - log_start[0]
    queue_erases = flash.erases - start[2]
    log_erases = log_flash.erases - log_start[2]
    program_us = flash.program_us - start[1] + log_flash.program_us - log_start[1]
    per_sector = (SECTOR_SIZE - HEADER_SIZE) // frame_size
    capacity = (PARTITION_SECTORS - SPARE_SECTORS) * per_sector
    programmed = queue_bytes / sales
    erases_per_1000 = queue_erases * 1000 / sales
    line("record_bytes_per_sale", frame_size, "bytes")
    line("programmed_bytes_per_sale", "%.1f" % programmed, "bytes")
    line("programmed_to_record_ratio", "%.2f" % (programmed / frame_size), "x")
    line("erases_per_1000_sales", "%.1f" % erases_per_1000, "erases")
    line("erase_spread", max(flash.erase_counts) - min(flash.erase_counts), "erases")
    line("capacity_sales", capacity, "sales")
    # The whole sale: the queue and the state log (registers, the record, checkpoints).
    line("statelog_programmed_bytes_per_sale", "%.1f" % (log_bytes / sales), "bytes")
    line("sale_programmed_bytes", "%.1f" % ((queue_bytes + log_bytes) / sales), "bytes")
    line("sale_erases_per_1000", "%.1f" % ((queue_erases + log_erases) * 1000 / sales), "erases")
    sale_ms = device_flash_ms(program_us, queue_erases + log_erases) / sales
    line("device_flash_ms_per_sale", "%.2f" % sale_ms, "ms")
    # Wear: erases per sector per day at SALES_PER_DAY, for each partition; the one that
    # wears first sets the lifetime.
    worn = [e - b for e, b in zip(log_flash.erase_counts, log_erases_before, strict=True)]
    queue_per_day = queue_erases / sales * SALES_PER_DAY / PARTITION_SECTORS
    log_per_day = max(worn) / sales * SALES_PER_DAY
    queue_years = ERASE_CYCLES / queue_per_day / 365
    log_years = ERASE_CYCLES / log_per_day / 365
    line("queue_lifetime_years", "%.0f" % queue_years, "years")
    line("statelog_lifetime_years", "%.0f" % log_years, "years")
    line("lifetime_years", "%.0f" % min(queue_years, log_years), "years")
    return sale_ms


def run_on_micropython(code, heap=HEAP):
    """Run a statement on the MicroPython unix port with the compiled core and benchmarks on
    the path (.mpy files, loaded into the heap as a stock-firmware deploy would)."""
    out_dir = mpybuild.build_for_unix_port()
    compiled = os.path.join(out_dir, "benchmp")
    mpybuild.compile_tree("tools/host/benchmp", compiled)
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join(
        [".frozen", compiled] + [os.path.join(out_dir, p) for p in ("emu", "lib")]
    )
    result = subprocess.run(
        [os.path.join(ROOT, ".venv", "bin", "micropython"), "-X", "heapsize=" + heap, "-c", code],
        env=env,
        cwd=ROOT,
        text=True,
        capture_output=True,
    )
    sys.stdout.write(result.stdout)
    if result.returncode:
        sys.stderr.write(result.stderr)
        raise SystemExit("benchmark failed on MicroPython")
    return result.stdout


def queue_speed(sale_ms):
    """Sale, append and recover times on the MicroPython unix port with a 96 KiB heap, and
    the baseline's device flash time priced like the whole sale's."""
    with tempfile.TemporaryDirectory() as scratch:
        # The core is loaded from .mpy into the heap here (no ROMFS), so it needs more than
        # the device's 96 KiB app heap; times do not depend on it.
        code = "import queue_speed; queue_speed.main(%r)" % scratch
        output = run_on_micropython(code, heap="192k")
    figures = dict(row.split(": ", 1) for row in output.splitlines() if ": " in row)
    program_us = float(figures["baseline_program_us_per_sale"].split()[0])
    erases = float(figures["baseline_erases_per_1000_sales"].split()[0]) / 1000
    baseline_ms = device_flash_ms(program_us, erases)
    line("baseline_device_flash_ms_per_sale", "%.2f" % baseline_ms, "ms")
    line("device_flash_time_ratio", "%.1f" % (baseline_ms / sale_ms), "x")


def sale_heap():
    """Heap allocated per sale on the MicroPython unix port. The whole core is loaded from
    .mpy into the heap here (no ROMFS), so the heap is larger than the device's 96 KiB app
    heap; what is measured is the allocation per sale, which does not depend on it."""
    run_on_micropython("import sale_heap", heap="256k")


def uplink_load(runs=3, workers=2):
    """The back end under the terminals' load (tools/host/benchuplink.py): 200 terminals
    offering 1,000 records/s, then a flood of full batches for the sustained rate; each
    `runs` times on a new ledger, the median printed with every run's figure beside it. On
    SQLite (uplink_*), then on PostgreSQL (uplink_pg_*, a server of the bench's own, its
    CPU counted as the back end's) where this back end has that store."""
    from tools.host import benchuplink

    wire = _uplink_store(benchuplink, "uplink", runs, workers, lambda: (None, None))
    # The terminal's request as pos.uplink sends it, the reply, their TLS records; the
    # handshake (a new connection every batch) apart.
    line("uplink_bytes_per_sale", "%.0f" % wire[0], "bytes (batches of 10)")
    line("uplink_handshake_bytes", wire[1], "bytes a batch (TLS 1.3, session tickets)")
    try:
        from tools.host.pgserver import PostgresServer, PostgresUnavailable
    except ImportError:
        line("uplink_pg", "none", "(this back end has no PostgreSQL store)")
        return
    try:
        with PostgresServer() as postgres:
            _uplink_store(
                benchuplink,
                "uplink_pg",
                runs,
                workers,
                lambda: (postgres.new_database(), postgres.cpu_seconds),
            )
    except PostgresUnavailable as exc:
        line("uplink_pg", "none", "(%s)" % exc)


def _uplink_store(benchuplink, prefix, runs, workers, new_ledger):
    """Both loads on one store, `runs` times each on a new ledger; the wire sizes."""
    import statistics

    loads = (
        (prefix, dict(terminals=200, rate=5.0, duration_s=20.0)),
        (prefix + "_flood", dict(terminals=40, rate=0, duration_s=10.0)),
    )
    wire = None
    for name_prefix, options in loads:
        figures = []
        for _ in range(runs):
            db, database_cpu = new_ledger()
            with benchuplink.Load(
                workers=workers, db=db, database_cpu=database_cpu, **options
            ) as load:
                figures.append(load.run())
                if wire is None:
                    wire = benchuplink.wire_bytes(load.server.port, load.ca_der)
        rows = [f.rows() for f in figures]
        for index, (name, _, unit) in enumerate(rows[0]):
            values = [row[index][1] for row in rows]
            if isinstance(values[0], str):
                shown = values[0]
            else:
                middle = statistics.median(values)
                shown = ("%.0f" if middle >= 100 or middle == int(middle) else "%.2f") % middle
                if len(set(values)) > 1:
                    unit += " (runs: %s)" % ", ".join(
                        ("%.0f" if v >= 100 or v == int(v) else "%.2f") % v for v in values
                    )
            line("%s_%s" % (name_prefix, name), shown, unit)
    return wire


def ingest_frames(bdk, ik_id, count):
    """`count` sealed frames of one terminal, as its queue stores them (counters from 1)."""
    import struct
    import zlib

    from pos.derive import derive_initial_key
    from pos.dukpt import USAGE_DATA_ENCRYPT, USAGE_MAC_GENERATION, DukptTerminal
    from pos.record import CREDIT, SALE, Record
    from pos.seal import Sealer

    dukpt = DukptTerminal.load_initial_key(derive_initial_key(bdk, ik_id), ik_id)
    sealer = Sealer()
    frames = []
    for number in range(count):
        record = Record(
            SALE, 1, 1234, 978, method=CREDIT, token=b"\x01" * 6, last_four=4242, receipt=number
        )
        counter, _, keys = dukpt.next_keys((USAGE_DATA_ENCRYPT, USAGE_MAC_GENERATION))
        body = bytes(sealer.seal(record.pack(), counter, keys[0], keys[1]))
        frame = bytes([len(body)]) + body
        frames.append((counter, frame + struct.pack("<I", zlib.crc32(frame))))
    return frames


def ingest(terminals=20, batches=12, batch_records=41, runs=3):
    """Records per second one back-end process ingests in process (no HTTP, no TLS): full
    terminal batches (2 KiB, 41 records) from `terminals` terminals in turn, on SQLite and
    on PostgreSQL (a server of the bench's own on loopback, tools/host/pgserver.py); the key
    derivation alone over the same records in the same order; the durable COMMIT's cost.
    The median of `runs` runs, each on a new ledger. SQLite's lines keep their old names;
    PostgreSQL's say `ingest_pg_`."""
    import statistics
    import time

    from tools.host.backend import LedgerDB
    from tools.host.backend.ingest import KeyDeriver
    from tools.host.pgserver import PostgresServer

    bdk = bytes(range(16))
    fleet = []
    for number in range(terminals):
        ik_id = b"\xbe\x00" + number.to_bytes(6, "big")
        fleet.append(("B%05d" % number, ik_id, ingest_frames(bdk, ik_id, batches * batch_records)))
    # Round after round, each terminal sends its next batch: what a busy fleet looks like.
    work = []
    for batch in range(batches):
        for tid, ik_id, frames in fleet:
            chosen = frames[batch * batch_records : (batch + 1) * batch_records]
            work.append((tid, ik_id, chosen))
    records = terminals * batches * batch_records

    def measure(new_ledger, server_cpu=lambda: 0.0):
        rates, cpu_rates, commits, server_us = [], [], [], []
        for _ in range(runs):
            db = LedgerDB(new_ledger(), bdk)
            for tid, ik_id, _ in fleet:
                db.add_terminal(tid, ik_id)
            before_s, before = db.commit_seconds, db.commits
            started, cpu, server = time.perf_counter(), time.process_time(), server_cpu()
            for tid, _, chosen in work:
                result = db.ingest(tid, b"".join(frame for _, frame in chosen))
                assert result["stored"] == len(chosen), result
            rates.append(records / (time.perf_counter() - started))
            server = server_cpu() - server
            cpu_rates.append(records / (time.process_time() - cpu + server))
            server_us.append(server / records * 1e6)
            commits.append((db.commit_seconds - before_s) / (db.commits - before) * 1000)
            db.close()
        figures = (rates, cpu_rates, commits, server_us)
        return [statistics.median(figure) for figure in figures]

    derives = []
    for _ in range(runs):
        deriver = KeyDeriver(bdk)
        started = time.perf_counter()
        for _, ik_id, chosen in work:
            for counter, _ in chosen:
                deriver.keys(ik_id, counter)
        derives.append((time.perf_counter() - started) / records * 1e6)
    with tempfile.TemporaryDirectory() as scratch:
        made = []

        def sqlite_ledger():
            made.append(os.path.join(scratch, "ingest%d.db" % len(made)))
            return made[-1]

        sqlite = measure(sqlite_ledger)
    with PostgresServer() as server:
        postgres = measure(server.new_database, server.cpu_seconds)
    line("ingest_records", records, "records")
    line("ingest_batch_records", batch_records, "records")
    line("derive_us_per_record", "%.1f" % statistics.median(derives), "us")
    for store, (rate, cpu_rate, commit, _) in (("", sqlite), ("_pg", postgres)):
        line("ingest%s_records_per_s" % store, "%.0f" % rate, "records/s")
        # CPU seconds, the back end's process and (PostgreSQL) the database server's
        # together: what one core does when the disk's fsync is not the bottleneck.
        line("ingest%s_records_per_cpu_s" % store, "%.0f" % cpu_rate, "records/s")
        line("commit%s_ms_per_batch" % store, "%.2f" % commit, "ms")
    # The database server's share alone: what sizes the database host.
    line("ingest_pg_server_cpu_us_per_record", "%.0f" % postgres[3], "us")


def backend_auth(rounds=2000):
    """What checking a terminal's request signature costs the back end (in-process, one
    thread: the head only, before any body is read)."""
    import time

    from tools.host.backend import LedgerDB
    from tools.host.linkclient import TerminalSigner

    bdk, ik_id = bytes(range(16)), bytes(8)
    with tempfile.TemporaryDirectory() as scratch:
        db = LedgerDB(os.path.join(scratch, "auth.db"), bdk)
        db.add_terminal("B00001", ik_id)
        signer = TerminalSigner(bdk, ik_id)
        path = "/v1/terminals/B00001/records"
        signed = [
            signer.headers("POST", path, bytes(490), HEARTBEAT)["X-OneTill-Auth"]
            for _ in range(rounds)
        ]
        started = time.perf_counter()
        for auth in signed:
            db.authenticate("B00001", "POST", path, HEARTBEAT, auth)
        elapsed = time.perf_counter() - started
        db.close()
    line("backend_auth_check_us", "%.0f" % (elapsed / rounds * 1e6), "us")


def blacklist(entries=10_000):
    """A 10,000-token file as the terminal keeps it, searched on MicroPython."""
    import struct

    from pos.blacklist import HEADER_SIZE

    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "blacklist")
        with open(path, "wb") as out:
            out.write(b"BL" + struct.pack(">II", 1, entries))
            for number in range(0, 2 * entries, 2):  # even numbers: half the probes hit
                out.write(struct.pack(">HI", 0x7A00, number * 7919))
        size = os.path.getsize(path)
        line("blacklist_entries", entries, "entries")
        line("blacklist_bytes_per_entry", "%.1f" % ((size - HEADER_SIZE) / entries), "bytes")
        run_on_micropython(
            "import blacklist_bench; blacklist_bench.main(%r, %d)" % (path, entries)
        )


def update(releases=8):
    """The terminal's check of a release made by tools/release, on MicroPython: signature
    size, mean verify time over releases signed with different leaves, peak heap."""
    from hsslms import LMOTS_ALGORITHM_TYPE, LMS_ALGORITHM_TYPE, HSS_Priv

    from tools.host import release

    quiet = lambda text: None  # noqa: E731
    with tempfile.TemporaryDirectory() as scratch:
        key = os.path.join(scratch, "key")
        release.keygen(key, say=quiet)
        image = release.build_image()
        paths = [os.path.join(scratch, "%d.bin" % version) for version in range(1, releases + 1)]
        for version, path in enumerate(paths, 1):
            release.build(key, version, path, image_path=image, say=quiet)
        w8_key = HSS_Priv(
            [LMS_ALGORITHM_TYPE.LMS_SHA256_M32_H5], LMOTS_ALGORITHM_TYPE.LMOTS_SHA256_N32_W8
        )
        w8_fixture = os.path.join(scratch, "w8.bin")
        with open(w8_fixture, "wb") as out:
            out.write(w8_key.gen_pub().get_pubkey())
            for number in range(releases):
                message = b"release header %d" % number
                out.write(len(message).to_bytes(2, "big") + message + w8_key.sign(message))
        public_key = os.path.join(key, release.PUBLIC_KEY_FILE)
        run_on_micropython(
            "import update_bench; update_bench.main(%r, %r, %r)" % (public_key, paths, w8_fixture)
        )


def main(argv):
    parser = argparse.ArgumentParser(prog="tools/bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "suite",
        choices=["queue", "sale", "heap", "uplink", "ingest", "blacklist", "update", "lockout"],
        help="which benchmark to run",
    )
    parser.add_argument("--runs", type=int, default=3, help="uplink: runs of each load")
    parser.add_argument("--workers", type=int, default=2, help="uplink: back-end workers")
    parser.add_argument(
        "--batch-records",
        type=int,
        default=41,
        help="ingest: records a batch (41: a full 2 KiB batch; 10: the terminal's usual)",
    )
    args = parser.parse_args(argv)
    if args.suite == "queue":
        queue_speed(queue_wear())
    elif args.suite == "sale":
        sale_heap()
    elif args.suite == "heap":
        from tools.host import benchheap

        benchheap.run()
    elif args.suite == "uplink":
        run_on_micropython("import uplink_auth; uplink_auth.main()")
        backend_auth()
        uplink_load(runs=args.runs, workers=args.workers)
    elif args.suite == "ingest":
        ingest(batch_records=args.batch_records)
    elif args.suite == "blacklist":
        blacklist()
    elif args.suite == "update":
        update()
    elif args.suite == "lockout":
        with tempfile.TemporaryDirectory() as scratch:
            run_on_micropython("import lockout_bench; lockout_bench.main(%r)" % scratch)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
