"""The operator's pages: every merchant side by side with commission and payout, the
fleet, a terminal (its fault logs; queue settle or faultlog), the blacklist, users,
commission rules and payee accounts, the food court's settings, the audit log and the
payout files. Every route depends on `operator`; every change is kept in the audit log."""

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from tools.host.backend.errors import CommandError, DownlinkError, IngestError
from tools.host.backend.office import payouts, statements
from tools.host.backend.office.accounts import ROLES, check_user_name, hash_password
from tools.host.backend.office.figures import figures, local_today
from tools.host.backend.office.merchant_pages import PeriodOf
from tools.host.backend.office.web import (
    NOT_FOUND,
    OfficeDep,
    Operator,
    Posted,
)

router = APIRouter(prefix="/operator")


def all_statements(office, period):
    store = office.store
    out = []
    for merchant_id, entry in store.merchants().items():
        records = store.merchant_records(merchant_id)
        result = figures(records, period.since, period.until, period.offset)
        out.append(
            statements.statement(
                merchant_id,
                entry["name"],
                period.first,
                period.last,
                result,
                store.commission_rules(merchant_id),
                period.offset,
            )
        )
    return out


@router.get("")
def overview(
    request: Request,
    period: PeriodOf,
    who: Operator,
    office: OfficeDep,
):
    docs = all_statements(office, period)
    return office.page(request, "operator.html", who, period=period, docs=docs)


def fleet_rows(office):
    report = office.ledger.downlink_report()
    beats = office.ledger.heartbeats()
    alerts = office.ledger.alerts()
    quarantined = office.store.quarantined_by_terminal()
    rows = []
    for terminal in office.store.terminals():
        tid = terminal["tid"]
        beat = beats.get(tid)
        status = beat["status"] if beat else {}
        downlink = report.get(tid, {})
        rows.append(
            {
                "tid": tid,
                "heard": beat["received"] if beat else None,
                "depth": status.get("depth", "-"),
                "oldest_s": status.get("oldest_s", "-1"),
                "firmware": status.get("fw", "-"),
                "offered": downlink.get("offered", {}),
                "in_force": downlink.get("in_force", {}),
                "refused": downlink.get("refused", ""),
                "suspected": terminal["suspected"],
                "dropped": alerts.get(tid, {}),
                "quarantined": quarantined.get(tid, 0),
                "commands": downlink.get("commands", []),
            }
        )
    return rows


@router.get("/fleet")
def fleet(request: Request, who: Operator, office: OfficeDep):
    return office.page(request, "fleet.html", who, rows=fleet_rows(office), now=office.clock())


def _terminal_page(request, office, who, tid, message="", status=200):
    rows = [row for row in fleet_rows(office) if row["tid"] == tid]
    if not rows:
        raise HTTPException(404, NOT_FOUND)
    return office.page(
        request,
        "terminal.html",
        who,
        status,
        row=rows[0],
        faults=office.store.fault_logs(tid),
        message=message,
    )


@router.get("/terminals/{tid}")
def terminal(request: Request, tid: str, who: Operator, office: OfficeDep):
    return _terminal_page(request, office, who, tid)


@router.post("/terminals/{tid}/commands")
def queue_command(
    request: Request,
    tid: str,
    who: Operator,
    form: Posted,
    office: OfficeDep,
):
    name = form.get("name", "")
    if name not in ("settle", "faultlog"):
        return _terminal_page(request, office, who, tid, "unknown command", 400)
    try:
        number = office.ledger.add_command(tid, name)
    except (DownlinkError, IngestError):
        raise HTTPException(404, NOT_FOUND) from None
    office.store.audit(who["user"], "command queued", "%s %s (%d)" % (tid, name, number))
    return _terminal_page(request, office, who, tid, "command %d (%s) queued" % (number, name))


def _blacklist_page(request, office, who, message="", status=200):
    return office.page(
        request,
        "blacklist.html",
        who,
        status,
        tokens=office.store.blacklist(),
        message=message,
        can_tokenise=bool(office.token_key_file),
    )


@router.get("/blacklist")
def blacklist(request: Request, who: Operator, office: OfficeDep):
    return _blacklist_page(request, office, who)


@router.post("/blacklist")
def change_blacklist(
    request: Request,
    who: Operator,
    form: Posted,
    office: OfficeDep,
):
    from tools.host.backend.documents import card_tokens

    action = form.get("action")
    cards = form.get("cards", "").split()
    if action not in ("add", "remove") or not cards or len(cards) > 100:
        return _blacklist_page(request, office, who, "give 1 to 100 cards or tokens", 400)
    try:
        tokens = card_tokens(cards, office.token_key_file)
        if action == "add":
            version = office.ledger.change_blacklist(add=tokens)
        else:
            version = office.ledger.change_blacklist(remove=tokens)
    except DownlinkError as exc:
        return _blacklist_page(request, office, who, str(exc), 400)
    detail = "version %d: %s" % (version, " ".join("token:" + t.hex() for t in tokens))
    office.store.audit(who["user"], "blacklist %s" % action, detail)
    return _blacklist_page(
        request, office, who, "blacklist %d: %d %s" % (version, len(tokens), action + "ed")
    )


def _users_page(request, office, who, message="", status=200):
    return office.page(
        request,
        "users.html",
        who,
        status,
        users=office.store.users(),
        merchants=office.store.merchants(),
        roles=ROLES,
        message=message,
    )


@router.get("/users")
def users(request: Request, who: Operator, office: OfficeDep):
    return _users_page(request, office, who)


@router.post("/users")
def change_user(
    request: Request,
    who: Operator,
    form: Posted,
    office: OfficeDep,
):
    store = office.store
    action = form.get("action")
    name = form.get("name", "")
    try:
        check_user_name(name)
        if action == "add":
            role = form.get("role")
            merchant_id = form.get("merchant_id") or None
            if role not in ROLES:
                raise CommandError("the role is operator or merchant")
            if role == "merchant" and merchant_id not in store.merchants():
                raise CommandError("a merchant account needs one of the merchant IDs")
            if role == "operator":
                merchant_id = None
            if not store.add_user(
                name, role, merchant_id, hash_password(form.get("password", ""))
            ):
                raise CommandError("there is a user %s already" % name)
            said = "user %s added" % name
            detail = "%s %s %s" % (name, role, merchant_id or "")
        elif action == "disable":
            if name == who["user"]:
                raise CommandError("you cannot disable yourself")
            if not store.set_user(name, disabled=True):
                raise CommandError("no user %s" % name)
            said = detail = "user %s disabled" % name
        elif action == "reset":
            if not store.set_user(name, password_hash=hash_password(form.get("password", ""))):
                raise CommandError("no user %s" % name)
            said = detail = "password of %s changed" % name
        else:
            raise CommandError("unknown action")
    except CommandError as exc:
        return _users_page(request, office, who, str(exc), 400)
    store.audit(who["user"], "user %s" % action, detail.strip())
    return _users_page(request, office, who, said)


def _accounts_page(request, office, who, message="", status=200):
    store = office.store
    merchants = store.merchants()
    return office.page(
        request,
        "accounts.html",
        who,
        status,
        merchants=merchants,
        rules=store.commission_rules(),
        payees={mid: store.payee(mid) for mid in merchants},
        settings=store.settings(),
        today=local_today(office.clock(), office.utc_offset_min).isoformat(),
        message=message,
    )


@router.get("/accounts")
def accounts(request: Request, who: Operator, office: OfficeDep):
    return _accounts_page(request, office, who)


def _integer(text, what):
    text = (text or "").strip()
    if not text.lstrip("-").isdigit() or len(text) > 9:
        raise CommandError("%s is a whole number" % what)
    return int(text)


@router.post("/accounts")
def change_accounts(
    request: Request,
    who: Operator,
    form: Posted,
    office: OfficeDep,
):
    store = office.store
    action = form.get("action")
    merchant_id = form.get("merchant_id", "")
    try:
        if action in ("commission", "payee") and merchant_id not in store.merchants():
            raise CommandError("no merchant %s" % merchant_id[:20])
        if action == "commission":
            effective = form.get("effective", "")
            basis_points = _integer(form.get("basis_points"), "basis points")
            fixed_minor = _integer(form.get("fixed_minor"), "the fixed amount (minor units)")
            try:
                statements.check_rule(effective, basis_points, fixed_minor)
            except statements.RuleError as exc:
                raise CommandError(str(exc)) from None
            store.set_commission(merchant_id, effective, basis_points, fixed_minor)
            detail = "%s from %s: %d bp + %d per sale" % (
                merchant_id,
                effective,
                basis_points,
                fixed_minor,
            )
            said = "commission for %s from %s set" % (merchant_id, effective)
        elif action in ("payee", "payer"):
            try:
                holder, iban, bic = payouts.checked_account(
                    form.get("holder"), form.get("iban"), form.get("bic")
                )
            except payouts.PayeeError as exc:
                raise CommandError(str(exc)) from None
            if action == "payee":
                store.set_payee(merchant_id, holder, iban, bic)
            else:
                for name, value in (
                    ("payer_holder", holder),
                    ("payer_iban", iban),
                    ("payer_bic", bic),
                ):
                    store.set_setting(name, value)
                merchant_id = "the operator"
            detail = "%s: %s %s %s" % (merchant_id, holder, iban, bic)
            said = "account of %s kept" % merchant_id
        elif action == "timezone":
            offset = _integer(form.get("utc_offset_min"), "the offset from UTC in minutes")
            if not -720 <= offset <= 840:
                raise CommandError("the offset from UTC is -720 to 840 minutes")
            store.set_setting("utc_offset_min", offset)
            detail = said = "time zone UTC%+d minutes" % offset
        else:
            raise CommandError("unknown action")
    except CommandError as exc:
        return _accounts_page(request, office, who, str(exc), 400)
    store.audit(who["user"], action, detail)
    return _accounts_page(request, office, who, said)


@router.get("/audit")
def audit(request: Request, who: Operator, office: OfficeDep):
    return office.page(request, "audit.html", who, entries=office.store.audit_log())


def _rows(office, period):
    docs = all_statements(office, period)
    store = office.store
    return payouts.payout_rows(
        docs, {doc["merchant_id"]: store.payee(doc["merchant_id"]) for doc in docs}
    )


@router.get("/payouts.csv")
def payouts_csv(period: PeriodOf, who: Operator, office: OfficeDep):
    body = payouts.payout_csv(_rows(office, period))
    return Response(
        body,
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="payouts-%s.csv"' % period.last},
    )


@router.get("/payouts.xml")
def payouts_xml(period: PeriodOf, who: Operator, office: OfficeDep):
    settings = office.store.settings()
    payer = None
    if settings.get("payer_iban"):
        payer = {
            "holder": settings["payer_holder"],
            "iban": settings["payer_iban"],
            "bic": settings.get("payer_bic", ""),
        }
    today = local_today(office.clock(), office.utc_offset_min)
    try:
        body, _ = payouts.pain001(_rows(office, period), payer, payouts.next_business_day(today))
    except payouts.PayeeError as exc:
        raise HTTPException(409, str(exc)) from None
    office.store.audit(who["user"], "payout file", "pain.001 for %s" % period.query)
    return Response(
        body,
        media_type="application/xml",
        headers={"Content-Disposition": 'attachment; filename="payouts-%s.xml"' % period.last},
    )
