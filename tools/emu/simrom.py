"""The simulator's start, as the ESP32's firmware and boot.py do it: the update's boot code
(pos.install) over the flash image's romfs partition and /state, then that partition mounted
at /rom with /rom/lib on sys.path, so the core the simulator runs is the one in its flash
(written by tools/sim from the working tree, or installed over the air).

Loaded by tools/host/mp_boot.py before the app's heap budget is pinned, as the image is: on
the ESP32 this is C (the partition driver, the ROMFS mount) and boot code that is gone
before the app starts. The boot code comes from the simulator's own image (/host/lib), not
from the partition it may rewrite, and is unloaded before the core is imported.
"""

import os
import struct
import sys

import vfs

from norflash import NorFlash

FLASH_SIZE = 0x400000  # as tools/emu/simboard.py (not imported: its code is the app's)
SECTOR = 4096
MOUNT = "/flash"

_buffer = []  # the partition's bytes, mounted at /rom (one buffer for every restart)
state = None  # what pos.install's boot code left: [phase, boots, running, target, ...]
# The board's partitions on the NOR-flash model, {"txq", "statelog", "vfs": NorFlash}: made
# here, before the budget, as the model stands for the ESP32's partition driver (C, no
# heap); tools/emu/simboard.py takes them.
chips = {}


def read_partitions(path):
    """{label: (offset, size)} of the partition table at 0x8000 (simboard.read_partitions)."""
    partitions = {}
    entry = bytearray(32)
    with open(path, "rb") as image:
        image.seek(0x8000)
        while image.readinto(entry) == 32:
            magic, _, _, offset, size, label, _ = struct.unpack("<HBBII16sI", entry)
            if magic != 0x50AA:
                break
            partitions[label.rstrip(b"\x00").decode()] = (offset, size)
    return partitions


def _devices(image):
    partitions = read_partitions(image)
    offset, size = partitions["romfs"]
    romfs = NorFlash(size // SECTOR, path=image, offset=offset, count_erases=False, durable=True)
    start = max(o + s for o, s in partitions.values())
    state = NorFlash(
        (FLASH_SIZE - start) // SECTOR, path=image, offset=start, count_erases=False, durable=True
    )
    return romfs, state


def boot(state_dir):
    """Run the update's boot code, then mount the romfs partition at /rom. Keeps the
    update state pos.install left in `state`."""
    global state
    image = state_dir + "/flash.bin"
    romfs, state_flash = _devices(image)
    result = None
    try:
        os.mount(os.VfsLfs2(state_flash), MOUNT)  # type: ignore[attr-defined]
    except OSError:
        state_flash = None  # a blank vfs (not provisioned yet): nothing to install
    if state_flash is not None:
        saved = sys.path[:]
        sys.path[:] = ["/host/lib"]
        try:
            from pos import install
            from pos.store import FileStore

            result = install.boot(FileStore(MOUNT + "/state"), romfs, MOUNT + "/state")
        finally:
            sys.path[:] = saved
            for name in ("pos.install", "pos.store", "pos"):
                sys.modules.pop(name, None)
            os.umount(MOUNT)
    if not _buffer:
        _buffer.append(bytearray(romfs.size))
    data = _buffer[0]
    romfs.readblocks(0, data)
    romfs.close()
    state_flash = None
    vfs.mount(vfs.VfsRom(data), "/rom")
    if "/rom/lib" not in sys.path:
        sys.path.insert(0, "/rom/lib")
    state = result
    partitions = read_partitions(image)
    for label in ("txq", "statelog"):
        if label in partitions:
            offset, size = partitions[label]
            chips[label] = NorFlash(
                size // SECTOR, path=image, offset=offset, count_erases=False, durable=True
            )
    start = max(o + s for o, s in partitions.values())
    chips["vfs"] = NorFlash(
        (FLASH_SIZE - start) // SECTOR, path=image, offset=start, count_erases=False, durable=True
    )


RESTART_EXIT = 4  # tools/sim starts the process again: a reset, with a whole heap


def run_terminal(state_dir, start):
    """Boot the terminal (start(state_dir) makes its board and app) and run it until its
    input ends. A restart it asks for (an update), or a core on trial that fails to import
    (the ESP32's main.py logs it and resets), ends the process with RESTART_EXIT after an
    "R" line: tools/sim starts it again, which boots it again (pos.install first) on a
    whole heap, as a reset does."""
    from pos.compat import run

    board = None
    try:
        board = start(state_dir)
        run(board.app.main())
    except SystemExit:  # SimBoard.restart
        if board is None or not board.restarting:
            raise
    except Exception as exc:
        if board is not None or state is None or state[0] != 3:  # pos.install.TRIAL
            raise
        print("F crash: %r (restarting: a version on trial)" % (exc,))
    if board is None or board.restarting:
        print("R")
        sys.exit(RESTART_EXIT)
