"""tools/flash: put stock MicroPython and the OneTill partition table on an ESP32 with esptool.

Erases the chip, writes the stock MicroPython image at 0x1000 (it holds the bootloader, its
own partition table and the app), then the partition table built from
firmware/partitions.csv over its table at 0x8000 (checked by parsing it back) and
optionally a prepared vfs image at the start of the vfs area and the statelog image
tools/provision made (--statelog), and verifies those. --dry-run
prints the esptool commands instead of running them; --merged FILE builds one 4 MiB image
of the same layout (esptool merge-bin, then our table), which needs no board. --budget
estimates whether the custom frozen image (firmware/manifest.py) fits the app partition
(tools/host/imagebudget.py; --firmware STOCK.bin makes the stock part a measurement).
"""

import argparse
import os
import subprocess
import sys
import tempfile

from tools.host import imagebudget, mpybuild, partitions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ESPTOOL = os.path.join(ROOT, ".venv", "bin", "esptool")
FIRMWARE_OFFSET = 0x1000  # where the ESP32 bootloader and MicroPython image start
FLASH_SIZE = 0x400000


class FlashError(Exception):
    """A file or layout that cannot be flashed; the message says why."""


def plan(table_file, firmware, vfs_image=None, statelog_image=None):
    """[(offset, file)] to write, after checking the firmware fits before the first entry
    and the vfs image fits between the last entry and the end of flash."""
    rows = partitions.read_csv()
    data = partitions.table_bytes(rows)
    if partitions.parse_table(data) != rows:
        raise FlashError("the partition table does not parse back to partitions.csv")
    with open(table_file, "wb") as out:
        out.write(data)
    if not os.path.isfile(firmware):
        raise FlashError("no firmware file %s" % firmware)
    app = [row for row in rows if row[0] == "factory"]
    if not app:
        raise FlashError("partitions.csv has no factory app partition")
    app_end = app[0][3] + app[0][4]
    firmware_size = os.path.getsize(firmware)
    if firmware_size > app_end - FIRMWARE_OFFSET:
        message = "%s (%d bytes) is larger than the app partition"
        raise FlashError(message % (firmware, firmware_size))
    writes = [(partitions.TABLE_OFFSET, table_file)]
    if vfs_image:
        vfs_start = max(offset + size for _, _, _, offset, size in rows)
        if not os.path.isfile(vfs_image):
            raise FlashError("no vfs image %s" % vfs_image)
        if vfs_start + os.path.getsize(vfs_image) > FLASH_SIZE:
            raise FlashError("the vfs image does not fit between 0x%x and 4 MiB" % vfs_start)
        writes.append((vfs_start, vfs_image))
    if statelog_image:
        row = [row for row in rows if row[0] == "statelog"]
        if not row or not os.path.isfile(statelog_image):
            raise FlashError("no statelog partition or no image %s" % statelog_image)
        if os.path.getsize(statelog_image) > row[0][4]:
            raise FlashError("%s is larger than the statelog partition" % statelog_image)
        writes.append((row[0][3], statelog_image))
    return writes


def _pairs(writes):
    pairs = []
    for offset, path in writes:
        pairs += ["0x%x" % offset, path]
    return pairs


def commands(port, firmware, writes, baud=460800):
    """erase; the firmware (esptool checks what it wrote); our table (and vfs) over it;
    verify those. Two writes, because our table replaces the one inside the firmware."""
    base = [ESPTOOL, "--chip", "esp32", "--port", port, "--baud", str(baud)]
    return [
        base + ["erase-flash"],
        base + ["write-flash", "--flash-size", "4MB", "0x%x" % FIRMWARE_OFFSET, firmware],
        base + ["write-flash", "--flash-size", "4MB"] + _pairs(writes),
        base + ["verify-flash"] + _pairs(writes),
    ]


def merge(firmware, writes, output):
    """One 4 MiB image: esptool merges the firmware, then our writes go over it."""
    step = [ESPTOOL, "--chip", "esp32", "merge-bin", "--pad-to-size", "4MB", "-o", output]
    step += ["0x%x" % FIRMWARE_OFFSET, firmware]
    print(" ".join(step))
    if subprocess.run(step).returncode:
        raise FlashError("esptool merge-bin failed")
    with open(output, "r+b") as image:
        for offset, path in writes:
            print("write 0x%x %s" % (offset, path))
            with open(path, "rb") as source:
                image.seek(offset)
                image.write(source.read())


def print_budget(stock_bin):
    try:
        figures, lines = imagebudget.budget(stock_bin)
    except (OSError, mpybuild.BuildError, partitions.PartitionError) as exc:
        sys.stderr.write("tools/flash: %s\n" % exc)
        return 2
    print("\n".join(lines))
    if figures["free"] < 0:
        sys.stderr.write("tools/flash: the custom image would not fit the app partition\n")
        return 1
    return 0


def main(argv):
    parser = argparse.ArgumentParser(prog="tools/flash", description=__doc__.split("\n")[0])
    parser.add_argument("--port", help="serial port of the ESP32, e.g. /dev/ttyUSB0")
    parser.add_argument("--firmware", help="stock MicroPython ESP32_GENERIC .bin")
    parser.add_argument("--vfs", help="a prepared LittleFS image of the vfs area")
    parser.add_argument("--statelog", help="the statelog image tools/provision made")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--merged", help="write one 4 MiB image instead of flashing")
    parser.add_argument(
        "--budget", action="store_true", help="estimate the custom image's size, flash nothing"
    )
    args = parser.parse_args(argv)
    if args.budget:
        return print_budget(args.firmware)
    if not args.firmware:
        parser.error("--firmware is needed")
    if not args.merged and not args.port:
        parser.error("--port is needed (or --merged FILE to build an image)")
    with tempfile.TemporaryDirectory() as scratch:
        try:
            writes = plan(
                os.path.join(scratch, "partitions.bin"), args.firmware, args.vfs, args.statelog
            )
        except (FlashError, partitions.PartitionError, OSError) as exc:
            sys.stderr.write("tools/flash: %s\n" % exc)
            return 2
        if args.merged:
            try:
                merge(args.firmware, writes, args.merged)
            except FlashError as exc:
                sys.stderr.write("tools/flash: %s\n" % exc)
                return 1
            return 0
        for step in commands(args.port, args.firmware, writes):
            print(" ".join(step))
            if args.dry_run:
                continue
            if subprocess.run(step).returncode:
                sys.stderr.write("tools/flash: failed: %s\n" % " ".join(step[1:3]))
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
