"""Commission and statements: a merchant's period as the operator bills it (gross,
refunds, voids, net, commission, payout, the Z batches and the receipt numbers they
cover), as a dict, CSV and PDF. Money is integer minor units until it is printed.

Commission: the rule in force on a record's local date (the newest whose effective date is
not after it) takes basis points of that day's net (sales - voids - refunds) and a fixed
amount per sale kept (sales - voids). Basis points are rounded once per rule, half up, so
a statement's commission does not depend on how the period is split into days.
"""

import csv
import datetime
import io

from pos.record import REFUND, SALE, VOID
from tools.host.backend.office.figures import local
from tools.host.backend.reports import money

MAX_BASIS_POINTS = 10000


class RuleError(ValueError):
    """A commission rule out of range."""


def check_rule(effective, basis_points, fixed_minor):
    try:
        datetime.date.fromisoformat(effective)
    except (TypeError, ValueError):
        raise RuleError("the effective date is a date as 2026-11-29") from None
    if not 0 <= basis_points <= MAX_BASIS_POINTS:
        raise RuleError("basis points are 0 to 10000 (100%)")
    if not 0 <= fixed_minor <= 100000:
        raise RuleError("the fixed amount per sale is 0 to 100000 minor units")


def rounded_basis_points(amount_minor, basis_points):
    quotient, remainder = divmod(amount_minor * basis_points, 10000)
    return quotient + (1 if 2 * remainder >= 10000 else 0)


def commission(records, rules, utc_offset_min):
    """[(rule, net, kept sales, commission)] for the counted records (figures' "records")
    under each rule in force; records before every rule carry none."""
    rules = sorted(rules, key=lambda rule: rule["effective"])
    parts = {}
    for record in records:
        kind = record["kind"]
        if kind not in (SALE, VOID, REFUND):
            continue
        day = local(record["time"], utc_offset_min).date().isoformat()
        rule = None
        for candidate in rules:
            if candidate["effective"] <= day:
                rule = candidate
        if rule is None:
            continue
        part = parts.setdefault(rule["effective"], [rule, 0, 0])
        if kind == SALE:
            part[1] += record["amount_minor"]
            part[2] += 1
        else:
            part[1] -= record["amount_minor"]
            part[2] -= kind == VOID
    out = []
    for rule, net, kept in (parts[key] for key in sorted(parts)):
        amount = rounded_basis_points(net, rule["basis_points"]) + kept * rule["fixed_minor"]
        out.append((rule, net, kept, amount))
    return out


def statement(merchant_id, name, first, last, figures_, rules, utc_offset_min):
    parts = commission(figures_["records"], rules, utc_offset_min)
    total_commission = sum(part[3] for part in parts)
    return {
        "merchant_id": merchant_id,
        "name": name,
        "from": first.isoformat(),
        "to": last.isoformat(),
        "currency": figures_["currency"],
        "sales_count": figures_["sales_count"],
        "sales_total_minor": figures_["sales_total_minor"],
        "voids_count": figures_["voids_count"],
        "voids_total_minor": figures_["voids_total_minor"],
        "refunds_count": figures_["refunds_count"],
        "refunds_total_minor": figures_["refunds_total_minor"],
        "net_total_minor": figures_["net_total_minor"],
        "commission_minor": total_commission,
        "payout_minor": figures_["net_total_minor"] - total_commission,
        "commission_parts": [
            {
                "effective": rule["effective"],
                "basis_points": rule["basis_points"],
                "fixed_minor": rule["fixed_minor"],
                "net_minor": net,
                "sales_kept": kept,
                "commission_minor": amount,
            }
            for rule, net, kept, amount in parts
        ],
        "settlements": figures_["settlements"],
        "unsettled": figures_["unsettled"],
    }


def text_cell(text):
    """A name as a CSV cell a spreadsheet shows as text: one that starts like a formula
    (= + - @) gets a leading apostrophe, so a merchant's name cannot run as one."""
    text = str(text)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def statement_csv(doc):
    """One row per figure (minor units, and as money), then one per Z batch."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["merchant_id", "name", "from", "to", "currency"])
    writer.writerow(
        [doc["merchant_id"], text_cell(doc["name"]), doc["from"], doc["to"], doc["currency"]]
    )
    writer.writerow(["figure", "count", "amount_minor", "amount"])
    for label, count_key, key in _LINES:
        writer.writerow(
            [
                label,
                doc[count_key] if count_key else "",
                doc[key],
                money(doc[key], doc["currency"]),
            ]
        )
    writer.writerow(
        ["terminal", "z_batch", "first_receipt", "last_receipt", "sales_total_minor", "reconciles"]
    )
    for z in doc["settlements"]:
        writer.writerow(
            [
                z["tid"],
                z["batch"],
                z["first_receipt"] if z["first_receipt"] is not None else "",
                z["last_receipt"] if z["last_receipt"] is not None else "",
                z["sales_total_minor"],
                "yes" if z["reconciles"] else "NO",
            ]
        )
    return out.getvalue()


_LINES = (
    ("gross sales", "sales_count", "sales_total_minor"),
    ("voids", "voids_count", "voids_total_minor"),
    ("refunds", "refunds_count", "refunds_total_minor"),
    ("net", None, "net_total_minor"),
    ("commission", None, "commission_minor"),
    ("payout", None, "payout_minor"),
)


def statement_pdf(doc, printed):
    """The statement as a one-or-more page PDF (fpdf2, its built-in Helvetica: no font
    files to ship)."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_title("Statement %s %s to %s" % (doc["merchant_id"], doc["from"], doc["to"]))
    pdf.set_creator("OneTill back office")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, _latin("Statement: %s" % doc["name"]), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    for line in (
        "Merchant ID %s" % doc["merchant_id"],
        "Period %s to %s" % (doc["from"], doc["to"]),
        "Printed %s" % printed,
    ):
        pdf.cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 11)
    for label, count_key, key in _LINES:
        pdf.set_font("Helvetica", "B" if label in ("net", "payout") else "", 11)
        pdf.cell(50, 7, label.capitalize())
        pdf.cell(25, 7, str(doc[count_key]) if count_key else "", align="R")
        pdf.cell(50, 7, money(doc[key], doc["currency"]), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    for part in doc["commission_parts"]:
        pdf.cell(
            0,
            5,
            "Commission from %s: %d bp of %s and %s on each of %d sales = %s"
            % (
                part["effective"],
                part["basis_points"],
                money(part["net_minor"], doc["currency"]),
                money(part["fixed_minor"], doc["currency"]),
                part["sales_kept"],
                money(part["commission_minor"], doc["currency"]),
            ),
            new_x="LMARGIN",
            new_y="NEXT",
        )
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 7, "Z settlements", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    if not doc["settlements"]:
        pdf.cell(0, 5, "none in this period", new_x="LMARGIN", new_y="NEXT")
    for z in doc["settlements"]:
        pdf.cell(
            0,
            5,
            "Terminal %s Z %d: receipts %s, sales %d %s, refunds %d %s: %s"
            % (
                z["tid"],
                z["batch"],
                _range(z),
                z["sales_count"],
                money(z["sales_total_minor"], doc["currency"]),
                z["refunds_count"],
                money(z["refunds_total_minor"], doc["currency"]),
                "reconciles" if z["reconciles"] else "DOES NOT RECONCILE",
            ),
            new_x="LMARGIN",
            new_y="NEXT",
        )
    for batch in doc["unsettled"]:
        pdf.cell(
            0,
            5,
            "Terminal %s, not yet settled: receipts %s" % (batch["tid"], _range(batch)),
            new_x="LMARGIN",
            new_y="NEXT",
        )
    return bytes(pdf.output())


def _range(entry):
    if entry["first_receipt"] is None:
        return "none"
    return "%d to %d" % (entry["first_receipt"], entry["last_receipt"])


def _latin(text):
    # Helvetica is Latin-1; a merchant's name in another script still prints, as '?'.
    return text.encode("latin-1", "replace").decode("latin-1")
