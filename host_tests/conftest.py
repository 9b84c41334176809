"""pytest setup: the core, the host emulators and the core tests' helpers on sys.path."""

import gc
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for folder in ("lib", "tools/emu", "host_tests/core"):
    path = os.path.join(ROOT, folder)
    if path not in sys.path:
        sys.path.insert(0, path)

import pytest  # noqa: E402

from tools.host.pgserver import PostgresServer  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server of the test run's own (tools/host/pgserver.py), started when a
    test first asks for it and stopped at the end; each test takes a new database on it."""
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_at(request, tmp_path):
    """Where a test's ledger lives, once per store: a new SQLite file, or a new database on
    the run's PostgreSQL server (its URL). `--db` takes either."""
    if request.param == "sqlite":
        yield str(tmp_path / "ledger.db")
        return
    server = request.getfixturevalue("postgres_server")
    url = server.new_database()
    yield url
    server.drop_database(url)


@pytest.fixture(autouse=True)
def _collections_see_only_the_tests_objects():
    """The core calls gc.collect() where MicroPython's 96 KiB heap needs it (before a large
    allocation, after a module is unloaded, between power cuts). In a pytest process that
    holds every library's objects, each of those full collections took 0.1 s or more, and
    the power-cut tests make thousands: 800 s of the stage went there. The objects made
    before a test are frozen (gc.freeze: left out of collections) while it runs; what it
    collects is its own garbage, as on the device."""
    gc.freeze()
    yield
    gc.unfreeze()
