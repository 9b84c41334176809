"""tools/flash: the esptool commands it builds, and an image merged by esptool itself."""

import os
import subprocess
import sys

from tools.host import mpybuild, partitions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def flash(*args):
    return subprocess.run(
        [sys.executable, "-m", "tools.host.flash", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def fake_firmware(tmp_path, size=600_000):
    path = tmp_path / "ESP32_GENERIC.bin"
    path.write_bytes(bytes([0xE9]) + os.urandom(size - 1))  # an image starts with 0xE9
    return str(path)


def test_dry_run_prints_erase_write_verify(tmp_path):
    firmware = fake_firmware(tmp_path)
    result = flash("--port", "/dev/ttyUSB9", "--firmware", firmware, "--dry-run")
    assert result.returncode == 0, result.stderr
    erase, write_firmware, write_table, verify = result.stdout.strip().splitlines()
    assert "--port /dev/ttyUSB9" in erase and erase.endswith("erase-flash")
    assert write_firmware.endswith(" write-flash --flash-size 4MB 0x1000 " + firmware)
    assert " write-flash --flash-size 4MB 0x8000 " in write_table
    assert write_table.endswith("partitions.bin")
    assert " verify-flash 0x8000 " in verify


def test_merged_image_holds_firmware_and_table_where_they_belong(tmp_path):
    firmware = fake_firmware(tmp_path)
    merged = str(tmp_path / "merged.bin")
    result = flash("--firmware", firmware, "--merged", merged)
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.path.getsize(merged) == 0x400000
    with open(merged, "rb") as image, open(firmware, "rb") as source:
        image.seek(0x1000)
        assert image.read(64)[1:] == source.read(64)[1:]  # esptool may patch the header
    table = partitions.read_image_table(merged)
    assert table["txq"] == (0x200000, 0x80000)
    assert table["romfs"] == (0x280000, 0x20000)


def test_bad_inputs_are_refused(tmp_path):
    result = flash("--port", "/dev/null", "--firmware", str(tmp_path / "none.bin"), "--dry-run")
    assert result.returncode == 2 and "no firmware file" in result.stderr
    huge = fake_firmware(tmp_path, size=0x200000)  # past the end of the app partition
    result = flash("--port", "/dev/null", "--firmware", huge, "--dry-run")
    assert result.returncode == 2 and "larger than the app partition" in result.stderr
    result = flash("--firmware", huge)
    assert result.returncode == 2 and "--port" in result.stderr


def budget_figures(stdout):
    return {line[:26].strip(): int(line[26:].split()[0]) for line in stdout.splitlines()}


def test_budget_sums_the_frozen_mpy_files_against_the_app_partition(tmp_path):
    result = flash("--budget")
    assert result.returncode == 0, result.stdout + result.stderr
    figures = budget_figures(result.stdout)
    assert figures["factory app partition"] == 0x1F0000
    assert figures["frozen pos+board"] == sum(size for _, size in mpybuild.build_bundle())
    assert figures["stock MicroPython app"] == 0x1A1110 and "(assumed" in result.stdout
    estimate = figures["frozen code estimate"]
    assert figures["estimated image"] == 0x1A1110 + estimate
    # A stock image given: its app part is measured; one too large leaves no room.
    stock = fake_firmware(tmp_path, size=0x1A0000)
    result = flash("--budget", "--firmware", stock)
    assert result.returncode == 0, result.stderr
    assert budget_figures(result.stdout)["stock MicroPython app"] == 0x1A0000 - 0xF000
    stock = fake_firmware(tmp_path, size=0xF000 + 0x1F0000 - estimate + 4096)
    result = flash("--budget", "--firmware", stock)
    assert result.returncode == 1 and "would not fit" in result.stderr
    assert "-" in result.stdout.splitlines()[-1]  # negative bytes free
