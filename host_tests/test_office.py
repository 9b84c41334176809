"""The back office: who sees what (every route, from the app's own list), CSRF, sessions,
the login rate limit, password hashing, figures and statements equal to the report to the
cent, commission, IBAN checks, the payout files and tools/backend users."""

import json
import os
import re
import subprocess
import sys

import officekit as kit
import pytest

from tools.host.backend.office import PUBLIC_PATHS, routes
from tools.host.backend.office.accounts import (
    MAX_FAILURES_PER_NAME,
    TOO_MANY,
    WRONG_LOGIN,
)

NOW = kit.DAY2 + 15 * 3600  # the afternoon of the second day
BOTH_DAYS = "from=2026-11-28&to=2026-11-29"
NAMES = {kit.NOODLES: "Noodle Bar", kit.TEA: "Tea House", kit.DUMPLINGS: "Dumpling House"}


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture()
def ledger(tmp_path):
    db = kit.make_ledger(str(tmp_path / "backend.db"))
    yield db
    db.close()


@pytest.fixture()
def ledger_on_both(ledger_at):
    """The same ledger on SQLite and on PostgreSQL (conftest's ledger_at)."""
    db = kit.make_ledger(ledger_at)
    yield db
    db.close()


@pytest.fixture()
def clock():
    return Clock()


def browser(ledger, clock, name=None):
    client = kit.client(ledger, clock)
    if name is not None:
        answer = kit.login(client, name)
        assert answer.status_code == 303, answer.text
    return client


TABLES = (
    "terminals merchants records heartbeats quarantine configs blacklist counters commands "
    "faults users sessions login_failures audit commission payees office_settings"
).split()


def state(ledger, *, sessions=True):
    """Everything the ledger holds, as text: a request that changes nothing leaves it so."""
    lines = []
    for table in TABLES:
        if not sessions and table in ("sessions", "login_failures"):
            continue
        rows = ledger._db.execute("SELECT * FROM %s" % table).fetchall()
        lines += sorted(
            "%s %r" % (table, tuple(bytes(v) if isinstance(v, memoryview) else v for v in row))
            for row in rows
        )
    return "\n".join(lines)


def office_routes(app):
    """(method, path template) of every back-office route the app has, but the public two."""
    out = [(method, path) for method, path in routes(app) if path not in PUBLIC_PATHS]
    assert len(out) >= 20  # the list is the app's own, not a copy that could go stale
    return out


def fill(path, merchant_id=kit.NOODLES, tid="T0001", counter="1", chart="hour"):
    return (
        path.replace("{merchant_id}", merchant_id)
        .replace("{tid}", tid)
        .replace("{counter}", counter)
        .replace("{chart}", chart)
    )


def send(client, method, path, form=None):
    if method == "GET":
        return client.get(path)
    return client.post(path, data=form or {})


def test_every_route_sends_a_stranger_to_the_login_and_changes_nothing(ledger_on_both, clock):
    ledger = ledger_on_both
    client = browser(ledger, clock)
    before = state(ledger)
    routes = office_routes(client.app)
    for method, template in routes:
        form = {"csrf": "x", "action": "add", "name": "mallory", "role": "operator"}
        answer = send(client, method, fill(template), form)
        assert answer.status_code == 303, (method, template, answer.status_code)
        assert answer.headers["location"] == "/office/login", template
        assert "Noodle" not in answer.text and "800000000000" not in answer.text
    assert state(ledger) == before


def test_a_merchant_sees_only_its_own_merchant_on_every_route(ledger_on_both, clock):
    ledger = ledger_on_both
    tea = browser(ledger, clock, "tea")
    csrf = kit.csrf_of(tea, "/office/merchants/%s" % kit.TEA)
    before = state(ledger, sessions=False)
    others = [kit.NOODLES, kit.DUMPLINGS, "999999999999999"]
    checked = 0
    for method, template in office_routes(tea.app):
        if template in ("/office/", "/office/login", "/office/logout"):
            continue
        if "{merchant_id}" in template:
            paths = [fill(template, other) + "?" + BOTH_DAYS for other in others]
            if "{counter}" in template:
                # Its own merchant ID with another merchant's sale (T0002's counter 1 is
                # dumplings', T0001's counter 4 is tea's own).
                paths += [fill(template, kit.TEA, "T0002", str(n)) for n in range(1, 6)]
                paths += [fill(template, kit.TEA, "T0001", "1")]
        else:
            paths = [fill(template)]  # an operator's page
        for path in paths:
            answer = send(tea, method, path, {"csrf": csrf, "action": "add", "name": "x"})
            assert answer.status_code == 404, (method, path, answer.status_code)
            for merchant_id in others[:2]:
                assert merchant_id not in answer.text and NAMES[merchant_id] not in answer.text
            checked += 1
    assert checked >= 40
    assert state(ledger, sessions=False) == before
    # Its own pages hold nothing of the others'.
    for template in ("", "/sales", "/settlements", "/statement.csv", "/sales.csv"):
        page = tea.get("/office/merchants/%s%s?%s" % (kit.TEA, template, BOTH_DAYS))
        assert page.status_code == 200
        assert "Noodle" not in page.text and "Dumpling" not in page.text
        assert "T0002" not in page.text  # tea is served by T0001 only
    own_sale = tea.get("/office/merchants/%s/sales/T0001/4" % kit.TEA)
    assert own_sale.status_code == 200 and "Receipt 4" in own_sale.text


def test_the_operator_sees_every_merchant_and_the_fleet(ledger, clock):
    operator = browser(ledger, clock, "op")
    page = operator.get("/office/operator?" + BOTH_DAYS)
    for name in NAMES.values():
        assert name in page.text
    fleet = operator.get("/office/operator/fleet")
    assert "T0001" in fleet.text and "T0002" in fleet.text
    assert operator.get("/office/merchants/%s?%s" % (kit.DUMPLINGS, BOTH_DAYS)).status_code == 200


def test_a_form_without_its_sessions_csrf_token_changes_nothing(ledger_on_both, clock):
    ledger = ledger_on_both
    operator = browser(ledger, clock, "op")
    other = browser(ledger, clock, "op")  # a second session: its token is not this one's
    foreign = kit.csrf_of(other, "/office/operator/users")
    form = {"action": "add", "name": "mallory", "role": "operator", "password": "x" * 12}
    before = state(ledger, sessions=False)
    for token in (None, "", "0" * 43, foreign):
        data = dict(form, csrf=token) if token is not None else form
        answer = operator.post("/office/operator/users", data=data)
        assert answer.status_code == 403
    assert state(ledger, sessions=False) == before
    good = kit.csrf_of(operator, "/office/operator/users")
    answer = operator.post("/office/operator/users", data=dict(form, csrf=good))
    assert answer.status_code == 200 and "user mallory added" in answer.text
    assert "mallory" in operator.get("/office/operator/audit").text


def test_the_login_form_needs_its_own_token(ledger, clock):
    client = browser(ledger, clock)
    answer = client.post(
        "/office/login", data={"name": "op", "password": kit.PASSWORD, "csrf": "forged"}
    )
    assert answer.status_code == 403 and "__Host-onetill_session" not in client.cookies


def test_login_makes_a_new_session_and_logout_ends_it_on_the_server(ledger, clock):
    client = browser(ledger, clock)
    client.cookies.set(
        "__Host-onetill_session", "planted-by-an-attacker", domain="testserver.local"
    )
    assert kit.login(client, "noodles").status_code == 303
    token = client.cookies["__Host-onetill_session"]
    assert token != "planted-by-an-attacker" and len(token) >= 40
    home = "/office/merchants/%s" % kit.NOODLES
    assert client.get(home).status_code == 200
    # Logging in again (as another user) ends the first session: the old cookie is dead.
    assert kit.login(client, "op").status_code == 303
    assert client.cookies["__Host-onetill_session"] != token
    stale = browser(ledger, clock)
    stale.cookies.set("__Host-onetill_session", token, domain="testserver.local")
    assert stale.get(home).status_code == 303
    second = client.cookies["__Host-onetill_session"]
    csrf = kit.csrf_of(client, "/office/operator")
    assert client.post("/office/logout", data={"csrf": csrf}).status_code == 303
    again = browser(ledger, clock)
    again.cookies.set("__Host-onetill_session", second, domain="testserver.local")
    assert again.get("/office/operator").headers["location"] == "/office/login"


def test_session_cookies_are_secure_httponly_samesite(ledger, clock):
    client = browser(ledger, clock)
    answer = kit.login(client, "op")
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("__Host-onetill_session=")
    for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
        assert flag.lower() in cookie.lower()
    assert "domain" not in cookie.lower()
    page = client.get("/office/operator")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


def test_sessions_expire_when_idle(ledger, clock):
    client = browser(ledger, clock, "op")
    clock.now += 31 * 60
    assert client.get("/office/operator").status_code == 303


def test_logins_are_rate_limited_per_name_and_per_address(ledger, clock):
    client = browser(ledger, clock)
    for _ in range(MAX_FAILURES_PER_NAME):
        answer = kit.login(client, "op", "wrong password!")
        assert answer.status_code == 401 and WRONG_LOGIN in answer.text
    refused = kit.login(client, "op")  # the right password, too late
    assert refused.status_code == 401 and TOO_MANY in refused.text
    assert kit.login(client, "noodles").status_code == 303  # another name is not locked
    # An unknown name and a disabled one are refused as a wrong password is.
    assert WRONG_LOGIN in kit.login(browser(ledger, clock), "nobody").text
    clock.now += 15 * 60 + 1
    assert kit.login(browser(ledger, clock), "op").status_code == 303
    # One address trying many names is stopped too.
    stranger = browser(ledger, clock)
    for number in range(20):
        kit.login(stranger, "guess%d" % number, "wrong password!")
    assert TOO_MANY in kit.login(stranger, "tea").text


def test_passwords_are_argon2id_with_the_stated_parameters(ledger):
    from tools.host.backend.office.store import OfficeStore

    stored = OfficeStore(ledger).user("op")["password_hash"]
    assert re.match(r"^\$argon2id\$v=19\$m=65536,t=3,p=4\$", stored), stored
    assert kit.PASSWORD not in stored


# --- figures and statements ---------------------------------------------------------------


def backend(*args):
    return subprocess.run(
        [sys.executable, "-m", "tools.host.backend", *args],
        cwd=kit.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def report_by_merchant_id(db_path, first, last):
    result = backend("report", "--db", db_path, "--json", "--from", first, "--to", last)
    assert result.returncode == 0, result.stderr
    out = {}
    for entry in json.loads(result.stdout)["merchants"]:
        sums = out.setdefault(entry["merchant_id"], {})
        for key, value in entry.items():
            if key.endswith(("_count", "_total_minor")):
                sums[key] = sums.get(key, 0) + value
    return out


STATEMENT_FIGURES = {
    "gross sales": ("sales_count", "sales_total_minor"),
    "voids": ("voids_count", "voids_total_minor"),
    "refunds": ("refunds_count", "refunds_total_minor"),
    "net": (None, "net_total_minor"),
}


@pytest.mark.parametrize(
    "first,last",
    [("2026-11-28", "2026-11-28"), ("2026-11-29", "2026-11-29"), ("2026-11-28", "2026-11-29")],
)
def test_a_statement_equals_the_report_for_the_same_period_to_the_cent(
    ledger_at, clock, first, last
):
    ledger = kit.make_ledger(ledger_at)
    operator = browser(ledger, clock, "op")
    report = report_by_merchant_id(ledger_at, first, last)
    assert report  # the period has money in it
    for merchant_id in kit.MERCHANT_IDS:
        csv_text = operator.get(
            "/office/merchants/%s/statement.csv?from=%s&to=%s" % (merchant_id, first, last)
        ).text
        rows = {line.split(",")[0]: line.split(",") for line in csv_text.splitlines()}
        expected = report.get(merchant_id, {})
        for label, (count_key, total_key) in STATEMENT_FIGURES.items():
            assert int(rows[label][2]) == expected.get(total_key, 0), (merchant_id, label)
            if count_key:
                assert int(rows[label][1]) == expected.get(count_key, 0), (merchant_id, label)
    ledger.close()


def test_noodles_on_two_terminals_are_one_merchant(ledger, clock):
    noodles = browser(ledger, clock, "noodles")
    page = noodles.get("/office/merchants/%s?from=2026-11-29" % kit.NOODLES)
    # Day 2: 15.75 on T0001 (menu number 1) and 33.33 on T0002 (menu number 3).
    assert 'id="net">EUR 49.08<' in page.text
    assert 'id="average">EUR 24.54<' in page.text
    assert page.text.count('<img class="chart"') == 3


def test_a_receipt_is_found_by_its_number_or_amount_and_traced_to_its_z(ledger, clock):
    noodles = browser(ledger, clock, "noodles")
    base = "/office/merchants/%s/sales" % kit.NOODLES
    by_amount = noodles.get(base + "?amount=21.00")
    assert by_amount.text.count("EUR 21.00") == 1 and "5678" in by_amount.text
    link = re.search(r'href="(/office/merchants/\d+/sales/T0001/\d+)"', by_amount.text).group(1)
    sale = noodles.get(link)
    assert "Z 1" in sale.text and "reconciles with the sealed records" in sale.text
    by_receipt = noodles.get(base + "?receipt=7")
    assert "EUR 21.00" in by_receipt.text and "1 found" in by_receipt.text
    assert "0 found" in noodles.get(base + "?amount=9.90").text  # tea's, not noodles'
    assert noodles.get(base + "?amount=twelve").status_code == 400


def test_z_settlements_show_whether_they_reconcile_and_their_receipts(ledger, clock):
    dumplings = browser(ledger, clock, "dumplings")
    page = dumplings.get("/office/merchants/%s/settlements?%s" % (kit.DUMPLINGS, BOTH_DAYS))
    assert "T0002" in page.text and "2 to 3" in page.text and ">yes<" in page.text


def set_form(client, path, form, to=None):
    csrf = kit.csrf_of(client, path)
    return client.post(to or path, data=dict(form, csrf=csrf))


def test_commission_follows_the_rule_in_force_each_day(ledger, clock):
    operator = browser(ledger, clock, "op")
    accounts = "/office/operator/accounts"
    for effective, bp, fixed in (("2026-11-28", "250", "10"), ("2026-11-29", "1000", "0")):
        answer = set_form(
            operator,
            accounts,
            {
                "action": "commission",
                "merchant_id": kit.NOODLES,
                "effective": effective,
                "basis_points": bp,
                "fixed_minor": fixed,
            },
        )
        assert answer.status_code == 200, answer.text
    csv_text = operator.get(
        "/office/merchants/%s/statement.csv?%s" % (kit.NOODLES, BOTH_DAYS)
    ).text
    rows = {line.split(",")[0]: line.split(",") for line in csv_text.splitlines()}
    # Day 1: net 33.50 at 2.5% = 83.75 -> 84, and 2 sales kept x 10 = 20; day 2: net 49.08
    # at 10% = 490.8 -> 491.
    assert int(rows["commission"][2]) == 84 + 20 + 491
    assert int(rows["payout"][2]) == 8258 - 595
    bad = set_form(
        operator,
        accounts,
        {
            "action": "commission",
            "merchant_id": kit.NOODLES,
            "effective": "x",
            "basis_points": "1",
            "fixed_minor": "0",
        },
    )
    assert bad.status_code == 400
    assert "commission" in operator.get("/office/operator/audit").text


def test_an_iban_is_checked_before_it_is_kept(ledger, clock):
    operator = browser(ledger, clock, "op")
    before = state(ledger, sessions=False)
    bad = set_form(
        operator,
        "/office/operator/accounts",
        {
            "action": "payee",
            "merchant_id": kit.TEA,
            "holder": "Tea House",
            "iban": "DE89 3704 0044 0532 0130 01",
        },
    )
    assert bad.status_code == 400 and "not a valid IBAN" in bad.text
    assert state(ledger, sessions=False) == before


def test_the_payout_files_pay_each_merchant_its_statements_payout(ledger_on_both, clock):
    ledger = ledger_on_both
    import sepaxml
    import xmlschema

    operator = browser(ledger, clock, "op")
    accounts = "/office/operator/accounts"
    assert operator.get("/office/operator/payouts.xml?" + BOTH_DAYS).status_code == 409
    ibans = {
        kit.NOODLES: "DE89 3704 0044 0532 0130 00",
        kit.TEA: "DE02 1203 0000 0000 2020 51",
        kit.DUMPLINGS: "DE44 5001 0517 5407 3249 31",
    }
    for merchant_id, iban in ibans.items():
        answer = set_form(
            operator,
            accounts,
            {
                "action": "payee",
                "merchant_id": merchant_id,
                "holder": NAMES[merchant_id],
                "iban": iban,
            },
        )
        assert answer.status_code == 200, answer.text
    set_form(
        operator,
        accounts,
        {"action": "payer", "holder": "Food Court Ltd", "iban": "DE02 1001 0010 0006 8201 01"},
    )
    set_form(
        operator,
        accounts,
        {
            "action": "commission",
            "merchant_id": kit.TEA,
            "effective": "2026-01-01",
            "basis_points": "500",
            "fixed_minor": "0",
        },
    )
    table = operator.get("/office/operator/payouts.csv?" + BOTH_DAYS).text.splitlines()
    payouts = {row.split(",")[0]: int(row.split(",")[6]) for row in table[1:]}
    # Tea: 4.50 + 9.90 - 9.90 refunded = 4.50 net, 5% = 22.5 -> 23.
    assert payouts == {kit.NOODLES: 8258, kit.TEA: 450 - 23, kit.DUMPLINGS: 5555}
    xml = operator.get("/office/operator/payouts.xml?" + BOTH_DAYS).content
    schema = os.path.join(os.path.dirname(sepaxml.__file__), "schemas", "pain.001.001.03.xsd")
    xmlschema.XMLSchema(schema).validate(xml)
    text = xml.decode()
    assert "<CtrlSum>142.40</CtrlSum>" in text  # 82.58 + 4.27 + 55.55
    assert "DE89370400440532013000" in text and '<InstdAmt Ccy="EUR">4.27</InstdAmt>' in text


def test_operator_actions_reach_the_terminal_and_the_audit_log(ledger, clock):
    operator = browser(ledger, clock, "op")
    answer = set_form(
        operator,
        "/office/operator/terminals/T0002",
        {"name": "faultlog"},
        to="/office/operator/terminals/T0002/commands",
    )
    assert answer.status_code == 200 and "command 1 (faultlog) queued" in answer.text
    assert ledger.downlink_report()["T0002"]["commands"][0]["name"] == "faultlog"
    answer = set_form(
        operator, "/office/operator/blacklist", {"action": "add", "cards": "token:a1b2c3d4e5f6"}
    )
    assert "blacklist 1: 1 added" in answer.text and "token:a1b2c3d4e5f6" in answer.text
    answer = set_form(
        operator, "/office/operator/blacklist", {"action": "add", "cards": "4111111111111111"}
    )
    assert answer.status_code == 400 and "token-key-file" in answer.text
    log = operator.get("/office/operator/audit").text
    assert "command queued" in log and "blacklist add" in log and "op" in log


def test_a_disabled_user_is_logged_out_and_cannot_log_in(ledger, clock):
    tea = browser(ledger, clock, "tea")
    operator = browser(ledger, clock, "op")
    answer = set_form(operator, "/office/operator/users", {"action": "disable", "name": "tea"})
    assert "user tea disabled" in answer.text
    assert tea.get("/office/merchants/%s" % kit.TEA).status_code == 303
    assert WRONG_LOGIN in kit.login(browser(ledger, clock), "tea").text


def test_users_cli_adds_lists_disables_and_resets(tmp_path):
    db_path = str(tmp_path / "backend.db")
    kit.make_ledger(db_path).close()
    secret = tmp_path / "password"
    secret.write_text("another long password\n")
    added = backend(
        "users",
        "add",
        "--db",
        db_path,
        "--role",
        "merchant",
        "--merchant",
        kit.TEA,
        "--password-file",
        str(secret),
        "teashop",
    )
    assert added.returncode == 0 and "user teashop added" in added.stdout
    listed = backend("users", "list", "--db", db_path)
    assert re.search(r"teashop\s+merchant\s+800000000000002\s+active", listed.stdout)
    for args, text in (
        (("add", "--role", "merchant", "--merchant", "123", "x"), "no merchant ID 123"),
        (("add", "--role", "operator", "--merchant", kit.TEA, "x"), "an operator has none"),
        (("add", "--role", "operator", "op"), "there is a user op already"),
        (("disable", "nobody"), "no user nobody"),
    ):
        extra = ("--password-file", str(secret)) if args[0] == "add" else ()
        result = backend("users", *args[:1], "--db", db_path, *args[1:], *extra)
        assert result.returncode == 2 and text in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
    short = tmp_path / "short"
    short.write_text("short\n")
    result = backend("users", "reset", "--db", db_path, "--password-file", str(short), "op")
    assert result.returncode == 2 and "at least 10 characters" in result.stderr
    assert backend("users", "disable", "--db", db_path, "teashop").returncode == 0
    assert "disabled" in backend("users", "list", "--db", db_path).stdout
    missing = backend("users", "list", "--db", str(tmp_path / "nothere.db"))
    assert missing.returncode == 2 and not os.path.exists(tmp_path / "nothere.db")


def test_operator_actions_from_the_shell_are_audited_too(tmp_path, clock):
    db_path = str(tmp_path / "backend.db")
    kit.make_ledger(db_path).close()
    assert backend("command", "--db", db_path, "--terminal", "T0001", "settle").returncode == 0
    result = backend("blacklist", "add", "--db", db_path, "token:0102030405a6")
    assert result.returncode == 0, result.stderr
    ledger = kit.LedgerDB(db_path, kit.BDK)
    try:
        log = browser(ledger, clock, "op").get("/office/operator/audit").text
    finally:
        ledger.close()
    assert "command queued" in log and "T0001 settle (1)" in log
    assert "blacklist add" in log and "token:0102030405a6" in log


def test_times_and_days_are_the_food_courts_local_time(ledger, clock):
    operator = browser(ledger, clock, "op")
    answer = set_form(
        operator, "/office/operator/accounts", {"action": "timezone", "utc_offset_min": "-90"}
    )
    assert answer.status_code == 200
    # Noodles' first sale, 09:00 UTC on the 28th, is 07:30 there.
    sales = operator.get("/office/merchants/%s/sales?from=2026-11-28" % kit.NOODLES).text
    assert "2026-11-28 07:30:00 UTC-01:30" in sales
    # T0002's Z at 13:00 UTC on the 29th is 11:30 local: still the 29th. At +12 hours it
    # is 01:00 on the 30th, so the 29th has no Z.
    day = "/office/merchants/%s/settlements?from=2026-11-29" % kit.DUMPLINGS
    assert "11:30:00 UTC-01:30" in operator.get(day).text
    set_form(
        operator, "/office/operator/accounts", {"action": "timezone", "utc_offset_min": "720"}
    )
    assert "No Z in this period" in operator.get(day).text


def test_a_z_that_does_not_reconcile_says_so_everywhere(tmp_path, clock):
    import zlib

    from pos.record import SALE

    db_path = str(tmp_path / "backend.db")
    ledger = kit.make_ledger(db_path)
    try:
        third = kit.Terminal(bytes.fromhex("c1c2c3c4c5c6c7c8"))
        third.book(SALE, 1, 700, kit.DAY2 + 8 * 3600)
        third.book(SALE, 1, 300, kit.DAY2 + 8 * 3600 + 60)
        third.settle(1, kit.DAY2 + 9 * 3600)
        frames = [bytearray(frame) for _, frame in third.ledger.queue.unsent()]
        frames[1][10] ^= 0x40  # an altered record: quarantined, not money
        frames[1][-4:] = zlib.crc32(bytes(frames[1][:-4])).to_bytes(4, "little")
        ledger.add_terminal(
            "T0003", bytes.fromhex("c1c2c3c4c5c6c7c8"), [(1, kit.TEA, "Tea House")]
        )
        assert ledger.ingest("T0003", b"".join(bytes(f) for f in frames))["quarantined"] == 1
        tea = browser(ledger, clock, "tea")
        page = tea.get("/office/merchants/%s/settlements?from=2026-11-29" % kit.TEA).text
        assert "NO: the records say 1 sales EUR 7.00" in page
        assert "do not reconcile" in tea.get("/office/merchants/%s?from=2026-11-29" % kit.TEA).text
        csv_text = tea.get("/office/merchants/%s/statement.csv?from=2026-11-29" % kit.TEA).text
        assert "T0003,1,1,1,1000,NO" in csv_text
    finally:
        ledger.close()


def test_a_name_that_starts_like_a_formula_stays_text_in_a_csv():
    from tools.host.backend.office.statements import text_cell

    assert text_cell('=HYPERLINK("x")') == '\'=HYPERLINK("x")'
    assert text_cell("@SUM(1)") == "'@SUM(1)" and text_cell("Tea House") == "Tea House"


def test_an_automatic_block_is_no_sale_on_the_merchants_pages(tmp_path, clock):
    """A terminal's BLOCK record (pos.autoblock) names a merchant but moves no money: the
    merchant's pages, downloads and figures leave it out (the operator's report has it)."""
    from pos.autoblock import BLOCK
    from pos.record import CREDIT, SALE, Record

    ledger = kit.make_ledger(str(tmp_path / "backend.db"))
    try:
        third = kit.Terminal(bytes.fromhex("c1c2c3c4c5c6c7c8"))
        third.book(SALE, 1, 700, kit.DAY2 + 8 * 3600, CREDIT, last_four=1111)
        block = Record(BLOCK, 1, 3, 978, cashier=1, time=kit.DAY2 + 8 * 3600 + 60, reason=7)
        block.reference, block.token, block.last_four = 1 << 7, b"\x01" * 6, 1111
        third.ledger.book(block)
        ledger.add_terminal(
            "T0003", bytes.fromhex("c1c2c3c4c5c6c7c8"), [(1, kit.TEA, "Tea House")]
        )
        assert ledger.ingest("T0003", third.batch())["quarantined"] == 0
        tea = browser(ledger, clock, "tea")
        base = "/office/merchants/%s" % kit.TEA
        for path in ("", "/sales", "/sales.csv", "/statement.csv", "/settlements"):
            page = tea.get(base + path + "?from=2026-11-29")
            assert page.status_code == 200, path
            assert "block" not in page.text.lower(), path
        sales = tea.get(base + "/sales?from=2026-11-29").text
        assert "1 found" in sales and "EUR 7.00" in sales and "EUR 0.03" not in sales
        assert tea.get(base + "/sales/T0003/2").status_code == 404
    finally:
        ledger.close()
