"""tools/sim end to end: the real firmware on the MicroPython unix port, driven by scripted
keys, its flash image read back with the back end's keys."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from binascii import unhexlify

from norflash import NorFlash
from pos.derive import derive_initial_key, derive_transaction_key, derive_working_key, ksn_bytes
from pos.dukpt import USAGE_DATA_ENCRYPT, USAGE_MAC_GENERATION
from pos.record import Record
from pos.seal import Sealer
from pos.txq import TxQueue
from tools.host.sim import StateLock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SALE = "1 1 1 1 # 2 # 1 2 3 4 # 4 #"


def state_folder(name):
    """A fresh state folder under build/scratch, the same length on every machine."""
    import shutil

    folder = os.path.join(ROOT, "build", "scratch", "sim-" + name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    return folder


def sim(state, keys, *flags, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "tools.host.sim", "--state", str(state), "--keys", keys, *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stored_records(state):
    """Every record in STATE/flash.bin's queue, opened with the BDK as the back end would."""
    image = os.path.join(state, "flash.bin")
    with open(image, "rb") as source:
        source.seek(0x8000)
        table = source.read(0xC00)
    partitions = {}
    for start in range(0, len(table), 32):
        if table[start : start + 2] != b"\xaa\x50":
            break
        offset = int.from_bytes(table[start + 4 : start + 8], "little")
        size = int.from_bytes(table[start + 8 : start + 12], "little")
        partitions[table[start + 12 : start + 28].rstrip(b"\x00").decode()] = (offset, size)
    offset, size = partitions["txq"]
    with open(os.path.join(state, "backend", "bdk.key")) as source:
        bdk = unhexlify(source.read().strip())
    with open(os.path.join(state, "backend", "terminals.json")) as source:
        ik_id = unhexlify(next(iter(json.load(source).values()))["ik_id"])
    ik = derive_initial_key(bdk, ik_id)
    flash = NorFlash(size // 4096, path=image, offset=offset)
    records = []
    for counter, _, frame in TxQueue(flash).records():
        ksn = ksn_bytes(ik_id, counter)
        key = derive_transaction_key(ik, ksn)
        plain = Sealer().open(
            bytes(frame[1:-4]),
            derive_working_key(key, ksn, USAGE_DATA_ENCRYPT),
            derive_working_key(key, ksn, USAGE_MAC_GENERATION),
        )
        records.append(Record.unpack(bytes(plain)))
    flash.close()
    return records


def test_scripted_sale_prints_and_continues():
    state = state_folder("sale")
    first = sim(state, SALE, "--offline")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "new terminal SIM" in first.stdout
    assert "|APPROVED        |" in first.stdout
    assert "|Receipt        1|" in first.stdout
    with open(os.path.join(state, "printer.txt")) as paper:
        printed = paper.read()
    assert "Tea House" in printed and "12.34" in printed and "CUSTOMER COPY" in printed
    assert not os.path.exists(os.path.join(state, "provision.json"))  # consumed
    second = sim(state, SALE, "--offline")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "|Receipt        2|" in second.stdout
    records = stored_records(state)
    assert [(r.merchant, r.amount_minor, r.receipt) for r in records] == [
        (2, 1234, 1),
        (2, 1234, 2),
    ]


def test_bad_key_token_is_refused():
    state = state_folder("token")
    result = sim(state, "1 1 1 1 # 2 # 1 2 3 4 # 4 # X", "--offline")
    assert result.returncode == 2
    assert "unknown key token 'X'" in result.stdout
    assert "link:up|down" in result.stdout
    # Checked before the first token was sent: no sale booked, not even a terminal made.
    assert "APPROVED" not in result.stdout
    assert not os.path.exists(os.path.join(state, "flash.bin"))


def test_killed_at_any_moment_loses_and_doubles_nothing():
    state = state_folder("kill")
    assert sim(state, "1 1 1 1 #", "--offline").returncode == 0  # provision first
    rng = random.Random(7)
    approved = set()
    script = "1 1 1 1 # " + " ".join("2 # %d 0 0 # 4 # #" % (n % 9 + 1) for n in range(12))
    for _ in range(4):
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tools.host.sim",
                "--state",
                str(state),
                "--offline",
                "--keys",
                script,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        time.sleep(rng.uniform(1.0, 4.0))
        os.killpg(process.pid, signal.SIGKILL)  # the simulator and its firmware, at once
        output = process.communicate()[0]
        # The firmware finishes the event in hand before it ends (it holds the state
        # folder's lock until then): read the flash only once it has.
        StateLock(str(state), wait_s=10).release()
        # Every receipt the cashier saw approved must be on the flash.
        screens = output.split("+----------------+")
        for screen in screens:
            if "|APPROVED        |" in screen:
                approved.add(int(re.search(r"\|Receipt +(\d+)\|", screen).group(1)))
    receipts = [record.receipt for record in stored_records(state)]
    assert receipts == sorted(set(receipts)), "a sale stored twice"
    assert receipts == list(range(1, len(receipts) + 1)), "a gap in the receipts"
    assert approved <= set(receipts), "an approved sale was lost"
    assert approved, "the kills came before any sale: the test proved nothing"
    # 1.00, not SALE's 12.34: when the kills let only a few 1.00 and 2.00 sales through, 12.34
    # is above ten times their median and asks for a supervisor (the anomaly rule).
    after = sim(state, "1 1 1 1 # 2 # 1 0 0 # 4 #", "--offline")
    assert after.returncode == 0, after.stdout + after.stderr
    assert "|Receipt %8d|" % (len(receipts) + 1) in after.stdout


def backend_report(state):
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.host.backend",
            "report",
            "--json",
            "--db",
            os.path.join(state, "backend.db"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    return {entry["number"]: entry for entry in json.loads(shown.stdout)["merchants"]}


def x_report_net(output):
    """The NET line of the last X report the simulator printed, in minor units."""
    nets = re.findall(r"^\s+NET\s+(-?\d+)\.(\d\d)$", output, re.M)
    whole, cents = nets[-1]
    return int(whole) * 100 + int(cents)


def test_drained_sales_match_the_terminals_x_reports():
    state = state_folder("drain")
    keys = (
        "1 1 1 1 # 2 # 1 2 3 4 # 4 # # 2 # 5 0 0 # 1 card:4111111111111111 # # "
        "3 # 9 9 # 4 # # A 1 # # A 3 2 #"
    )
    result = sim(state, keys, "--drain")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "drained: the back end has every record" in result.stdout
    report = backend_report(state)
    assert report[2]["net_total_minor"] == x_report_net(result.stdout) == 1734
    assert report[3]["net_total_minor"] == 0  # the 0.99 sale was voided
    assert report[3]["voids_count"] == 1
    assert report[2]["name"] == "Tea House" and len(report[2]["merchant_id"]) == 15


def test_offline_sales_reach_the_back_end_when_it_is_up():
    state = state_folder("late")
    offline = sim(state, "1 1 1 1 # 1 # 2 5 0 # 4 #", "--offline")
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert "|OFFLINE         |" in offline.stdout
    later = sim(state, "1", "--drain")
    assert later.returncode == 0, later.stdout + later.stderr
    assert backend_report(state)[1]["sales_total_minor"] == 250
    again = sim(state, "1", "--drain")  # nothing new: nothing stored twice
    assert again.returncode == 0
    assert backend_report(state)[1]["sales_count"] == 1


def test_killed_mid_upload_every_sale_reaches_the_back_end_once():
    import sqlite3

    state = state_folder("upkill")
    assert sim(state, "1 1 1 1 #", "--offline").returncode == 0
    rng = random.Random(11)
    approved = set()
    script = "1 1 1 1 # " + " ".join("1 # %d 5 # 4 # #" % (n % 9 + 1) for n in range(10))
    for _ in range(3):
        process = subprocess.Popen(
            [sys.executable, "-m", "tools.host.sim", "--state", str(state), "--keys", script],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        time.sleep(rng.uniform(3.0, 6.0))  # the back end is up and batches are flowing
        os.killpg(process.pid, signal.SIGKILL)  # terminal, back end and all, mid-upload
        output = process.communicate()[0]
        for screen in output.split("+----------------+"):
            if "|APPROVED        |" in screen:
                approved.add(int(re.search(r"\|Receipt +(\d+)\|", screen).group(1)))
    done = sim(state, "1", "--drain")
    assert done.returncode == 0, done.stdout + done.stderr
    db = sqlite3.connect(os.path.join(state, "backend.db"))
    receipts = [row[0] for row in db.execute("SELECT receipt FROM records ORDER BY counter")]
    db.close()
    assert approved, "the kills came before any sale: the test proved nothing"
    assert len(receipts) == len(set(receipts)), "a sale stored twice"
    assert approved <= set(receipts), "an approved sale never reached the back end"
    assert receipts == list(range(1, len(receipts) + 1))


def test_another_back_end_by_url():
    from tools.host.backend import Server

    state = state_folder("url")
    first = sim(state, "1", "--drain")  # makes the state, its CA and registers the terminal
    assert first.returncode == 0, first.stdout + first.stderr
    keys = os.path.join(state, "backend")
    server = Server(os.path.join(state, "backend.db"), os.path.join(keys, "bdk.key"), keys)
    try:
        result = sim(state, SALE, "--drain", "--backend", server.url)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "back end at " + server.url in result.stdout
    finally:
        server.stop()
    assert backend_report(state)[2]["sales_total_minor"] == 1234
    bad = sim(state, SALE, "--backend", "http://nowhere")
    assert bad.returncode == 2 and "https://HOST:PORT" in bad.stdout


def _luhn_complete(prefix):
    """prefix with the check digit that makes it Luhn-valid."""
    total = 0
    for i, digit in enumerate(reversed(prefix)):
        value = int(digit) * (2 if i % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return prefix + str((10 - total % 10) % 10)


def _forms(number):
    """Every way a card number could sit in a flash image in clear."""
    digits = number.encode()
    value = int(number)
    padded = number + ("F" if len(number) % 2 else "")
    yield "ascii", digits
    yield "ascii reversed", digits[::-1]
    yield "utf-16", number.encode("utf-16-le")
    yield "bcd", unhexlify(padded)
    yield "bcd, nibbles swapped", bytes((b >> 4) | ((b & 15) << 4) for b in unhexlify(padded))
    for size in ((value.bit_length() + 7) // 8, 8):
        yield "binary big-endian", value.to_bytes(size, "big")
        yield "binary little-endian", value.to_bytes(size, "little")
    for start in range(len(number) - 5):  # any 6 digits of it (more than the last four)
        yield "ascii digits %d-%d" % (start, start + 6), digits[start : start + 6]


def test_no_card_number_or_payment_code_on_the_flash_in_any_form():
    read = _luhn_complete("492938127465091")
    keyed = _luhn_complete("541367289104523")
    amex = _luhn_complete("37828224631000")
    code = "283746519203847561"  # a mobile payment code
    state = state_folder("cards")
    keys = (
        "1 1 1 1 # "
        "2 # 1 2 0 0 # 1 card:%s # # "
        "2 # 3 4 5 # 2 %s # # # "
        "3 # 9 9 9 # 1 card:%s # # "
        "2 # 5 0 # 3 scan:%s # #"
    ) % (read, " ".join(keyed), amex, code)
    result = sim(state, keys, "--offline")
    assert result.returncode == 0, result.stdout + result.stderr
    records = stored_records(state)
    assert [(r.amount_minor, r.last_four) for r in records] == [
        (1200, int(read[-4:])),
        (345, int(keyed[-4:])),
        (999, int(amex[-4:])),
        (50, int(code[-4:])),
    ]
    with open(os.path.join(state, "flash.bin"), "rb") as source:
        image = source.read()
    for number in (read, keyed, amex, code):
        for form, pattern in _forms(number):
            assert pattern not in image, "%s of %s found at 0x%x" % (
                form,
                number,
                image.find(pattern),
            )


def test_a_lockout_survives_restarting_the_simulator():
    """Three wrong PINs lock login; the simulator restarted (the firmware boots again from
    its flash) is still locked, and ignores even the right PIN."""
    state = state_folder("lockout")
    first = sim(state, "5 5 5 5 # 5 5 5 5 # 5 5 5 5 #", "--offline")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "|Login locked    |" in first.stdout
    second = sim(state, "1 1 1 1 #", "--offline")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "|Login locked    |" in second.stdout
    assert "Merchant?" not in second.stdout
