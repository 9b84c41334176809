"""Key rotation end to end: the real firmware (tools/sim, MicroPython at 96 KiB) and the real
back end over TLS. Mid-day the operator rotates to a new BDK; the terminal fetches its new
keys, installs them at an idle moment, and every record, before the rotation and after it,
reaches the back end and opens; tools/recover opens the dump given both key files."""

import json
import os
import secrets
import sqlite3
import subprocess
import sys

from test_sim import ROOT, backend_report, sim, state_folder

SALE = "2 # %d 0 0 # 4 # #"


def run(*args):
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def registered_ik_id(state):
    with open(os.path.join(state, "backend", "terminals.json")) as source:
        return json.load(source).popitem()[1]["ik_id"]


def test_a_rotation_mid_day_keeps_every_record_readable():
    state = state_folder("keyrot")
    first = sim(state, "1 1 1 1 # " + SALE % 5 + " " + SALE % 6, "--drain")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    # A sale queued offline, before the rotation: it is sealed under the old keys. (With the
    # link switched off by a key after the firmware started, its first contact could fetch
    # and install the rotation before the sale, on a loaded machine.)
    offline = sim(state, "1 1 1 1 # " + SALE % 7, "--offline")
    assert offline.returncode == 0, offline.stdout[-2000:] + offline.stderr
    db = os.path.join(state, "backend.db")
    new_key = os.path.join(state, "backend", "bdk-2.key")
    with open(os.open(new_key, os.O_WRONLY | os.O_CREAT, 0o600), "w") as out:
        out.write(secrets.token_hex(16) + "\n")
    rotated = run("-m", "tools.host.backend", "keys", "rotate", "--db", db, "--bdk-file", new_key)
    assert rotated.returncode == 0 and "generation 1 offered" in rotated.stdout, rotated.stderr
    # Then the link: the queued sale goes, the rotation arrives and is installed at the
    # merchant menu; the next sale is sealed under the new keys.
    keys = "1 1 1 1 # wait:6000 " + SALE % 8
    second = sim(state, keys, "--drain")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr
    report = backend_report(state)
    assert report[2]["sales_total_minor"] == 500 + 600 + 700 + 800
    status = run("-m", "tools.host.backend", "keys", "status", "--db", db, "--json")
    (terminal,) = json.loads(status.stdout)["terminals"]
    assert terminal["installed"] == 1 and terminal["current"], status.stdout
    assert terminal["heard"] == "generation 1"
    recovered = run("-m", "tools.host.recover", "--state", state, "--json")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    amounts = [row["amount_minor"] for row in json.loads(recovered.stdout)]
    assert amounts == [500, 600, 700, 800]
    # With the old key file alone, the last sale does not open: it is the new key's.
    flash = os.path.join(state, "flash.bin")
    old_key = os.path.join(state, "backend", "bdk.key")
    old_ik_id = registered_ik_id(state)
    old_only = run(
        "-m", "tools.host.recover", "--flash", flash, "--bdk-file", old_key, "--ik-id", old_ik_id
    )
    assert old_only.returncode == 1 and old_only.stdout.count("UNREADABLE") == 1
    # An operator's dump, both key files and both IK IDs given by hand: every record opens.
    with sqlite3.connect(db) as ledger:
        (new_ik_id,) = ledger.execute(
            "SELECT ik_id FROM key_generations WHERE generation = 1"
        ).fetchone()
    both = run(
        "-m",
        "tools.host.recover",
        "--flash",
        flash,
        "--bdk-file",
        old_key,
        "--bdk-file",
        new_key,
        "--ik-id",
        old_ik_id,
        "--ik-id",
        bytes(new_ik_id).hex(),
        "--json",
    )
    assert both.returncode == 0, both.stdout + both.stderr
    assert [row["amount_minor"] for row in json.loads(both.stdout)] == [500, 600, 700, 800]
