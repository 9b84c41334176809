"""What keeping the PIN lockout on flash costs (pos.lockout), on the MicroPython unix port
(run by tools/bench lockout, 96 KiB heap): the module's heap while loaded, the garbage, time
and flash of one write (on VfsLfs2 over the NOR-flash model, as the device's vfs) and of the
read at start."""

import gc
import os
import time

from norflash import NorFlash
from pos.seal import StateSealer  # noqa: F401 (loaded already in the app: the journal's)
from pos.store import FileStore

WRITES = 100


class Counted:
    """What pos.lockout reads of the terminal."""

    def __init__(self):
        self.wrong_pins = 1
        self.lock_count = 0
        self.locked_until = None
        self.now_ms = 0
        self.effects = []


def line(name, value, unit):
    print("%s: %s %s" % (name, value, unit))


def main(scratch):
    flash = NorFlash(64, path=scratch + "/vfs.bin")
    os.VfsLfs2.mkfs(flash)
    os.mount(os.VfsLfs2(flash), "/benchvfs")
    store = FileStore("/benchvfs/state")
    key = bytes(range(16))
    terminal = Counted()
    gc.collect()
    free = gc.mem_free()
    from pos import lockout

    gc.collect()
    # Bytecode included: here the .mpy is loaded into the heap; on the device it stays in
    # ROMFS. Taken only while a PIN is checked or the app starts, then unloaded.
    line("lockout_module_heap", free - gc.mem_free(), "bytes while loaded (.mpy in the heap)")
    lockout.save(store, key, terminal)
    gc.collect()
    gc.disable()
    allocated = gc.mem_alloc()
    lockout.save(store, key, terminal)
    line("lockout_write_garbage", gc.mem_alloc() - allocated, "bytes")
    gc.enable()
    programmed, erases = flash.programmed_bytes, flash.erases
    start = time.ticks_us()
    for tries in range(WRITES):
        terminal.wrong_pins = tries % 3
        lockout.save(store, key, terminal)
    elapsed = time.ticks_diff(time.ticks_us(), start)
    line("lockout_write_us", elapsed // WRITES, "us")
    line("lockout_write_programmed", (flash.programmed_bytes - programmed) // WRITES, "bytes")
    line("lockout_write_erases", (flash.erases - erases) * 1000 // WRITES, "per 1000 writes")
    start = time.ticks_us()
    for _ in range(WRITES):
        lockout.restore(store, key, terminal, 0)
    line("lockout_restore_us", time.ticks_diff(time.ticks_us(), start) // WRITES, "us")
    os.umount("/benchvfs")
    flash.close()
