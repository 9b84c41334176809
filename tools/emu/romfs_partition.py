"""The ESP32's romfs partition and vfs.rom_ioctl on the MicroPython unix port (tests only).

The unix port has no ROM partitions, so `mpremote romfs deploy` refuses it. install() gives
it what the ESP32 port (MicroPython 1.25+) offers: rom_ioctl(1) says one segment, and
rom_ioctl(2, 0) hands out the data partition labelled "romfs" of a flash image (partition
table at 0x8000, as tools/flash writes it) as a block device of 4 KiB blocks, which mpremote
erases with ioctl(6, n) and writes with writeblocks(n, buf, offset). The flash is the
NOR-flash model, so writing where nothing was erased fails, as on the chip. mount() does
what the ESP32 does at start: the image at /rom, and /rom and /rom/lib on sys.path.
"""

import sys

import vfs
from simboard import read_partitions

from norflash import NorFlash

_EINVAL = 22
_BLOCK = 4096


class _VfsWithRom:
    """The vfs module plus rom_ioctl: a built-in module takes no new attributes, so this
    stands in for it in sys.modules and hands everything else to the real one."""

    def __init__(self, device):
        self._device = device

    def __getattr__(self, name):
        return getattr(vfs, name)

    def rom_ioctl(self, op, *args):
        if op == 1:  # number of segments
            return 1
        if op == 2:  # the segment: the partition object
            return self._device if args and args[0] == 0 else -_EINVAL
        return -_EINVAL  # the ESP32 port answers nothing else


def install(image_path):
    """Make `import vfs` give rom_ioctl over the romfs partition of image_path."""
    partitions = read_partitions(image_path)
    if "romfs" not in partitions:
        raise OSError("no romfs partition in " + image_path)
    offset, size = partitions["romfs"]
    device = NorFlash(
        size // _BLOCK, path=image_path, offset=offset, count_erases=False, durable=True
    )
    sys.modules["vfs"] = _VfsWithRom(device)
    return device


def mount(device):
    """Mount the segment at /rom as the ESP32 does at start. The ESP32 maps the partition
    from flash; here it is read into RAM."""
    data = bytearray(device.size)
    device.readblocks(0, data)
    vfs.mount(vfs.VfsRom(data), "/rom")
    sys.path[:0] = ["/rom", "/rom/lib"]
