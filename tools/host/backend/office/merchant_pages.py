"""A merchant's pages (seen by that merchant, or by the operator): the period at a glance
with charts, every sale searchable by receipt number and amount, one sale and the Z that
settled it, the Z settlements, and the downloads (statement PDF and CSV, sales CSV).
Every route is under /merchants/{merchant_id} and depends on merchant_in_view."""

import csv
import io
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from pos.money import MoneyError, currency, currency_code
from pos.readout import KIND_NAMES, METHOD_NAMES, parse_minor
from pos.record import LAST_FOUR_NONE, SALE, SETTLEMENT
from tools.host.backend.office import charts, statements
from tools.host.backend.office.figures import (
    PeriodError,
    bounds,
    figures,
    local_today,
    parse_period,
    search,
)
from tools.host.backend.office.web import (
    NOT_FOUND,
    MerchantInView,
    OfficeDep,
    Viewer,
)

router = APIRouter(prefix="/merchants/{merchant_id}")


class Period:
    """The period a page shows: ?from=DATE&to=DATE, local dates, today by default."""

    def __init__(
        self,
        office: OfficeDep,
        date_from: Annotated[str, Query(alias="from", max_length=10)] = "",
        date_to: Annotated[str, Query(alias="to", max_length=10)] = "",
    ):
        offset = office.utc_offset_min
        try:
            self.first, self.last = parse_period(
                date_from, date_to, local_today(office.clock(), offset)
            )
        except PeriodError as exc:
            raise HTTPException(400, str(exc)) from None
        self.since, self.until = bounds(self.first, self.last, offset)
        self.offset = offset
        self.query = "from=%s&to=%s" % (self.first.isoformat(), self.last.isoformat())


PeriodOf = Annotated[Period, Depends()]


def _figures(office, merchant, period):
    records = office.store.merchant_records(merchant["merchant_id"])
    return records, figures(records, period.since, period.until, period.offset)


def describe(record):
    return {
        "kind": KIND_NAMES[record["kind"]],
        "method": METHOD_NAMES[record["method"]] or "-",
        "last_four": "-"
        if record["last_four"] == LAST_FOUR_NONE or record["kind"] == SETTLEMENT
        else "%04d" % record["last_four"],
    }


@router.get("")
def dashboard(
    request: Request,
    merchant: MerchantInView,
    period: PeriodOf,
    who: Viewer,
    office: OfficeDep,
):
    _, result = _figures(office, merchant, period)
    return office.page(
        request,
        "dashboard.html",
        who,
        merchant=merchant,
        period=period,
        f=result,
        currency=result["currency"],
    )


def _amount(text, currency_numeric):
    if not text:
        return None
    try:
        return parse_minor(text.strip(), currency(currency_code(currency_numeric))[1])
    except MoneyError:
        raise HTTPException(400, "an amount is written as 12.50") from None


@router.get("/sales")
def sales(
    request: Request,
    merchant: MerchantInView,
    period: PeriodOf,
    who: Viewer,
    office: OfficeDep,
    receipt: Annotated[str, Query(max_length=10)] = "",
    amount: Annotated[str, Query(max_length=16)] = "",
):
    records, result = _figures(office, merchant, period)
    currency_numeric = result["currency"]
    if receipt and not receipt.isdigit():
        raise HTTPException(400, "a receipt number is digits")
    wanted_receipt = int(receipt) if receipt else None
    wanted_amount = _amount(amount, currency_numeric)
    # A search looks at every record of the merchant (a paper receipt may be from any day);
    # without one, the period's records.
    searching = wanted_receipt is not None or wanted_amount is not None
    found = search(records if searching else result["records"], wanted_receipt, wanted_amount)
    found = [r for r in found if r["kind"] != SETTLEMENT]
    return office.page(
        request,
        "sales.html",
        who,
        merchant=merchant,
        period=period,
        rows=[(r, describe(r)) for r in found],
        receipt=receipt,
        amount=amount,
        searching=searching,
        currency=currency_numeric,
    )


@router.get("/sales/{tid}/{counter}")
def sale(
    request: Request,
    tid: str,
    counter: int,
    merchant: MerchantInView,
    who: Viewer,
    office: OfficeDep,
):
    records = office.store.merchant_records(merchant["merchant_id"])
    match = [r for r in records if r["tid"] == tid and r["counter"] == counter]
    if not match:
        raise HTTPException(404, NOT_FOUND)
    record = match[0]
    # The Z that settled it: the first settlement after it on the same terminal.
    settled_by = None
    for other in records:
        if (
            other["tid"] == tid
            and other["number"] == record["number"]
            and other["kind"] == SETTLEMENT
            and other["counter"] > counter
        ):
            settled_by = other
            break
    every_z = figures(records)["settlements"]
    z = None
    if settled_by is not None:
        z = next(s for s in every_z if s["tid"] == tid and s["counter"] == settled_by["counter"])
    return office.page(
        request,
        "sale.html",
        who,
        merchant=merchant,
        record=record,
        about=describe(record),
        z=z,
        currency=record["currency"],
    )


@router.get("/settlements")
def settlements(
    request: Request,
    merchant: MerchantInView,
    period: PeriodOf,
    who: Viewer,
    office: OfficeDep,
):
    _, result = _figures(office, merchant, period)
    return office.page(
        request,
        "settlements.html",
        who,
        merchant=merchant,
        period=period,
        f=result,
        currency=result["currency"],
    )


CHARTS = ("hour", "day", "method")


@router.get("/charts/{chart}.svg")
def chart(
    chart: str,
    merchant: MerchantInView,
    period: PeriodOf,
    office: OfficeDep,
):
    if chart not in CHARTS:
        raise HTTPException(404, NOT_FOUND)
    _, result = _figures(office, merchant, period)
    if chart == "hour":
        labels, values = ["%02d" % h for h in range(24)], result["by_hour"]
        title = "Net sales by hour"
    elif chart == "day":
        labels = [day[5:] for day in result["by_day"]]
        values = list(result["by_day"].values())
        title = "Net sales by day"
    else:
        labels, values = list(result["by_method"]), list(result["by_method"].values())
        title = "Net sales by method"
    svg = charts.bar_chart(title, labels, values, result["currency"])
    return Response(svg, media_type="image/svg+xml")


def merchant_statement(office, merchant, period):
    _, result = _figures(office, merchant, period)
    return statements.statement(
        merchant["merchant_id"],
        merchant["name"],
        period.first,
        period.last,
        result,
        office.store.commission_rules(merchant["merchant_id"]),
        period.offset,
    )


def _download(body, media, name):
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": 'attachment; filename="%s"' % name},
    )


def _file_name(merchant, period, ext):
    return "statement-%s-%s-%s.%s" % (
        merchant["merchant_id"],
        period.first.isoformat(),
        period.last.isoformat(),
        ext,
    )


@router.get("/statement.pdf")
def statement_pdf(
    merchant: MerchantInView,
    period: PeriodOf,
    office: OfficeDep,
):
    doc = merchant_statement(office, merchant, period)
    printed = office.local_time(int(office.clock()))
    return _download(
        statements.statement_pdf(doc, printed),
        "application/pdf",
        _file_name(merchant, period, "pdf"),
    )


@router.get("/statement.csv")
def statement_csv(
    merchant: MerchantInView,
    period: PeriodOf,
    office: OfficeDep,
):
    doc = merchant_statement(office, merchant, period)
    return _download(
        statements.statement_csv(doc), "text/csv", _file_name(merchant, period, "csv")
    )


@router.get("/sales.csv")
def sales_csv(
    merchant: MerchantInView,
    period: PeriodOf,
    office: OfficeDep,
):
    _, result = _figures(office, merchant, period)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "terminal",
            "counter",
            "receipt",
            "time",
            "kind",
            "method",
            "amount_minor",
            "currency",
            "last_four",
            "cashier",
            "reference",
        ]
    )
    for record in result["records"]:
        about = describe(record)
        writer.writerow(
            [
                record["tid"],
                record["counter"],
                record["receipt"],
                office.local_time(record["time"]),
                about["kind"],
                about["method"],
                record["amount_minor"],
                record["currency"],
                about["last_four"],
                record["cashier"],
                record["reference"] if record["kind"] != SALE else "",
            ]
        )
    name = "sales-%s-%s-%s.csv" % (
        merchant["merchant_id"],
        period.first.isoformat(),
        period.last.isoformat(),
    )
    return _download(out.getvalue(), "text/csv", name)
