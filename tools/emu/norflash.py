"""A NOR-flash chip model with the MicroPython block-device protocol, for tests and the simulator.

Erase sets a 4096-byte sector to 0xFF; programming can only clear bits. A scheduled power cut
stops one program (after a prefix of its bytes) or one erase (after a prefix of the sector)
and raises PowerCut; the chip then refuses everything until reboot(). It counts bytes
programmed and erases per sector. Runs on CPython and on the MicroPython unix port.
"""

from array import array

SECTOR_SIZE = 4096
_SCRATCH = bytearray(256)
# A real chip's times, typical figures of the Winbond W25Q32JV datasheet (4 MiB SPI NOR):
# programming the first byte of a page program 30 us, each further byte 2.5 us, a whole
# 256-byte page 0.7 ms (tBP1, tBP2, tPP); erasing a 4 KiB sector 45 ms (tSE).
PROGRAM_FIRST_US = 30.0
PROGRAM_NEXT_US = 2.5
PAGE_PROGRAM_US = 700.0
SECTOR_ERASE_US = 45000.0


class PowerCut(Exception):
    """The scheduled power cut happened: the operation in progress was torn."""


class FlashError(Exception):
    """A use of the chip that real NOR flash would not allow."""


class NorFlash:
    """sector_count sectors of 4 KiB, in RAM or in a file (path, at offset) that persists.

    The file-backed form keeps nothing but one sector buffer in RAM, so a 512 KiB partition
    fits a 96 KiB MicroPython heap.
    """

    def __init__(
        self,
        sector_count,
        path=None,
        offset=0,
        strict=True,
        sector_size=SECTOR_SIZE,
        count_erases=True,
        durable=False,
    ):
        self.sector_count = sector_count
        self.sector_size = sector_size
        self.size = sector_count * sector_size
        self.strict = strict  # raise on a program that would need to set a bit
        self.offset = offset
        self.durable = durable  # file-backed: flush every write, so a killed process loses nothing
        self._file = None
        self._ram = None
        if path is None:
            self._ram = bytearray(self.size)  # then erased in place: no second copy in RAM
            blank = b"\xff" * 256
            for start in range(0, self.size, 256):
                self._ram[start : start + 256] = blank
        else:
            self._file = _open_image(path, offset + self.size)
        self._scratch = _SCRATCH  # one for every chip: a program or erase uses it briefly
        self.programmed_bytes = 0
        self.program_ops = 0
        self.erases = 0
        # Erases per sector, for wear figures (zeros in one allocation; None when not wanted,
        # as in the simulator, where a 1.4 MiB vfs would spend 1.4 KiB of heap on them).
        self.erase_counts = array("I", bytes(4 * sector_count)) if count_erases else None
        self.pages_programmed = 0  # and the program time a real chip would take (tools/bench)
        self.program_us = 0.0
        self.ops = 0  # programs + erases so far: the numbering used by cut_at()
        self._cut_at = -1
        self._cut_seed = 1
        self.dead = False
        self.files = {}  # the files CutStore keeps on this chip: name -> [buffer, length]

    def erase_all(self):
        """A chip erase, and the counters back to zero (a fresh chip, without reallocating)."""
        self.reboot()
        for sector in range(self.sector_count):
            self.erase(sector)
        self.programmed_bytes = self.program_ops = self.erases = self.ops = 0
        self.pages_programmed = 0
        self.program_us = 0.0
        if self.erase_counts is not None:
            self.erase_counts = array("I", bytes(4 * self.sector_count))
        for entry in self.files.values():
            entry[1] = -1  # gone, but the buffer stays for the next file of that name
        self.reboot()

    # --- power-cut scheduling -------------------------------------------------------------

    def cut_at(self, op_number, seed=1):
        """Cut the power during operation number op_number (counting from self.ops == 0)."""
        self._cut_at = op_number
        self._cut_seed = seed

    def reboot(self):
        """Power comes back: the chip works again and no cut is scheduled."""
        self.dead = False
        self._cut_at = -1

    def _check_alive(self):
        if self.dead:
            raise PowerCut("flash is unpowered")

    def _cutting_now(self):
        self._check_alive()
        cutting = self.ops == self._cut_at
        self.ops += 1
        return cutting

    def _torn_length(self, length):
        # A deterministic "random" prefix length from the seed, so every runtime tears alike.
        self._cut_seed = (self._cut_seed * 1103515245 + 12345) & 0x7FFFFFFF
        return (self._cut_seed >> 8) % (length + 1) if length else 0

    # --- raw access ----------------------------------------------------------------------

    def read(self, addr, buf):
        self._check_range(addr, len(buf))
        if self._ram is not None:
            buf[:] = memoryview(self._ram)[addr : addr + len(buf)]
        else:
            self._file.seek(self.offset + addr)
            self._file.readinto(buf)

    def program(self, addr, data):
        """Clear bits: every byte becomes old & new."""
        length = len(data)
        self._check_range(addr, length)
        torn = self._cutting_now()
        if torn:
            length = self._torn_length(length)
        done = 0
        while done < length:
            chunk = min(length - done, len(self._scratch))
            old = memoryview(self._scratch)[:chunk]
            self.read(addr + done, old)
            for i in range(chunk):
                new = data[done + i]
                if self.strict and (new & ~old[i]) & 0xFF:
                    raise FlashError("program would set bits at 0x%x" % (addr + done + i))
                old[i] &= new
            self._write(addr + done, old)
            done += chunk
        self.programmed_bytes += length
        self.program_ops += 1
        # What the program takes on a real chip, page by page (256 bytes: one program
        # command writes within one page), priced with PROGRAM_FIRST_US, PROGRAM_NEXT_US
        # and PAGE_PROGRAM_US; only where wear is counted (not in the simulator's heap).
        start = addr if self.erase_counts is not None else addr + length
        while start < addr + length:
            end = min(addr + length, (start // 256 + 1) * 256)
            self.pages_programmed += 1
            self.program_us += min(
                PAGE_PROGRAM_US, PROGRAM_FIRST_US + PROGRAM_NEXT_US * (end - start - 1)
            )
            start = end
        if torn:
            self.dead = True
            raise PowerCut("cut while programming 0x%x" % addr)

    def erase(self, sector):
        if not 0 <= sector < self.sector_count:
            raise FlashError("no sector %d" % sector)
        torn = self._cutting_now()
        length = self._torn_length(self.sector_size) if torn else self.sector_size
        blank = memoryview(self._scratch)
        for i in range(len(blank)):
            blank[i] = 0xFF
        addr = sector * self.sector_size
        done = 0
        while done < length:
            chunk = min(length - done, len(blank))
            self._write(addr + done, blank[:chunk])
            done += chunk
        self.erases += 1
        if self.erase_counts is not None:
            self.erase_counts[sector] += 1
        if torn:
            self.dead = True
            raise PowerCut("cut while erasing sector %d" % sector)

    def _write(self, addr, data):
        if self._ram is not None:
            self._ram[addr : addr + len(data)] = data
        else:
            self._file.seek(self.offset + addr)
            self._file.write(data)
            if self.durable:
                # The write reaches the OS at once: killing the simulator loses nothing a
                # real chip would have kept.
                self._file.flush()

    def _check_range(self, addr, length):
        if addr < 0 or addr + length > self.size:
            raise FlashError("access 0x%x+%d outside the chip" % (addr, length))

    def flush(self):
        if self._file is not None:
            self._file.flush()

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    # --- the MicroPython block-device protocol (as esp32.Partition implements it) ---------

    def readblocks(self, block, buf, offset=0):
        self.read(block * self.sector_size + offset, buf)

    def writeblocks(self, block, buf, offset=None):
        if offset is None:
            # Without an offset esp32.Partition erases the blocks first, then writes.
            for i in range((len(buf) + self.sector_size - 1) // self.sector_size):
                self.erase(block + i)
            offset = 0
        self.program(block * self.sector_size + offset, buf)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.sector_count
        if op == 5:  # block size
            return self.sector_size
        if op == 6:  # erase one block
            self.erase(arg)
            return 0
        if op in (1, 2, 3):  # init, deinit, sync
            self.flush()
            return 0
        return None


def _open_image(path, minimum_size):
    """Open a flash image file for update, creating it (all 0xFF) or growing it as needed."""
    try:
        image = open(path, "r+b")
    except OSError:
        image = open(path, "w+b")
    image.seek(0, 2)
    size = image.tell()
    if size < minimum_size:
        blank = b"\xff" * 256  # small: a test on a 96 KiB heap makes its chip this way
        while size < minimum_size:
            step = min(256, minimum_size - size)
            image.write(blank[:step])
            size += step
        image.flush()
    return image


class CutStore:
    """The journal's state files (pos.store.FileStore's interface) as they behave on the
    chip's LittleFS: a write is atomic (old or new contents, never a mixture) and takes part
    in the flash's power-cut schedule as one operation. A file is a list of 256-byte blocks,
    as on the chip, that later writes reuse; the chip keeps them (a test reusing a chip
    reuses them too). So the store never asks a small, broken-up heap for a large block."""

    BLOCK = 256

    def __init__(self, flash):
        self._flash = flash
        self._files = flash.files  # name -> [blocks, length (-1: no such file)]
        self.writes = 0

    def _entry(self, name):
        entry = self._files.get(name)
        return None if entry is None or entry[1] < 0 else entry

    def read(self, name):
        entry = self._entry(name)
        if entry is None:
            return None
        data = bytearray(entry[1])
        self._copy_out(entry, data)
        return bytes(data)

    def size(self, name):
        entry = self._entry(name)
        return None if entry is None else entry[1]

    def read_into(self, name, buf):
        entry = self._entry(name)
        if entry is None:
            return None
        self._copy_out(entry, buf)
        return entry[1]

    def _copy_out(self, entry, buf):
        length = entry[1]
        view = memoryview(buf)
        for index, block in enumerate(entry[0]):
            start = index * self.BLOCK
            if start >= length:
                break
            end = min(start + self.BLOCK, length)
            view[start:end] = memoryview(block)[: end - start]

    def write(self, name, data):
        if self._flash._cutting_now():
            self._flash.dead = True
            raise PowerCut("cut while writing %s" % name)
        entry = self._files.get(name)
        if entry is None:
            entry = self._files[name] = [[], -1]
        blocks = entry[0]
        length = len(data)
        while len(blocks) * self.BLOCK < length:
            blocks.append(bytearray(self.BLOCK))
        view = memoryview(data)
        for index in range((length + self.BLOCK - 1) // self.BLOCK):
            start = index * self.BLOCK
            end = min(start + self.BLOCK, length)
            blocks[index][: end - start] = view[start:end]
        entry[1] = length
        self.writes += 1

    def remove(self, name):
        entry = self._files.get(name)
        if entry is not None:
            entry[1] = -1
