"""tools/bench: measured figures as `name: value unit` lines.

queue   flash cost and speed of the transaction queue: bytes and erases per sale over a long
        run with acks and reclaims (counted on the NOR-flash model, the same on any runtime),
        capacity and lifetime of the 512 KiB partition, and append/recover times on the
        MicroPython unix port against a naive LittleFS-file baseline measured in the same run.
sale    heap allocated and time taken by one sale through the terminal on MicroPython.
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
SALES_PER_DAY = 2000
ERASE_CYCLES = 100_000
HEAP = "96k"


def line(name, value, unit):
    print("%s: %s %s" % (name, value, unit), flush=True)


def queue_wear(sales=50_000, batch=10):
    """Run a long workload through the real journal on the flash model and count."""
    from norflash import CutStore, NorFlash
    from pos.journal import Journal
    from pos.record import CREDIT, SALE, Record
    from pos.txq import HEADER_SIZE, SECTOR_SIZE, SPARE_SECTORS, TxQueue

    flash = NorFlash(PARTITION_SECTORS)
    store = CutStore(flash)
    Journal.provision(store, bytes(16), bytes(range(16)), bytes(8))
    journal = Journal(TxQueue(flash), store, bytes(16))
    record = Record(SALE, 3, 1234, 978, method=CREDIT, token=b"\x01" * 6, last_four=4242)
    frame_size = 0
    for number in range(1, sales + 1):
        record.receipt = number
        counter = journal.append(record)
        if number % batch == 0:
            journal.queue.ack(counter)
    for _, _, frame in journal.queue.records():
        frame_size = len(frame)
        break
    per_sector = (SECTOR_SIZE - HEADER_SIZE) // frame_size
    capacity = (PARTITION_SECTORS - SPARE_SECTORS) * per_sector
    programmed = flash.programmed_bytes / sales
    erases_per_1000 = flash.erases * 1000 / sales
    erases_per_sector_per_day = erases_per_1000 * SALES_PER_DAY / 1000 / PARTITION_SECTORS
    lifetime = ERASE_CYCLES / erases_per_sector_per_day / 365
    line("record_bytes_per_sale", frame_size, "bytes")
    line("programmed_bytes_per_sale", "%.1f" % programmed, "bytes")
    line("programmed_to_record_ratio", "%.2f" % (programmed / frame_size), "x")
    line("erases_per_1000_sales", "%.1f" % erases_per_1000, "erases")
    line("erase_spread", max(flash.erase_counts) - min(flash.erase_counts), "erases")
    line("capacity_sales", capacity, "sales")
    line("lifetime_years", "%.0f" % lifetime, "years")


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


def queue_speed():
    """Append and recover times on the MicroPython unix port with a 96 KiB heap."""
    with tempfile.TemporaryDirectory() as scratch:
        run_on_micropython("import queue_speed; queue_speed.main(%r)" % scratch)


def sale_heap():
    """Heap allocated per sale on the MicroPython unix port. The whole core is loaded from
    .mpy into the heap here (no ROMFS), so the heap is larger than the device's 96 KiB app
    heap; what is measured is the allocation per sale, which does not depend on it."""
    run_on_micropython("import sale_heap", heap="256k")


def main(argv):
    parser = argparse.ArgumentParser(prog="tools/bench", description=__doc__.split("\n")[0])
    parser.add_argument("suite", choices=["queue", "sale"], help="which benchmark to run")
    args = parser.parse_args(argv)
    if args.suite == "queue":
        queue_wear()
        queue_speed()
    elif args.suite == "sale":
        sale_heap()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
