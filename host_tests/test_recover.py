"""tools/recover: a flash image made by the real core, recovered and opened with the BDK."""

import hashlib
import json
import os
import subprocess
import sys
from binascii import hexlify

import pytest

from norflash import NorFlash
from pos.dukpt import derive_initial_key
from pos.journal import Journal
from pos.ledger import Ledger
from pos.record import CASH, CREDIT, SALE, Record
from pos.txq import TxQueue
from tools.host import partitions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BDK = bytes(range(16))
IK_ID = bytes.fromhex("0102030405060708")
STORAGE_KEY = b"storage-key-0002"


@pytest.fixture()
def image(tmp_path):
    """A 4 MiB image: the partition table, then three sales in txq, the first two acked."""
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
    ledger.book(Record(SALE, 3, 50, 978, method=CASH, time=1_795_000_000))
    flash.close()
    log.close()
    key_file = tmp_path / "bdk.key"
    key_file.write_text(hexlify(BDK).decode())
    return path, str(key_file)


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
    assert result.stdout.count("UNREADABLE") == 3
    assert "unreadable 3" in result.stdout


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
