"""Sale and queue timings on the MicroPython unix port (run by tools/bench queue, 96 KiB heap).

The naive baseline is what a first firmware would do: a JSON line, AES-CBC and HMAC-SHA256
appended to a LittleFS file with flush, on VfsLfs2 over the same NOR-flash model.
"""

import gc
import hashlib
import json
import os
import time

from norflash import NorFlash
from pos.compat import AES_CBC, aes
from pos.journal import Journal
from pos.ledger import Ledger
from pos.record import CASH, CREDIT, DEBIT, MOBILE, SALE, Record
from pos.txq import TxQueue

SECTORS = 128
APPENDS = 300


def line(name, value, unit):
    print("%s: %s %s" % (name, value, unit))


def hmac_sha256(key, message):
    key = key + bytes(64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(message)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def sale(number):
    return Record(
        SALE, 3, 1234, 978, method=CREDIT, receipt=number, token=b"\x01" * 6, last_four=4242
    )


def demo_sale(number):
    """As tools/host/bench.py: the three demo merchants in turn, every payment method."""
    method = (CREDIT, CASH, DEBIT, MOBILE)[number % 4]
    if method == CASH:
        return Record(SALE, 1 + number % 3, 100 + number % 5000, 978, method=method)
    return Record(
        SALE,
        1 + number % 3,
        100 + number % 5000,
        978,
        method=method,
        token=b"\x01\x02\x03\x04\x05\x06",
        last_four=4242,
    )


def time_sale(scratch):
    """The whole sale: Ledger.book through the journal (DUKPT keys, the state log's frames
    and shredding, sealing, the queue append) on the device's two partitions."""
    flash = NorFlash(SECTORS, path=scratch + "/txq.bin")
    log_flash = NorFlash(16, path=scratch + "/statelog.bin")
    Journal.provision(log_flash, bytes(16), bytes(range(16)), bytes(8))
    ledger = Ledger(TxQueue(flash), log_flash, bytes(16))
    gc.collect()
    start = time.ticks_us()
    for number in range(1, APPENDS + 1):
        ledger.book(demo_sale(number))
    elapsed = time.ticks_diff(time.ticks_us(), start)
    flash.close()
    log_flash.close()
    return elapsed / APPENDS


def time_queue_only(path):
    """The queue append alone: program the frame and its CRC, read back, check."""
    flash = NorFlash(SECTORS, path=path)
    queue = TxQueue(flash)
    body = bytearray(44)
    gc.collect()
    start = time.ticks_us()
    for counter in range(1, APPENDS + 1):
        body[2] = counter >> 8
        body[3] = counter & 0xFF
        queue.append(body)
    elapsed = time.ticks_diff(time.ticks_us(), start)
    flash.close()
    return elapsed / APPENDS


def time_recover(path):
    """Fill the whole 512 KiB ring, then time a cold recovery scan."""
    flash = NorFlash(SECTORS, path=path)
    queue = TxQueue(flash)
    body = bytearray(44)
    counter = 0
    while queue.has_room(44):
        counter += 1
        body[0] = counter >> 24
        body[1] = (counter >> 16) & 0xFF
        body[2] = (counter >> 8) & 0xFF
        body[3] = counter & 0xFF
        queue.append(body)
    gc.collect()
    start = time.ticks_ms()
    recovered = TxQueue(flash)
    elapsed = time.ticks_diff(time.ticks_ms(), start)
    assert recovered.found_records == counter
    flash.close()
    return elapsed, counter


def time_baseline(path):
    flash = NorFlash(SECTORS, path=path)
    os.VfsLfs2.mkfs(flash)
    os.mount(os.VfsLfs2(flash), "/benchlfs")
    data_key = bytes(range(16))
    mac_key = bytes(range(16, 32))
    programmed = flash.programmed_bytes
    program_us = flash.program_us
    erases = flash.erases
    gc.collect()
    start = time.ticks_us()
    with open("/benchlfs/sales.log", "a") as log:
        for number in range(1, APPENDS + 1):
            text = json.dumps(
                {
                    "type": "sale",
                    "merchant": 3,
                    "amount": 1234,
                    "currency": 978,
                    "method": "credit",
                    "receipt": number,
                    "last4": "4242",
                }
            )
            padded = text.encode() + b" " * (16 - len(text) % 16)
            sealed = aes(data_key, AES_CBC, bytes(16)).encrypt(padded)
            tag = hmac_sha256(mac_key, sealed)
            log.write(sealed + tag[:16] + b"\n")
            log.flush()
    elapsed = time.ticks_diff(time.ticks_us(), start)
    os.umount("/benchlfs")
    per_sale = (flash.programmed_bytes - programmed) / APPENDS
    us_per_sale = (flash.program_us - program_us) / APPENDS
    erase_per_sale = (flash.erases - erases) / APPENDS
    flash.close()
    return elapsed / APPENDS, per_sale, erase_per_sale, us_per_sale


def main(scratch):
    sale_us = time_sale(scratch)
    line("sale_us", "%.0f" % sale_us, "us")
    line("queue_append_us", "%.0f" % time_queue_only(scratch + "/queue.bin"), "us")
    recover_ms, records = time_recover(scratch + "/full.bin")
    line("recover_ms", recover_ms, "ms")
    line("recover_records", records, "records")
    baseline_us, baseline_bytes, baseline_erases, baseline_program_us = time_baseline(
        scratch + "/lfs.bin"
    )
    line("baseline_append_us", "%.0f" % baseline_us, "us")
    line("baseline_programmed_bytes_per_sale", "%.0f" % baseline_bytes, "bytes")
    line("baseline_erases_per_1000_sales", "%.0f" % (baseline_erases * 1000), "erases")
    line("baseline_program_us_per_sale", "%.0f" % baseline_program_us, "us")
    line("sale_vs_baseline_time", "%.2f" % (baseline_us / sale_us), "x")
    gc.collect()
    line("heap_free_at_end", gc.mem_free(), "bytes")
