"""Automatic blocking end to end: the real firmware (tools/sim, MicroPython at 96 KiB) and the
real back end over TLS. Three velocity declines of one card at merchant 1 block it at
merchant 2 of the same terminal at once; with the operator's policy `propagate`, a second
terminal of the same operator declines it too after its next sync."""

import json
import os

from test_sim import sim, state_folder

from tools.host.backend import LedgerDB, Server, make_certs
from tools.host.sim import another_terminal, prepare_state

CARD = "card:4111111111111111"


def card_sale(merchant):
    return "%s # 5 0 0 # 1 %s # #" % (merchant, CARD)


def _terminal(state):
    with open(os.path.join(state, "backend", "terminals.json")) as source:
        ((tid, entry),) = json.load(source).items()
    return tid, bytes.fromhex(entry["ik_id"]), entry["merchants"]


def test_three_declines_block_the_card_here_at_once_and_on_the_fleet_after_a_sync():
    first = state_folder("autoblock-a")
    prepare_state(first)
    keys = os.path.join(first, "backend")
    make_certs(keys)
    # A second terminal of the same operator: the BDK, card-token key and CA copied.
    second = state_folder("autoblock-b")
    db_path = os.path.join(first, "backend.db")
    db = LedgerDB(db_path)
    for tid, ik_id, merchants in (_terminal(first), another_terminal(first, second)):
        db.add_terminal(tid, ik_id, merchants)
    db.set_auto_block_policy("propagate")
    db.close()
    server = Server(db_path, os.path.join(keys, "bdk.key"), keys)
    try:
        # Three approved uses, three velocity declines at merchant 1, then merchant 2.
        keys_a = "1 1 1 1 # " + " ".join([card_sale(1)] * 6) + " 2 # 5 0 0 # 1 %s #" % CARD
        run = sim(first, keys_a, "--backend", server.url, "--drain", timeout=180)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr
        assert run.stdout.count("|APPROVED        |") == 3
        assert run.stdout.count("|Card used often |") == 3
        assert run.stdout.count("|Card blocked    |") == 1  # merchant 2, at once
        tid_a = _terminal(first)[0]
        db = LedgerDB(db_path, mode="read")
        (block,) = db.report()["auto_blocks"]
        db.close()
        assert block["terminal"] == tid_a and block["status"] == "propagated"
        assert [e["merchant"] for e in block["evidence"]] == [1, 1, 1]
        assert block["reasons"] == ["Card used often"]
        # The other terminal: its first sync fetches the list, then the card is blocked.
        keys_b = "wait:4000 1 1 1 1 # 3 # 5 0 0 # 1 %s #" % CARD
        run = sim(second, keys_b, "--backend", server.url, "--drain", timeout=180)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr
        assert "|Card blocked    |" in run.stdout
    finally:
        server.stop()
