"""One simulated terminal of tools/bench uplink on the MicroPython unix port: a real Ledger
on the NOR-flash model books card sales (at `rate` a second, or a backlog of `records`
when rate is 0) and pos.uplink.Uplink sends them as the terminal does, every
SYNC_EVERY_S after the last sync (back to back for a backlog). Prints `ready`, reads the
start time (unix seconds) from stdin, and at the end prints one JSON line of its batches
(as tools/host/benchuplink.py's CPython clients do)."""

import json
import sys
import time

from norflash import NorFlash
from pos.compat import run, sleep_ms, spawn
from pos.contact import authenticate, sync
from pos.derive import derive_initial_key
from pos.downlink import derive_downlink_key
from pos.journal import Journal
from pos.ledger import Ledger
from pos.record import CREDIT, SALE, Record
from pos.txq import TxQueue
from pos.uplink import Uplink, UplinkError, tls_context

SYNC_EVERY_S = 2.0
HEARTBEAT = (
    "depth=10;oldest_s=12;counter=80;heap=8000;reset=power;rssi=-60;fw=0.1.0;cfg=1;bl=1;"
    "bld=-;cmd=0"
)


def main(tid, bdk, ik_id, port, ca_path, records, rate, duration_s, drain_s, retry_s, timeout):
    flash = NorFlash(192, sector_size=1024)
    log = NorFlash(8, sector_size=1024)  # the state log's partition
    storage_key = b"bench-storagekey"
    Journal.provision(log, storage_key, derive_initial_key(bdk, ik_id), ik_id)
    ledger = Ledger(TxQueue(flash), log, storage_key)
    with open(ca_path, "rb") as file:
        context = tls_context(file.read())
    uplink = Uplink(ledger.queue, "127.0.0.1", port, tid, context)
    authenticate(uplink, derive_downlink_key(bdk, ik_id))
    uplink.status = lambda: HEARTBEAT
    uplink.timeout_s = timeout

    def book():
        ledger.book(Record(SALE, 1, 1234, 978, method=CREDIT, token=b"\x01" * 6, last_four=4242))

    if not rate:
        for _ in range(records):
            book()
    print("ready")
    start = float(sys.stdin.readline())
    end = start + duration_s
    batches = []
    state = {"booked": 0 if rate else records}

    async def booking():
        while state["booked"] < records:
            due = start + state["booked"] / rate
            await sleep_ms(max(0, int((due - time.time()) * 1000)))
            book()
            state["booked"] += 1

    async def sending():
        first = start + (0.5 * SYNC_EVERY_S if rate else 0)
        await sleep_ms(max(0, int((first - time.time()) * 1000)))
        while True:
            now = time.time()
            done = state["booked"] >= records and not ledger.queue.unsent_count()
            if done or (now >= end and (not drain_s or now >= end + drain_s)):
                break
            began = time.ticks_us()
            error = ""
            acked = 0
            try:
                acked = await sync(uplink)
            except UplinkError as exc:
                error = str(exc)
            if acked or error:
                latency = time.ticks_diff(time.ticks_us(), began) / 1e6
                batches.append((tid, now - start, latency, acked, error))
            wait = retry_s if error else (SYNC_EVERY_S if rate else 0)
            if drain_s and time.time() >= end and not error:
                wait = min(wait, retry_s)
            await sleep_ms(int(wait * 1000))

    async def main():  # the app's scheduler (pos.compat.run), as the terminal's
        if rate:
            spawn(booking())
        await sending()  # the booking ends with it

    run(main())
    unfinished = [tid] if drain_s and ledger.queue.unsent_count() else []
    print(json.dumps({"batches": batches, "unfinished": unfinished}))
