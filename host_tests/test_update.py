"""The terminal's side of an update, on CPython: every attack on a staged release is refused
before anything changes (pos.update). The boot code's power cuts are in core/test_install
(both runtimes); the whole path in test_update_sim."""

import os
import shutil

import pytest
import updatekit

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


def test_the_back_end_checks_offers_and_serves_only_whom_it_offers(releases, ledger_at):
    """On each store in turn (SQLite, PostgreSQL): the releases table is migration 0004."""
    from tools.host.backend import LedgerDB
    from tools.host.backend.errors import DownlinkError
    from tools.host.backend.releases import CHUNK_BYTES, bucket

    db = LedgerDB(ledger_at)
    tids = ["T%04d" % n for n in range(40)]
    for n, tid in enumerate(tids):
        db.add_terminal(tid, bytes([n]) * 8)
    for data, key in ((releases["foreign"], releases["pub"]), (releases[2][:-1], releases["pub"])):
        with pytest.raises(DownlinkError, match="release refused"):
            db.add_release(data, key)
    db.add_release(releases[2], releases["pub"], terminals=["T0001"])
    assert db.offered_release("T0001") == 2 and db.offered_release("T0002") == 0
    assert db.release_chunk("T0002", 2, 0) is None  # another terminal's offer
    assert db.release_chunk("T0001", 2, 0) == releases[2][:CHUNK_BYTES]
    assert db.release_chunk("T0001", 2, CHUNK_BYTES) == releases[2][CHUNK_BYTES : 2 * CHUNK_BYTES]
    db.add_release(releases[3], releases["pub"], percent=30)
    offered = [tid for tid in tids if db.offered_release(tid) == 3]
    assert offered == [tid for tid in tids if bucket(tid) < 30] and 0 < len(offered) < 40
    assert db.versions(offered[0])["release"] == 3
    db.stop_release(3)
    assert db.offered_release(offered[0]) == (2 if offered[0] == "T0001" else 0)
    listed = db.releases()
    assert [(r["version"], r["size"], r["stopped"]) for r in listed] == [
        (3, len(releases[3]), True),
        (2, len(releases[2]), False),
    ]
    assert listed[1]["rollout"] == ["T0001"] and listed[0]["rollout"] == "30%"
    with pytest.raises(DownlinkError, match="no release 9"):
        db.stop_release(9)
    db.close()
