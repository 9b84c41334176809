"""The simulated ESP32 board for tools/sim: runs on the MicroPython unix port.

STATE/flash.bin is a 4 MiB image laid out like the device: the ESP-IDF partition table at
0x8000, the txq partition on the NOR-flash model, and the vfs (LittleFS, mounted at /flash)
from the end of the last partition to the end of flash, as MicroPython makes it on an ESP32.
Before the first boot, tools/sim runs it once with "provision", as a real terminal is
provisioned by a tool before it sells: STATE/provision.json becomes /flash/config and
/flash/state, and is deleted.

It talks to tools/sim over stdin/stdout, one line a message:
  in:   key K | card NUMBER | scan CODE | link 0|1 | frame | quit
  out:  S <events> then 8 lines "|row"   the screen after that many events
        P <n> then n lines "|text"       a receipt or report that printed
        B ok|error                       a beep
        F text                           a fault
"""

import asyncio
import gc
import json
import os
import struct
import sys

# Held from the first line, before the app's code is imported (see pos.app).
_early_reserve = bytearray(10 * 1024)

from norflash import NorFlash  # noqa: E402  (after the reserve, on purpose)
from pos.app import App  # noqa: E402
from pos.journal import Journal  # noqa: E402
from pos.store import FileStore  # noqa: E402

FLASH_SIZE = 0x400000
TABLE_OFFSET = 0x8000
SECTOR = 4096
MOUNT = "/flash"


def read_partitions(path):
    """{label: (offset, size)} from the ESP-IDF partition table of a flash image."""
    partitions = {}
    with open(path, "rb") as image:
        image.seek(TABLE_OFFSET)
        table = image.read(0xC00)
    for start in range(0, len(table), 32):
        magic, _, _, offset, size, label, _ = struct.unpack_from("<HBBII16sI", table, start)
        if magic != 0x50AA:
            break
        partitions[label.rstrip(b"\x00").decode()] = (offset, size)
    return partitions


class SimBoard:
    def __init__(self, state_dir, provision_only=False):
        self.state_dir = state_dir
        image = state_dir + "/flash.bin"
        partitions = read_partitions(image)
        if "txq" not in partitions:
            raise OSError("flash.bin has no txq partition")
        offset, size = partitions["txq"]
        # Every write flushed (a killed simulator loses nothing a chip would keep), and no
        # per-sector erase counters: 1.9 KiB of heap the device does not spend.
        self.bdev = NorFlash(
            size // SECTOR, path=image, offset=offset, count_erases=False, durable=True
        )
        vfs_start = max(o + s for o, s in partitions.values())
        self._vfs_flash = NorFlash(
            (FLASH_SIZE - vfs_start) // SECTOR,
            path=image,
            offset=vfs_start,
            count_erases=False,
            durable=True,
        )
        self._mount()
        self.config_folder = MOUNT + "/config"
        self.store = FileStore(MOUNT + "/state")
        if provision_only:
            self._provision()
            return
        self._stdin = asyncio.StreamReader(sys.stdin)
        self.events = 0
        self.link = False

    def _mount(self):
        try:
            os.mount(os.VfsLfs2(self._vfs_flash), MOUNT)
        except OSError:
            # A blank vfs: format it, as MicroPython does on a new ESP32.
            os.VfsLfs2.mkfs(self._vfs_flash)
            os.mount(os.VfsLfs2(self._vfs_flash), MOUNT)

    def _provision(self):
        path = self.state_dir + "/provision.json"
        try:
            with open(path) as source:
                doc = json.load(source)
        except OSError:
            return
        from binascii import unhexlify

        try:
            os.mkdir(self.config_folder)
        except OSError:
            pass
        for name, text in doc["config"].items():
            with open(self.config_folder + "/" + name, "w") as out:
                out.write(text)
        device_key = unhexlify(doc["device_key"])
        self.store.write("device.key", device_key)
        Journal.provision(self.store, device_key, unhexlify(doc["ik"]), unhexlify(doc["ik_id"]))
        os.remove(path)
        self.fault("provisioned terminal " + doc["terminal_id"])

    # --- the board interface of pos.app ------------------------------------------------------

    async def next_event(self):
        while True:
            line = await self._stdin.readline()
            if not line:
                return None
            words = line.decode().split()
            if not words:
                continue
            verb = words[0]
            if verb == "quit":
                return None
            if verb == "frame":
                self._send_frame()
                continue
            if verb == "link":
                self.link = words[1] == "1"
                self.events += 1
                return ("link", self.link)
            if verb in ("key", "card", "scan") and len(words) == 2:
                self.events += 1
                return (verb, words[1])
            self.fault("unknown input " + verb)

    def show(self, screen):
        self._screen = screen
        self._send_frame()

    def _send_frame(self):
        out = ["S %d" % self.events]
        for row in self._screen.text():
            out.append("|" + row)
        print("\n".join(out))

    def print_lines(self, lines):
        with open(self.state_dir + "/printer.txt", "a") as paper:
            for text in lines:
                paper.write(text + "\n")
            paper.write("\n")
        print("P %d" % len(lines))
        for text in lines:
            print("|" + text)

    def beep(self, kind):
        print("B " + kind)

    def fault(self, text):
        print("F " + text)

    def unix_time(self):
        import time

        return int(time.time())  # the unix port's epoch is 1970, as records want

    def feed_watchdog(self):
        pass


def main(argv):
    if argv[1:] == ["provision"]:
        SimBoard(argv[0], provision_only=True)
        return
    global _early_reserve
    board = SimBoard(argv[0])
    app = App(board)
    _early_reserve = None
    gc.collect()
    app.start()
    app.feed(("link", False))
    asyncio.run(app.main())
    print("Q")
