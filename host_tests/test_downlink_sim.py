"""The downlink end to end: the real firmware (tools/sim, MicroPython at 96 KiB) against the
real back end over TLS. A config pushed with tools/backend is in force for the next sale, a
card blacklisted mid-day is declined at the next sale, a settle command runs once, and an
invalid config is refused by the back end before any terminal sees it."""

import json
import os
import subprocess
import sys

from test_sim import ROOT, backend_report, sim, state_folder

from pos.config import pin_hash_hex


def backend(*args):
    return subprocess.run(
        [sys.executable, "-m", "tools.host.backend", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def new_config(max_sale_minor):
    salt = bytes(range(12))
    cashier = {"number": 1, "name": "Ana", "role": "cashier", "merchants": "all"}
    cashier["pin_hash"] = pin_hash_hex("1111", salt, 2000)
    merchant = {"number": 1, "merchant_id": "800000000000001", "name": "Ramen Bar"}
    merchant.update(currency="EUR", limits={"max_sale_minor": max_sale_minor})
    return {
        "merchants": {"version": 2, "merchants": [merchant]},
        "cashiers": {"version": 2, "pin_salt": salt.hex(), "cashiers": [cashier]},
    }


def test_config_blacklist_and_settle_reach_the_terminal_once():
    state = state_folder("downlink")
    first = sim(state, "1 1 1 1 # 1 # 5 0 0 # 4 # # 1 # 6 0 0 # 1 card:4111111111111111 #")
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("|APPROVED        |") == 2  # the card is not blocked yet
    db = os.path.join(state, "backend.db")
    with open(os.path.join(state, "backend", "terminals.json")) as source:
        tid = next(iter(json.load(source)))
    config_file = os.path.join(state, "config.json")
    with open(config_file, "w") as out:
        json.dump(new_config(0), out)  # a zero cap: the terminal's parser refuses it
    refused = backend("config", "set", "--db", db, "--terminal", tid, config_file)
    assert refused.returncode == 2 and "max_sale_minor" in refused.stderr
    with open(config_file, "w") as out:
        json.dump(new_config(1000), out)
    pushed = backend("config", "set", "--db", db, "--terminal", tid, config_file)
    assert pushed.returncode == 0 and "config 1 " in pushed.stdout, pushed.stderr
    key_file = os.path.join(state, "backend", "card_token.key")
    blocked = backend(
        "blacklist", "add", "--db", db, "--token-key-file", key_file, "4111111111111111"
    )
    assert blocked.returncode == 0, blocked.stderr
    assert backend("command", "settle", "--db", db, "--terminal", tid).returncode == 0
    second = sim(
        state,
        "wait:4000 1 1 1 1 # 1 # 2 0 0 0 # 1 card:4111111111111111 #",  # 20.00: last 0 refused
        "--drain",
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert "|Ramen Bar       |" in second.stdout and "|Max 10.00       |" in second.stdout
    assert "|Card blocked    |" in second.stdout
    report = backend_report(state)[1]
    assert len(report["settlements"]) == 1 and report["settlements"][0]["reconciles"]
    assert report["settlements"][0]["sales_total_minor"] == 1100
    third = sim(state, "wait:3000 1", "--drain")  # the settle is not run again
    assert third.returncode == 0, third.stdout + third.stderr
    assert len(backend_report(state)[1]["settlements"]) == 1
    shown = backend("report", "--db", db)
    assert "config 1 (terminal has 1), blacklist 1 (has 1), commands 1 settle taken" in (
        shown.stdout
    )
