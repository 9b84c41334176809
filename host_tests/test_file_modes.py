"""Files that hold keys, PIN hashes or card tokens are created for their owner alone (0600,
folders 0700), whatever the umask: the back end's database and its WAL files, the
provisioning output, the simulator's state, the certificates' keys."""

import os
import stat

import pytest

from tools.host import provision, sim
from tools.host.backend import LedgerDB, make_certs

BDK = bytes(range(16))


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(autouse=True)
def lax_umask():
    old = os.umask(0o022)  # what most shells give: files 0644 unless the code says otherwise
    yield
    os.umask(old)


def test_database_and_its_wal_files(tmp_path):
    path = str(tmp_path / "backend.db")
    db = LedgerDB(path, BDK)
    db.add_terminal("T0001", bytes(8))  # a write: the -wal, -shm and -writer files exist now
    for name in ("backend.db", "backend.db-wal", "backend.db-shm", "backend.db-writer"):
        assert mode(tmp_path / name) == 0o600, name
    db.close()


def test_provisioning_output(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    for name, text in sim.demo_config("TM0001", b"\x05" * 16, b"salt-for-tests").items():
        (config / name).write_text(text)
    out = tmp_path / "out"
    (out).mkdir()
    (out / "vfs.img").write_bytes(b"old")  # an earlier, world-readable file is tightened
    os.chmod(out / "vfs.img", 0o644)
    provision.provision(str(config), BDK, "TM0001", str(out), flash_image=True)
    for name in ("vfs.img", "identity.json", "flash.bin"):
        assert mode(out / name) == 0o600, name


def test_simulator_state_and_keys(tmp_path):
    state = tmp_path / "state"
    sim.prepare_state(str(state))
    assert mode(state) == 0o700 and mode(state / "backend") == 0o700
    for name in ("flash.bin", "provision.json", "backend/bdk.key", "backend/card_token.key"):
        assert mode(state / name) == 0o600, name
    make_certs(str(state / "backend"))
    assert mode(state / "backend" / "server.key") == 0o600
