"""The terminal's side of an update, on CPython: every attack on a staged release is refused
before anything changes (pos.update), and the boot code (pos.install) survives a power cut at
every erase and program of the romfs partition, installing and rolling back: the partition
ends holding the old image or the new one whole, never a mixture that gets imported."""

import os
import shutil

import pytest
import updatekit

from norflash import NorFlash, PowerCut
from pos import install, update
from pos.release import pack_header
from pos.store import FileStore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "build", "scratch", "update")
SECTORS = 8  # a small romfs partition: 32 KiB


class Board:
    def __init__(self, folder, public_key):
        self.store = FileStore(os.path.join(folder, "state"))
        self.config_folder = os.path.join(folder, "config")
        os.makedirs(self.config_folder, exist_ok=True)
        if public_key is not None:
            with open(os.path.join(self.config_folder, "release.pub"), "wb") as out:
                out.write(public_key)


@pytest.fixture(scope="module")
def releases():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    key = os.path.join(WORK, "key")
    other = os.path.join(WORK, "other")
    image = updatekit.image(WORK, "img")
    made = {
        "pub": updatekit.key(key),
        "other_pub": updatekit.key(other),
        2: updatekit.build(key, 2, image, os.path.join(WORK, "2.release")),
        3: updatekit.build(key, 3, image, os.path.join(WORK, "3.release"), min_version=2),
        "foreign": updatekit.build(other, 4, image, os.path.join(WORK, "f.release")),
    }
    return made


def staged(name, data, public_key, running=0, floor=0):
    folder = os.path.join(WORK, name)
    shutil.rmtree(folder, ignore_errors=True)
    board = Board(folder, public_key)
    with open(os.path.join(board.store.folder, install.STAGED), "wb") as out:
        out.write(data)
    return board, [install.IDLE, 0, running, 0, 0, floor]


def refused(board, state, offered):
    with pytest.raises(update.UpdateRefused) as caught:
        update._check(board, state, offered, True)
    return str(caught.value)


def test_a_good_release_passes(releases):
    board, state = staged("good", releases[2], releases["pub"])
    update._check(board, state, 2, True)


def test_attacks_are_refused(releases):
    pub = releases["pub"]
    good = releases[2]
    cases = {
        "unsigned": (b"\x00" * len(good), pub, 2, 0, "not a release"),
        "wrong key": (releases["foreign"], pub, 4, 0, "bad signature"),
        "no key": (good, None, 2, 0, "no release key"),
        "tampered image": (good[:-1] + bytes([good[-1] ^ 1]), pub, 2, 0, "signed hash"),
        "tampered header": (good[:8] + b"\x00\x00\x00\x09" + good[12:], pub, 9, 0, "signature"),
        "truncated": (good[:-100], pub, 2, 0, "cut short"),
        "older than installed": (good, pub, 2, 3, "not newer"),
        "replayed old release": (good, pub, 2, 2, "not newer"),
        "offered for another version": (good, pub, 5, 0, "offered as 5"),
        "needs a newer installed": (releases[3], pub, 3, 1, "needs 2 or later"),
    }
    for name, (data, key, offered, running, reason) in cases.items():
        board, state = staged(name.replace(" ", "_"), data, key, running)
        assert reason in refused(board, state, offered), name
    # The anti-rollback floor holds even when the running version is lower (a rollback).
    board, state = staged("floor", good, pub, running=1, floor=2)
    assert "not newer" in refused(board, state, 2)


def test_an_image_larger_than_the_partition_is_refused_from_its_header():
    header = pack_header(100, 2, 0, update.ROMFS_SIZE + 1, b"\x00" * 32)
    with pytest.raises(update.UpdateRefused, match="does not fit"):
        update._header_total(header)


def setup_install(name, phase):
    """A partition with the old image, the new one staged, the old one saved (update.old)."""
    folder = os.path.join(WORK, name)
    shutil.rmtree(folder, ignore_errors=True)
    store = FileStore(folder)
    old = bytes((i * 7 + 1) & 0xFF for i in range(SECTORS * 4096 - 1000))
    new = bytes((i * 13 + 5) & 0xFF for i in range(SECTORS * 4096 - 3000))
    romfs = NorFlash(SECTORS)
    padded_old = old + b"\xff" * (SECTORS * 4096 - len(old))
    for sector in range(SECTORS):
        romfs.program(sector * 4096, padded_old[sector * 4096 : (sector + 1) * 4096])
    signature = b"\x5a" * 100
    with open(os.path.join(folder, install.STAGED), "wb") as out:
        out.write(pack_header(len(signature), 2, 0, len(new), b"\x00" * 32) + signature + new)
    if phase == install.TRIAL:
        with open(os.path.join(folder, install.BACKUP), "wb") as out:
            out.write(padded_old)
        padded_new = new + b"\xff" * (SECTORS * 4096 - len(new))
        romfs.erase_all()
        for sector in range(SECTORS):
            romfs.program(sector * 4096, padded_new[sector * 4096 : (sector + 1) * 4096])
        install.write_state(store, [install.TRIAL, install.TRIAL_BOOTS, 2, 2, 1, 1])
    else:
        install.write_state(store, [phase, 0, 1, 2, 1, 1])
    romfs.ops = 0
    return folder, store, romfs, padded_old, new + b"\xff" * (SECTORS * 4096 - len(new))


def contents(romfs):
    data = bytearray(SECTORS * 4096)
    romfs.read(0, data)
    return bytes(data)


@pytest.mark.parametrize("phase", [install.SAVE, install.TRIAL])
def test_a_power_cut_at_every_flash_write_leaves_a_whole_image(phase):
    """SAVE: the install (save, copy); TRIAL with its boots used up: the rollback."""
    folder, store, romfs, old, new = setup_install("count", phase)
    install.boot(store, romfs, folder)
    operations = romfs.ops
    assert operations >= 2 * SECTORS
    wanted, running = (new, 2) if phase == install.SAVE else (old, 1)
    for cut in range(operations):
        folder, store, romfs, old, new = setup_install("cut", phase)
        romfs.cut_at(cut, seed=cut + 1)
        with pytest.raises(PowerCut):
            install.boot(store, romfs, folder)
        # Power comes back: the boot code runs again before anything is imported.
        assert install.read_state(store)[0] in (install.COPY, install.REVERT)
        romfs.reboot()
        state = install.boot(store, romfs, folder)
        assert contents(romfs) == wanted, "cut %d" % cut
        assert state[2] == running, "cut %d" % cut
        expected = install.TRIAL if phase == install.SAVE else install.ROLLED_BACK
        assert state[0] == expected


def test_a_version_on_trial_gets_its_boots_then_is_rolled_back():
    folder, store, romfs, old, new = setup_install("trial", install.SAVE)
    state = install.boot(store, romfs, folder)
    assert state[:3] == [install.TRIAL, 1, 2] and contents(romfs) == new
    for boots in range(2, install.TRIAL_BOOTS + 1):
        assert install.boot(store, romfs, folder)[:2] == [install.TRIAL, boots]
    state = install.boot(store, romfs, folder)
    assert state[0] == install.ROLLED_BACK and state[2] == 1 and state[3] == 2
    assert contents(romfs) == old
    assert store.read(install.TEXT) == b"sw=1;ota=rolledback:2"
