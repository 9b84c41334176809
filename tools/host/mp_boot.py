"""Starts MicroPython code the way the device runs it: from a ROMFS image, in a 96 KiB heap.

Usage: micropython -X heapsize=N tools/host/mp_boot.py IMAGE APP_HEAP MODULE [ARG ...]

The image (compiled .mpy files: lib/, emu/, tests/) is mounted at /rom, as the ESP32 maps
its romfs partition from flash and runs the code in place. The unix port has no mapped
flash, so the image sits in the GC heap; ballast then pins the free heap to APP_HEAP bytes,
so the code gets what the device's app gets and not a byte more. Then MODULE.main(ARGS).
"""

import gc
import sys

import vfs


def main():
    with open(sys.argv[1], "rb") as source:
        image = source.read()
    app_heap = int(sys.argv[2])
    if sys.argv[3] == "simboard":
        # The simulator runs the core from its flash image's romfs partition, as the ESP32
        # does (tools/emu/simrom.py: the update's boot code first); the image given here
        # holds the board (emu/) and that boot code. The NOR-flash model stands for the
        # ESP32's partition driver, which is C in the firmware and takes no heap: its code
        # is loaded before the budget is pinned, as the images themselves are.
        vfs.mount(vfs.VfsRom(image), "/host")
        sys.path[:0] = ["/host/emu"]
        import simrom

        import norflash  # noqa: F401

        simrom.boot(sys.argv[4])
    else:
        vfs.mount(vfs.VfsRom(image), "/rom")
        sys.path[:0] = ["/rom/tests", "/rom/emu", "/rom/lib"]
    gc.collect()
    extra = gc.mem_free() - app_heap
    if extra < 0:
        print("F heap: only %d bytes free, %d wanted" % (gc.mem_free(), app_heap))
        sys.exit(3)
    ballast = bytearray(extra) if extra > 0 else None  # its header makes it a little less
    gc.collect()
    module = __import__(sys.argv[3])
    module.main(sys.argv[4:])
    del ballast, image


main()
