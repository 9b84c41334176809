"""The back end and automatic blocks: a terminal's BLOCK record joins the fleet blacklist by
the operator's policy (propagate at once, or review), and every block is reported with its
evidence."""

import io

import pytest
from test_backend import BDK, IK_ID, MERCHANTS, Terminal, backend, one_line_refusal

from pos.autoblock import BLOCK, FLAG_LIFTED
from pos.record import CREDIT, DECLINE, Record
from tools.host.backend import LedgerDB
from tools.host.backend.reports import print_report

TOKEN = bytes.fromhex("0a1b2c3d4e5f")
NOON = 1_795_000_000


def _blocked_card(terminal):
    """Three velocity declines of one card at merchant 1, then the terminal's block."""
    for i in range(3):
        terminal.ledger.book(
            Record(
                DECLINE,
                1,
                500,
                978,
                method=CREDIT,
                reason=7,
                time=NOON + 60 * i,
                token=TOKEN,
                last_four=1111,
            )
        )
    terminal.ledger.book(
        Record(
            BLOCK,
            1,
            3,
            978,
            reason=7,
            reference=1 << 7,
            time=NOON + 120,
            cashier=1,
            token=TOKEN,
            last_four=1111,
        )
    )


@pytest.fixture()
def db(ledger_at):
    """A ledger with T0001 registered, on each store in turn (SQLite, PostgreSQL)."""
    db = LedgerDB(ledger_at, BDK)
    db.add_terminal("T0001", IK_ID, MERCHANTS)
    yield db
    db.close()


def _listed(db):
    version = db.versions("T0001")["blacklist"]
    document = db.document("T0001", 2, 0)  # BLACKLIST, the whole list
    return version, document


def test_propagate_puts_the_token_on_the_fleet_list_in_the_next_version(db):
    db.set_auto_block_policy("propagate")
    before = db.versions("T0001")["blacklist"]
    terminal = Terminal()
    _blocked_card(terminal)
    db.ingest("T0001", terminal.batch())
    assert db.versions("T0001")["blacklist"] == before + 1
    listed = [bytes(r[0]) for r in db._db.execute("SELECT token FROM blacklist")]
    assert listed == [TOKEN]
    (block,) = db.report()["auto_blocks"]
    assert block["status"] == "propagated" and block["blacklist_version"] == before + 1
    assert block["terminal"] == "T0001" and block["declines"] == 3
    assert block["reasons"] == ["Card used often"]
    assert [(e["merchant"], e["time"], e["reason"]) for e in block["evidence"]] == [
        (1, NOON, "Card used often"),
        (1, NOON + 60, "Card used often"),
        (1, NOON + 120, "Card used often"),
    ]
    # The block is no decline and no money.
    merchant = db.report()["merchants"][0]
    assert merchant["declines_count"] == 3 and merchant["net_total_minor"] == 0
    out = io.StringIO()
    print_report(db.report(), out)
    assert "AUTO-BLOCK: card ****1111 (token:0a1b2c3d4e5f) on terminal T0001" in out.getvalue()
    assert "3 declines (Card used often); propagated in blacklist 1" in out.getvalue()


def test_review_holds_the_token_until_the_operator_accepts_it(db):
    assert db.auto_block_policy() == "review"  # the default
    terminal = Terminal()
    _blocked_card(terminal)
    db.ingest("T0001", terminal.batch())
    assert db.versions("T0001")["blacklist"] == 0  # nothing on the fleet list yet
    (block,) = db.report()["auto_blocks"]
    assert block["status"] == "waiting for review"
    version = db.review_auto_blocks(accept=[TOKEN])
    assert version == 1 and db.versions("T0001")["blacklist"] == 1
    assert db.report()["auto_blocks"][0]["status"] == "accepted"


def test_a_rejected_block_stays_off_the_list_and_a_lift_is_reported(db):
    terminal = Terminal()
    _blocked_card(terminal)
    terminal.ledger.book(
        Record(BLOCK, 1, 0, 978, cashier=9, flags=FLAG_LIFTED, token=TOKEN, time=NOON + 300)
    )
    db.ingest("T0001", terminal.batch())
    assert db.review_auto_blocks(reject=[TOKEN]) is None
    blocks = db.report()["auto_blocks"]
    assert [b["status"] for b in blocks] == ["rejected", "lifted on the terminal"]
    assert db.versions("T0001")["blacklist"] == 0
    out = io.StringIO()
    print_report(db.report(), out)
    assert "Block lifted: card ****0000" not in out.getvalue()
    assert "on terminal T0001 by supervisor 9" in out.getvalue()


def test_the_cli_sets_the_policy_and_reviews(ledger_at):
    path = ledger_at
    db = LedgerDB(path, BDK)
    db.add_terminal("T0001", IK_ID, MERCHANTS)
    terminal = Terminal()
    _blocked_card(terminal)
    db.ingest("T0001", terminal.batch())
    db.close()
    one_line_refusal(
        backend("blacklist", "policy", "--db", path, "sometimes"), "propagate or review"
    )
    listing = backend("blacklist", "review", "--db", path)
    assert listing.returncode == 0, listing.stderr
    assert "auto_block policy: review; 1 waiting for review" in listing.stdout
    assert "decline" in listing.stdout and "merchant 1" in listing.stdout
    one_line_refusal(
        backend("blacklist", "review", "--db", path, "--accept", "token:ffffffffffff"),
        "not waiting for review",
    )
    accepted = backend("blacklist", "review", "--db", path, "--accept", "token:0a1b2c3d4e5f")
    assert accepted.returncode == 0 and "1 accepted (blacklist 1)" in accepted.stdout
    policy = backend("blacklist", "policy", "--db", path, "propagate")
    assert policy.returncode == 0 and "propagate" in policy.stdout
