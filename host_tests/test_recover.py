"""tools/recover: a flash image made by the real core, recovered and opened with the BDK."""

import hashlib
import json
import os
import subprocess
import sys
from binascii import hexlify

import pytest

from norflash import NorFlash
from pos.derive import derive_initial_key
from pos.journal import Journal
from pos.ledger import Ledger
from pos.record import CASH, CREDIT, REFUND, SALE, VOID, Record
from pos.txq import TxQueue
from tools.host import partitions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BDK = bytes(range(16))
IK_ID = bytes.fromhex("0102030405060708")
STORAGE_KEY = b"storage-key-0002"


def make_image(tmp_path, busy=False):
    """A 4 MiB image: the partition table, then three sales in txq, the first two acked;
    busy: then a void, a refund and merchant 1's Z, none of them acked."""
    path = str(tmp_path / "dump.bin")
    with open(path, "wb") as out:
        out.write(b"\xff" * 0x400000)
        out.seek(partitions.TABLE_OFFSET)
        out.write(partitions.table_bytes(partitions.read_csv()))
    table = partitions.read_image_table(path)
    offset, size = table["txq"]
    flash = NorFlash(size // 4096, path=path, offset=offset)
    offset, size = table["statelog"]
    log = NorFlash(size // 4096, path=path, offset=offset)
    Journal.provision(log, STORAGE_KEY, derive_initial_key(BDK, IK_ID), IK_ID)
    ledger = Ledger(TxQueue(flash), log, STORAGE_KEY)
    ledger.book(Record(SALE, 1, 1250, 978, method=CASH))
    ledger.book(Record(SALE, 2, 990, 978, method=CREDIT, token=b"\x07" * 6, last_four=4242))
    ledger.queue.ack(ledger.queue.last_counter)
    ledger.book(  # an unusual amount a supervisor (number 9) approved
        Record(SALE, 3, 50, 978, method=CASH, time=1_795_000_000, flags=2, reason=11, reference=9)
    )
    if busy:
        ledger.book(Record(VOID, 2, 990, 978, method=CREDIT, reference=2, last_four=4242))
        ledger.book(Record(REFUND, 1, 250, 978, method=CASH, reference=1, time=1_795_000_600))
        ledger.book(ledger.totals.settlement(1, 978))
    flash.close()
    log.close()
    key_file = tmp_path / "bdk.key"
    key_file.write_text(hexlify(BDK).decode())
    return path, str(key_file)


@pytest.fixture()
def image(tmp_path):
    return make_image(tmp_path)


@pytest.fixture()
def busy_image(tmp_path):
    return make_image(tmp_path, busy=True)


def recover(*args):
    return subprocess.run(
        [sys.executable, "-m", "tools.host.recover", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def digest(path):
    with open(path, "rb") as source:
        return hashlib.sha256(source.read()).hexdigest()


def test_json_lists_every_record_with_its_state(image):
    path, key_file = image
    before = digest(path)
    result = recover("--flash", path, "--bdk-file", key_file, "--ik-id", IK_ID.hex(), "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["merchant_number"], r["amount_minor"], r["acked"]) for r in rows] == [
        (1, 1250, True),
        (2, 990, True),
        (3, 50, False),
    ]
    assert [r["method"] for r in rows] == ["cash", "credit", "cash"]
    assert rows[1]["last_four"] == 4242 and rows[0]["last_four"] is None
    assert rows[2]["time"] == 1_795_000_000 and rows[2]["type"] == "sale"
    assert [r["receipt"] for r in rows] == [1, 2, 3]
    assert '"unsent": 1' in result.stderr
    assert digest(path) == before  # recovery never writes to the evidence


def test_unsent_only_and_csv(image):
    path, key_file = image
    common = ("--flash", path, "--bdk-file", key_file, "--ik-id", IK_ID.hex())
    rows = json.loads(recover(*common, "--json", "--unsent").stdout)
    assert [r["receipt"] for r in rows] == [3]
    table = recover(*common, "--format", "csv").stdout.splitlines()
    assert table[0].startswith("counter,acked,type,merchant_number")
    assert len(table) == 4


def test_wrong_bdk_says_which_records_it_cannot_open(image, tmp_path):
    path, _ = image
    wrong = tmp_path / "wrong.key"
    wrong.write_text("ff" * 16)
    result = recover("--flash", path, "--bdk-file", str(wrong), "--ik-id", IK_ID.hex())
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    # which records the back end has is known from the queue, keys or no keys
    assert [line.split()[:3] for line in lines[1:4]] == [
        ["1", "yes", "UNREADABLE:"],
        ["2", "yes", "UNREADABLE:"],
        ["3", "no", "UNREADABLE:"],
    ]
    assert "3 records: 2 acked by the back end, 1 not yet, 3 unreadable" in lines


def test_bad_inputs_are_refused_clearly(image, tmp_path):
    path, key_file = image
    blank = tmp_path / "blank.bin"
    blank.write_bytes(b"\xff" * 0x10000)
    result = recover("--flash", str(blank), "--bdk-file", key_file, "--ik-id", IK_ID.hex())
    assert result.returncode == 2 and "no partition table" in result.stderr
    result = recover("--flash", path, "--bdk-file", key_file, "--ik-id", "0102")
    assert result.returncode == 2 and "8 bytes" in result.stderr
    result = recover("--flash", path)
    assert result.returncode == 2 and "--bdk-file" in result.stderr


def test_partition_table_round_trips_to_the_csv():
    rows = partitions.read_csv()
    data = partitions.table_bytes(rows)
    assert len(data) == partitions.TABLE_SIZE
    assert partitions.parse_table(data) == rows
    damaged = bytearray(data)
    damaged[40] ^= 1
    with pytest.raises(partitions.PartitionError):
        partitions.parse_table(bytes(damaged))
    names = [row[0] for row in rows]
    assert names == ["nvs", "phy_init", "factory", "txq", "romfs", "statelog"]
    txq = rows[names.index("txq")]
    assert txq[3] % 4096 == 0 and txq[4] == 512 * 1024


def common(image):
    path, key_file = image
    return ("--flash", path, "--bdk-file", key_file, "--ik-id", IK_ID.hex())


def test_text_shows_money_as_the_receipt_does_and_a_z_has_no_card(busy_image):
    result = recover(*common(busy_image))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    rows = {line.split()[0]: line for line in lines[1:7]}
    assert rows["1"].split()[:7] == ["1", "yes", "sale", "1", "cash", "EUR", "12.50"]
    assert rows["2"].endswith("card ****4242") and "EUR 9.90  000002" in rows["2"]
    assert "EUR -9.90  000004" in rows["4"] and rows["4"].endswith(
        "of receipt 000002 card ****4242"
    )
    assert "EUR -2.50  000005  2026-11-18 11:16 of receipt 000001" in rows["5"]
    assert rows["3"].endswith("supervisor 9")
    z = rows["6"]
    assert z.split()[:4] == ["6", "no", "settlement", "1"]
    assert z.endswith("Z 1: sales 1 EUR 12.50, refunds 1 EUR 2.50")
    assert "****" not in z
    assert not any(str(minor) in result.stdout for minor in (1250, 990, 250))
    assert lines[-2] == "6 records: 2 acked by the back end, 4 not yet, 0 unreadable"
    rows = json.loads(recover(*common(busy_image), "--json").stdout)
    assert rows[5]["type"] == "settlement" and rows[5]["last_four"] is None
    assert rows[5]["amount_minor"] == 1250  # the JSON keeps minor units


def test_output_into_a_closed_pipe_ends_quietly(busy_image):
    for form in ("text", "json", "csv"):
        process = subprocess.Popen(
            [sys.executable, "-m", "tools.host.recover", *common(busy_image), "--format", form],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        process.stdout.close()  # as `| head` does once it has its lines
        _, err = process.communicate(timeout=60)
        assert (process.returncode, err) == (0, b""), form


@pytest.mark.parametrize(
    "change, text",
    [
        (("--flash", "/nonexistent/dump.bin"), "/nonexistent/dump.bin: No such file"),
        (("--flash", "/"), "/: Is a directory"),
        (("--bdk-file", "/nonexistent/bdk.key"), "cannot read the BDK from /nonexistent/bdk.key"),
        (("--bdk-file", "DUMP"), "must be 32 hex digits, and it is not hex"),
        (("--bdk-file", "SHORT"), "must be 32 hex digits (16 bytes)"),
        (("--ik-id", "zz"), "--ik-id must be hex"),
        (("--upload", "https://127.0.0.1:1"), "--upload needs --tid and --ca"),
        (
            ("--upload", "https://127.0.0.1:1", "--tid", "T1", "--ca", "/nonexistent/ca.pem"),
            "cannot read the CA from /nonexistent/ca.pem",
        ),
        (
            ("--upload", "not a url", "--tid", "T1", "--ca", "CA"),
            "upload to not a url failed",
        ),
    ],
)
def test_a_users_mistake_gets_one_line_and_exit_2(image, tmp_path, change, text):
    path, key_file = image
    short = tmp_path / "short.key"
    short.write_text("0011")
    ca = tmp_path / "ca.pem"
    from tools.host.backend import make_certs

    if "CA" in change:
        make_certs(str(tmp_path / "certs"))
        ca = tmp_path / "certs" / "ca.pem"
    names = {"DUMP": path, "SHORT": str(short), "CA": str(ca)}
    args = dict(zip(common(image)[::2], common(image)[1::2], strict=True))
    extra = []
    for name, value in zip(change[::2], change[1::2], strict=True):
        value = names.get(value, value)
        if name in args:
            args[name] = value
        else:
            extra += [name, value]
    before = digest(path)
    result = recover(*[item for pair in args.items() for item in pair], *extra)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("tools/recover: ") and result.stderr.count("\n") == 1
    assert text in result.stderr
    assert result.stdout == ""
    assert digest(path) == before


def test_a_wrong_state_folder_gets_one_line(tmp_path):
    result = recover("--state", str(tmp_path / "nope"))
    assert result.returncode == 2 and result.stderr == (
        "tools/recover: no simulator state folder %s\n" % (tmp_path / "nope")
    )
    (tmp_path / "backend").mkdir()
    (tmp_path / "backend" / "terminals.json").write_text("[]")
    result = recover("--state", str(tmp_path))
    assert result.returncode == 2 and "terminals.json names none" in result.stderr
