"""tools/screenshots: a simulated day in a real browser. Runs the firmware through a day
(tools/sim --keys ... --drain: three merchants, a void and a Z), then two more simulated
terminals of the same operator against the same back end, serves the back end, and
drives Debian's headless Chromium with Playwright: logs in as the operator and as each
merchant, checks the figures against `tools/backend report --json`, downloads a statement
PDF and the pain.001, and saves screenshots.

    tools/screenshots [--out docs/office] [--state DIR]

Chromium is the system's (/usr/bin/chromium, apt-get install chromium); Playwright never
downloads a browser here.
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for _folder in ("lib", "tools/emu"):
    if os.path.join(ROOT, _folder) not in sys.path:
        sys.path.insert(0, os.path.join(ROOT, _folder))

CHROMIUM = "/usr/bin/chromium"
# A day at the food court on the simulated terminal: cashier 1 logs in; noodles 2.50 cash
# and 12.00 by card; tea 12.34 cash and 5.00 by card; dumplings 0.99 cash, voided, then
# 4.50 cash; a supervisor's Z for noodles (PIN 9999, merchant 1, settle); noodles 7.70 cash
# after it, not settled yet.
DAY_KEYS = (
    "1 1 1 1 # 1 # 2 5 0 # 4 # # 1 # 1 2 0 0 # 1 card:4111111111111111 # # "
    "2 # 1 2 3 4 # 4 # # 2 # 5 0 0 # 1 card:4111111111111111 # # "
    "3 # 9 9 # 4 # # A 1 # # 3 # 4 5 0 # 4 # # A 4 9 9 9 9 # 1 # # # "
    "1 # 7 7 0 # 4 # #"
)
PASSWORD = "screenshots-only"
IBANS = {
    "800000000000001": "DE89 3704 0044 0532 0130 00",
    "800000000000002": "DE02 1203 0000 0000 2020 51",
    "800000000000003": "DE44 5001 0517 5407 3249 31",
}
PAYER_IBAN = "DE02 1001 0010 0006 8201 01"
# The operator's commission: basis points of the net, minor units per sale kept.
COMMISSION = {
    "800000000000001": (800, 0),
    "800000000000002": (500, 10),
    "800000000000003": (1000, 0),
}


def payout_of(merchant_id, figures):
    """What the statement must pay: the net less the commission (a rule from today, the
    basis points rounded half up)."""
    from tools.host.backend.office.statements import rounded_basis_points

    basis_points, fixed_minor = COMMISSION[merchant_id]
    kept = figures["sales_count"] - figures["voids_count"]
    net = figures["net_total_minor"]
    return net - rounded_basis_points(net, basis_points) - fixed_minor * kept


class ShotError(Exception):
    """A step of the run failed; the message says which."""


def simulated_day(state, keys=DAY_KEYS, *options):
    """A simulated terminal's day in STATE, typed and drained: to its own back end (whose
    ledger is STATE/backend.db) unless the options say --backend URL."""
    result = subprocess.run(
        [sys.executable, "-m", "tools.host.sim", "--state", state, "--keys", keys, "--drain"]
        + list(options),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise ShotError("tools/sim failed:\n" + result.stdout[-2000:] + result.stderr[-2000:])
    return result.stdout


# The other terminals of the food court, each a real simulated terminal (tools/sim) of the
# same operator, with the demo menu (1 noodles, 2 tea, 3 dumplings): (folder, keys).
OTHER_TERMINALS = (
    # Ana: noodles 18.90 cash; dumplings 33.50 and noodles 7.60 by card; dumplings 12.75 cash.
    (
        "terminal-b",
        "1 1 1 1 # 1 # 1 8 9 0 # 4 # # 3 # 3 3 5 0 # 1 card:4242424242424242 # # "
        "1 # 7 6 0 # 1 card:5555555555021881 # # 3 # 1 2 7 5 # 4 # #",
    ),
    # Ana: tea 3.20 cash and 6.40 by card.
    ("terminal-c", "1 1 1 1 # 2 # 3 2 0 # 4 # # 2 # 6 4 0 # 1 card:4242424242424242 # #"),
)


def other_terminals(state):
    """The food court's other terminals: each a new state folder under STATE with the
    operator's keys (BDK, card-token key, CA) copied from STATE/backend/, registered in the
    first terminal's back end and run with tools/sim --backend URL --drain. Returns their
    terminal IDs."""
    from tools.host import sim
    from tools.host.backend import LedgerDB, Server

    keys = os.path.join(state, "backend")
    db_path = os.path.join(state, "backend.db")
    terminals = [
        sim.another_terminal(state, os.path.join(state, folder)) for folder, _ in OTHER_TERMINALS
    ]
    db = LedgerDB(db_path)
    try:
        for tid, ik_id, merchants in terminals:
            db.add_terminal(tid, ik_id, merchants)
    finally:
        db.close()
    server = Server(
        db_path,
        os.path.join(keys, "bdk.key"),
        keys,
        token_key_file=os.path.join(keys, "card_token.key"),
    )
    try:
        for folder, keys_typed in OTHER_TERMINALS:
            simulated_day(os.path.join(state, folder), keys_typed, "--backend", server.url)
    finally:
        server.stop()
    return [tid for tid, _, _ in terminals]


def office_accounts(state):
    """The run's own back-office logins (the sim's demo ones have random passwords)."""
    from tools.host.backend import LedgerDB
    from tools.host.backend.office.accounts import hash_password
    from tools.host.backend.office.store import OfficeStore

    db = LedgerDB(os.path.join(state, "backend.db"))
    try:
        office = OfficeStore(db)
        for name, role, merchant_id in ACCOUNTS:
            if office.user(name) is None:
                office.add_user(name, role, merchant_id, hash_password(PASSWORD))
    finally:
        db.close()


ACCOUNTS = (
    ("shots-operator", "operator", None),
    ("shots-noodles", "merchant", "800000000000001"),
    ("shots-tea", "merchant", "800000000000002"),
    ("shots-dumplings", "merchant", "800000000000003"),
)


def report_by_merchant(db_path, day):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.host.backend",
            "report",
            "--db",
            db_path,
            "--json",
            "--from",
            day,
            "--to",
            day,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise ShotError("tools/backend report failed: " + result.stderr)
    out = {}
    for entry in json.loads(result.stdout)["merchants"]:
        sums = out.setdefault(entry["merchant_id"], {"name": entry["name"]})
        for key in (
            "sales_total_minor",
            "voids_total_minor",
            "refunds_total_minor",
            "net_total_minor",
            "sales_count",
            "voids_count",
        ):
            sums[key] = sums.get(key, 0) + entry[key]
    return out


def euros(minor):
    from tools.host.backend.reports import money

    return money(minor, 978)


def browse(state, out, check, terminals):
    """Serve STATE's ledger and drive Chromium through it; `check(condition, what)` is
    called for every check. Returns {name: path} of the files it saved."""
    from playwright.sync_api import sync_playwright

    from tools.host.backend import Server

    keys = os.path.join(state, "backend")
    db_path = os.path.join(state, "backend.db")
    downloads = os.path.join(state, "downloads")  # the PDFs and the pain.001
    os.makedirs(downloads, exist_ok=True)
    day = datetime.datetime.now(datetime.UTC).date().isoformat()
    report = report_by_merchant(db_path, day)
    check(len(report) == 3, "the report has three merchants: %s" % sorted(report))
    saved = {}
    server = Server(
        db_path,
        os.path.join(keys, "bdk.key"),
        keys,
        token_key_file=os.path.join(keys, "card_token.key"),
    )
    try:
        base = server.url + "/office"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox"], headless=True
            )
            try:
                saved.update(
                    _operator(browser, base, day, report, out, downloads, check, terminals)
                )
                for name, _, merchant_id in ACCOUNTS[1:]:
                    saved.update(
                        _merchant(
                            browser, base, day, report, merchant_id, name, out, downloads, check
                        )
                    )
            finally:
                browser.close()
    finally:
        server.stop()
    return saved


def _page(browser, base, name):
    context = browser.new_context(
        ignore_https_errors=True,  # the sim's own test CA
        viewport={"width": 1100, "height": 900},
        accept_downloads=True,
        java_script_enabled=False,  # the back office works without it
    )
    page = context.new_page()
    page.goto(base + "/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    return context, page


def _operator(browser, base, day, report, out, downloads, check, terminals):
    saved = {}
    context, page = _page(browser, base, ACCOUNTS[0][0])
    try:
        check(page.url.endswith("/office/operator"), "the operator lands on the merchants")
        # Through the forms: each merchant's commission and account, the payer's account.
        for merchant_id, (basis_points, fixed_minor) in COMMISSION.items():
            page.goto(base + "/operator/accounts")
            form = "form:has(input[value=commission])"
            page.select_option(form + " select[name=merchant_id]", merchant_id)
            page.fill(form + " input[name=basis_points]", str(basis_points))
            page.fill(form + " input[name=fixed_minor]", str(fixed_minor))
            page.click(form + " button[type=submit]")
            check("set" in page.inner_text("p.message"), "commission of %s set" % merchant_id)
        for merchant_id, iban in IBANS.items():
            page.goto(base + "/operator/accounts")
            form = "form:has(input[value=payee])"
            page.select_option(form + " select[name=merchant_id]", merchant_id)
            page.fill(form + " input[name=holder]", report[merchant_id]["name"])
            page.fill(form + " input[name=iban]", iban)
            page.click(form + " button[type=submit]")
            check("kept" in page.inner_text("p.message"), "payee %s kept" % merchant_id)
        page.goto(base + "/operator/accounts")
        form = "form:has(input[value=payer])"
        page.fill(form + " input[name=holder]", "Food Court Ltd")
        page.fill(form + " input[name=iban]", PAYER_IBAN)
        page.click(form + " button[type=submit]")
        page.goto(base + "/operator?from=%s&to=%s" % (day, day))
        for merchant_id, figures in report.items():
            net = page.inner_text("tr[data-merchant='%s'] td.net" % merchant_id)
            check(
                net == euros(figures["net_total_minor"]),
                "operator's net of %s: page %s, report %s"
                % (merchant_id, net, euros(figures["net_total_minor"])),
            )
            payout = page.inner_text("tr[data-merchant='%s'] td.payout" % merchant_id)
            check(
                payout == euros(payout_of(merchant_id, figures)),
                "operator's payout of %s: page %s" % (merchant_id, payout),
            )
        saved["operator-merchants"] = _shot(page, out, "operator-merchants.png")
        page.goto(base + "/operator/fleet")
        fleet = page.content()
        check(all(tid in fleet for tid in terminals), "the fleet shows %s" % terminals)
        saved["operator-fleet"] = _shot(page, out, "operator-fleet.png")
        page.goto(base + "/operator?from=%s&to=%s" % (day, day))
        with page.expect_download() as download:
            page.click("text=SEPA credit transfer")
        path = os.path.join(downloads, "payouts.xml")
        download.value.save_as(path)
        saved["pain001"] = path
    finally:
        context.close()
    return saved


def _merchant(browser, base, day, report, merchant_id, name, out, downloads, check):
    saved = {}
    context, page = _page(browser, base, name)
    try:
        figures = report[merchant_id]
        page.goto(base + "/merchants/%s?from=%s&to=%s" % (merchant_id, day, day))
        check(
            page.inner_text("#net") == euros(figures["net_total_minor"]),
            "%s sees its net as the report has it" % name,
        )
        check(
            page.inner_text("#gross") == euros(figures["sales_total_minor"]),
            "%s sees its gross as the report has it" % name,
        )
        text = page.content()
        for other, entry in report.items():
            if other != merchant_id:
                check(
                    entry["name"] not in text and other not in text,
                    "%s's page holds nothing of %s" % (name, entry["name"]),
                )
        shot = "merchant-dashboard-%s.png" % name.split("-")[1]
        saved["dashboard-" + merchant_id] = _shot(page, out, shot, full_page=True)
        with page.expect_download() as download:
            page.click("text=Statement (PDF)")
        pdf = os.path.join(downloads, "statement-%s.pdf" % merchant_id)
        download.value.save_as(pdf)
        saved["statement-" + merchant_id] = pdf
        page.goto(base + "/merchants/%s/sales?from=%s&to=%s" % (merchant_id, day, day))
        if merchant_id == "800000000000001":
            saved["sales"] = _shot(page, out, "merchant-sales.png")
        other = next(m for m in report if m != merchant_id)
        answer = page.goto(base + "/merchants/%s?from=%s&to=%s" % (other, day, day))
        check(answer.status == 404, "%s asking for %s's page gets 404" % (name, other))
    finally:
        context.close()
    return saved


def _shot(page, out, name, full_page=False):
    path = os.path.join(out, name)
    page.screenshot(path=path, full_page=full_page)
    return path


def pdf_text(path):
    return subprocess.run(
        ["pdftotext", "-layout", path, "-"], capture_output=True, text=True, check=True
    ).stdout


def pdf_picture(path, out_png):
    """The PDF's first page as a PNG (pdftoppm), for the README."""
    stem = out_png[: -len(".png")]
    subprocess.run(
        ["pdftoppm", "-png", "-r", "70", "-f", "1", "-l", "1", "-singlefile", path, stem],
        check=True,
    )
    return out_png


def run(out, state=None, check=None):
    """The whole run; returns (saved files, report). `check` defaults to raising."""

    def strict(condition, what):
        if not condition:
            raise ShotError(what)

    check = check or strict
    os.makedirs(out, exist_ok=True)
    own_state = state is None
    if own_state:
        state = tempfile.mkdtemp(prefix="onetill-shots-")
    try:
        simulated_day(state)
        with open(os.path.join(state, "backend", "terminals.json")) as source:
            terminals = list(json.load(source)) + other_terminals(state)
        office_accounts(state)
        saved = browse(state, out, check, terminals)
        day = datetime.datetime.now(datetime.UTC).date().isoformat()
        report = report_by_merchant(os.path.join(state, "backend.db"), day)
        saved["statement-picture"] = pdf_picture(
            saved["statement-800000000000001"], os.path.join(out, "statement.png")
        )
        return saved, report
    finally:
        if own_state:
            shutil.rmtree(state, ignore_errors=True)


def main(argv):
    parser = argparse.ArgumentParser(prog="tools/screenshots", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "office"))
    parser.add_argument("--state", help="keep the simulated day in this folder (new)")
    args = parser.parse_args(argv)
    if not os.path.exists(CHROMIUM):
        sys.stderr.write("tools/screenshots: no %s (apt-get install chromium)\n" % CHROMIUM)
        return 2
    try:
        saved, _ = run(args.out, args.state)
    except ShotError as exc:
        sys.stderr.write("tools/screenshots: %s\n" % exc)
        return 1
    for name in sorted(saved):
        if saved[name].endswith(".png"):
            print(os.path.relpath(saved[name], ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
