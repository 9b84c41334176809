"""A merchant's figures for a period, from the sealed records alone: totals as
`tools/backend report` counts them, by method, hour and day, every sale, and every Z batch
with whether it reconciles and the receipt numbers it covers.

A period is a range of local dates (the food court's time zone, office setting
utc_offset_min); a record counts in it when its time falls inside. A Z is reconciled with
every record of its batch, wherever the period starts: a batch is counted from the Z before
it on the same terminal, as the terminal counts it.
"""

import datetime
import struct

from pos.readout import METHOD_NAMES
from pos.record import REFUND, SALE, SETTLEMENT, VOID

DAY_S = 86400


class PeriodError(ValueError):
    """A period that is not two dates in order, at most MAX_PERIOD_DAYS apart."""


MAX_PERIOD_DAYS = 400


def parse_period(date_from, date_to, today):
    """(first, last) local dates from two ISO dates (either missing: today)."""
    try:
        first = datetime.date.fromisoformat(date_from) if date_from else today
        last = datetime.date.fromisoformat(date_to) if date_to else first
    except ValueError:
        raise PeriodError("a period is two dates as 2026-11-29") from None
    if last < first:
        raise PeriodError("the period ends before it starts")
    if (last - first).days >= MAX_PERIOD_DAYS:
        raise PeriodError("a period is at most %d days" % MAX_PERIOD_DAYS)
    return first, last


def bounds(first, last, utc_offset_min):
    """Unix seconds [since, until) of local dates first..last."""
    epoch = datetime.date(1970, 1, 1)
    since = (first - epoch).days * DAY_S - utc_offset_min * 60
    until = ((last - epoch).days + 1) * DAY_S - utc_offset_min * 60
    return since, until


def local(unix_seconds, utc_offset_min):
    return datetime.datetime(1970, 1, 1) + datetime.timedelta(
        seconds=unix_seconds + utc_offset_min * 60
    )


def local_today(now, utc_offset_min):
    return local(int(now), utc_offset_min).date()


def figures(records, since=None, until=None, utc_offset_min=0):
    """The figures of one merchant's records (OfficeStore.merchant_records) in [since,
    until) (None: all of them)."""
    out = {
        "sales_count": 0,
        "sales_total_minor": 0,
        "voids_count": 0,
        "voids_total_minor": 0,
        "refunds_count": 0,
        "refunds_total_minor": 0,
        "declines_count": 0,
        "net_total_minor": 0,
        "average_sale_minor": 0,
        "by_method": {},
        "by_hour": [0] * 24,
        "by_day": {},
        "records": [],
        "settlements": [],
        "unsettled": [],
        "currency": 978,
    }
    if since is not None:
        day = since
        while day < until:
            out["by_day"][local(day, utc_offset_min).date().isoformat()] = 0
            day += DAY_S
    batches = {}  # (tid, number) -> [sales net of voids count, total, refunds, total, receipts]
    for record in records:
        kind = record["kind"]
        key = (record["tid"], record["number"])
        batch = batches.setdefault(key, [0, 0, 0, 0, []])
        counted = since is None or since <= record["time"] < until
        out["currency"] = record["currency"]
        if kind == SETTLEMENT:
            sale_count, refund_total = struct.unpack(">HI", bytes(record["token"]))
            reported = [sale_count, record["amount_minor"], record["last_four"], refund_total]
            if counted:
                receipts = batch[4]
                out["settlements"].append(
                    {
                        "tid": record["tid"],
                        "counter": record["counter"],
                        "batch": record["reference"],
                        "time": record["time"],
                        "sales_count": sale_count,
                        "sales_total_minor": record["amount_minor"],
                        "refunds_count": record["last_four"],
                        "refunds_total_minor": refund_total,
                        "counted": batch[:4],
                        "reconciles": reported == batch[:4],
                        "first_receipt": min(receipts) if receipts else None,
                        "last_receipt": max(receipts) if receipts else None,
                    }
                )
            batches[key] = [0, 0, 0, 0, []]
            continue
        amount = record["amount_minor"]
        sign = {SALE: 1, VOID: -1, REFUND: 0}.get(kind)
        if sign is not None:
            if kind == REFUND:
                batch[2] += 1
                batch[3] += amount
            else:
                batch[0] += sign
                batch[1] += sign * amount
            batch[4].append(record["receipt"])
        if not counted:
            continue
        out["records"].append(record)
        if kind == SALE:
            out["sales_count"] += 1
            out["sales_total_minor"] += amount
        elif kind == VOID:
            out["voids_count"] += 1
            out["voids_total_minor"] += amount
        elif kind == REFUND:
            out["refunds_count"] += 1
            out["refunds_total_minor"] += amount
        else:
            out["declines_count"] += 1
            continue
        signed = amount if kind == SALE else -amount
        method = METHOD_NAMES[record["method"]] or "none"
        out["by_method"][method] = out["by_method"].get(method, 0) + signed
        when = local(record["time"], utc_offset_min)
        out["by_hour"][when.hour] += signed
        day = when.date().isoformat()
        out["by_day"][day] = out["by_day"].get(day, 0) + signed
    for (tid, number), batch in sorted(batches.items()):
        if batch[4]:
            out["unsettled"].append(
                {
                    "tid": tid,
                    "number": number,
                    "sales_count": batch[0],
                    "sales_total_minor": batch[1],
                    "first_receipt": min(batch[4]),
                    "last_receipt": max(batch[4]),
                }
            )
    out["net_total_minor"] = (
        out["sales_total_minor"] - out["voids_total_minor"] - out["refunds_total_minor"]
    )
    kept = out["sales_count"] - out["voids_count"]
    if kept > 0:
        out["average_sale_minor"] = (out["sales_total_minor"] - out["voids_total_minor"]) // kept
    return out


def search(records, receipt=None, amount_minor=None):
    """The records of a receipt number and/or an amount (minor units)."""
    return [
        r
        for r in records
        if (receipt is None or r["receipt"] == receipt)
        and (amount_minor is None or r["amount_minor"] == amount_minor)
    ]
