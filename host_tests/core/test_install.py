"""The update's boot code (pos.install) on both runtimes: a power cut at every erase and
program of an install and of a rollback (the NOR-flash model) ends, once the boot code has
run again, with one image whole in the romfs partition and the phase that says which; a
version on trial gets its boots, then the image before it is back."""

import os

from expect import raises, scratch
from norflash import NorFlash, PowerCut
from pos import install
from pos.release import pack_header
from pos.store import FileStore

SECTORS = 3  # a small romfs partition: 12 KiB
SIZE = SECTORS * 4096


def byte_of(kind, index):
    """The images, as functions of the offset: no copies on a 96 KiB heap."""
    if kind == 1:
        return (index * 7 + 1) & 0xFF if index < SIZE - 1000 else 0xFF
    return (index * 13 + 5) & 0xFF if index < SIZE - 3000 else 0xFF


def write_image(path, kind, length, header=b""):
    piece = bytearray(256)
    with open(path, "wb") as out:
        out.write(header)
        for start in range(0, length, 256):
            count = min(256, length - start)
            for i in range(count):
                piece[i] = byte_of(kind, start + i)
            out.write(memoryview(piece)[:count])


def holds(romfs, kind):
    piece = bytearray(256)
    for start in range(0, SIZE, 256):
        romfs.read(start, piece)
        for i in range(256):
            if piece[i] != byte_of(kind, start + i):
                return False
    return True


def setup(name, romfs, phase):
    """The old image (1) in the partition, the new one (2) staged; on TRIAL the new one
    installed, its boots used up, the old one saved."""
    folder = scratch(name)
    os.mkdir(folder)
    store = FileStore(folder)
    romfs.erase_all()
    piece = bytearray(256)
    kind = 2 if phase == install.TRIAL else 1
    for start in range(0, SIZE, 256):
        for i in range(256):
            piece[i] = byte_of(kind, start + i)
        romfs.program(start, piece)
    length = SIZE - 3000
    header = pack_header(100, 2, 0, length, bytes(32)) + b"\x5a" * 100
    write_image(folder + "/" + install.STAGED, 2, length, header)
    if phase == install.TRIAL:
        write_image(folder + "/" + install.BACKUP, 1, SIZE)
        install.write_state(store, [install.TRIAL, install.TRIAL_BOOTS, 2, 2, 1, 1])
    else:
        install.write_state(store, [phase, 0, 1, 2, 1, 1])
    romfs.ops = 0
    return folder, store


def cut_everywhere(phase, wanted, running, final):
    romfs = NorFlash(SECTORS)
    folder, store = setup("install", romfs, phase)
    install.boot(store, romfs, folder)
    operations = romfs.ops
    assert operations >= 2 * SECTORS
    for cut in range(operations):
        folder, store = setup("install", romfs, phase)
        romfs.cut_at(cut, seed=cut + 1)
        raises(PowerCut, install.boot, store, romfs, folder)
        # The boot code runs again at power-on, before anything is imported.
        assert install.read_state(store)[0] in (install.COPY, install.REVERT)
        romfs.reboot()
        state = install.boot(store, romfs, folder)
        assert holds(romfs, wanted), "cut %d" % cut
        assert state[0] == final and state[2] == running, "cut %d" % cut


def test_a_power_cut_at_every_write_of_an_install_ends_with_the_new_image():
    cut_everywhere(install.SAVE, 2, 2, install.TRIAL)


def test_a_power_cut_at_every_write_of_a_rollback_ends_with_the_old_image():
    cut_everywhere(install.TRIAL, 1, 1, install.ROLLED_BACK)


def test_a_version_on_trial_gets_its_boots_then_is_rolled_back():
    romfs = NorFlash(SECTORS)
    folder, store = setup("trial", romfs, install.SAVE)
    state = install.boot(store, romfs, folder)
    assert state[:3] == [install.TRIAL, 1, 2] and holds(romfs, 2)
    for boots in range(2, install.TRIAL_BOOTS + 1):
        assert install.boot(store, romfs, folder)[:2] == [install.TRIAL, boots]
    state = install.boot(store, romfs, folder)
    assert state[0] == install.ROLLED_BACK and state[2] == 1 and state[3] == 2
    assert holds(romfs, 1)
    assert store.read(install.TEXT) == b"sw=1;ota=rolledback:2"
