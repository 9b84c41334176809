"""A partition of a NOR-flash chip model (tools/emu/norflash.py) as a block device of its own,
for tests that put the queue and the state log on one chip."""

from norflash import FlashError


class Region:
    """count blocks of a chip from sector first on, as a block device of its own: two
    partitions of one chip (the queue and the state log) share its power-cut schedule,
    its counters and its bytes. A block is group sectors (erased one after the other), so
    a test chip of small sectors can also hold a partition of larger blocks."""

    def __init__(self, flash, first, count, group=1):
        if first < 0 or first + count * group > flash.sector_count:
            raise FlashError("region %d+%d outside the chip" % (first, count * group))
        self.flash = flash
        self.first = first
        self.group = group
        self.sector_count = count
        self.sector_size = flash.sector_size * group

    def readblocks(self, block, buf, offset=0):
        self.flash.read(self._address(block, offset, len(buf)), buf)

    def writeblocks(self, block, buf, offset=None):
        if offset is None:
            self._erase(block)
            offset = 0
        self.flash.program(self._address(block, offset, len(buf)), buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self.sector_count
        if op == 5:
            return self.sector_size
        if op == 6:
            self._erase(arg)
            return 0
        return self.flash.ioctl(op, arg)

    def _erase(self, block):
        self._address(block, 0, 0)
        for i in range(self.group):
            self.flash.erase(self.first + block * self.group + i)

    def _address(self, block, offset, length):
        if not 0 <= block < self.sector_count or offset < 0 or offset + length > self.sector_size:
            raise FlashError("access to block %d+%d outside the region" % (block, offset))
        return (self.first + block * self.group) * self.flash.sector_size + offset
