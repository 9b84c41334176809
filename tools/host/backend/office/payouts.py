"""Payouts: every merchant's payout for a period as CSV and as a SEPA credit transfer
(pain.001.001.03, made by sepaxml and checked against the schema it ships), and the IBAN
check (schwifty) an account must pass before it is kept."""

import csv
import datetime
import io

from tools.host.backend.office.statements import text_cell


class PayeeError(ValueError):
    """An account the back office will not keep or pay: the message says why."""


def checked_account(holder, iban, bic=""):
    """(holder, IBAN in its compact form, BIC) or PayeeError: the IBAN's checksum, length
    and country format are checked (schwifty), the BIC's format too when given."""
    from schwifty import BIC, IBAN
    from schwifty.exceptions import SchwiftyException

    holder = " ".join((holder or "").split())
    if not 1 <= len(holder) <= 70:
        raise PayeeError("the account holder's name is 1 to 70 characters")
    try:
        parsed = IBAN(iban or "")
    except SchwiftyException as exc:
        raise PayeeError("not a valid IBAN: %s" % exc) from None
    bic = (bic or "").replace(" ", "").upper()
    if bic:
        try:
            BIC(bic)
        except SchwiftyException as exc:
            raise PayeeError("not a valid BIC: %s" % exc) from None
    elif parsed.bic is not None:
        bic = str(parsed.bic)
    return holder, parsed.compact, bic


def payout_rows(statements, payees):
    """[(statement, payee or None)] in merchant ID order."""
    return [(doc, payees.get(doc["merchant_id"])) for doc in statements]


def payout_csv(rows):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "merchant_id",
            "name",
            "from",
            "to",
            "net_minor",
            "commission_minor",
            "payout_minor",
            "currency",
            "holder",
            "iban",
            "bic",
        ]
    )
    for doc, payee in rows:
        writer.writerow(
            [
                doc["merchant_id"],
                text_cell(doc["name"]),
                doc["from"],
                doc["to"],
                doc["net_total_minor"],
                doc["commission_minor"],
                doc["payout_minor"],
                doc["currency"],
                text_cell(payee["holder"]) if payee else "",
                payee["iban"] if payee else "",
                payee["bic"] if payee else "",
            ]
        )
    return out.getvalue()


EUR = 978


def pain001(rows, payer, execution_date):
    """The pain.001.001.03 credit transfer of every positive EUR payout that has an
    account, validated against the schema; (xml bytes, [merchant IDs left out and why])."""
    from sepaxml import SepaTransfer

    if not payer:
        raise PayeeError("no payer account: set the operator's name and IBAN first")
    config = {
        "name": payer["holder"],
        "IBAN": payer["iban"],
        "BIC": payer["bic"],
        "batch": True,
        "currency": "EUR",
    }
    transfer = SepaTransfer(config, clean=True)
    left_out = []
    paid = 0
    for doc, payee in rows:
        if doc["currency"] != EUR:
            left_out.append((doc["merchant_id"], "not in EUR"))
        elif payee is None:
            left_out.append((doc["merchant_id"], "no account"))
        elif doc["payout_minor"] <= 0:
            left_out.append((doc["merchant_id"], "nothing to pay"))
        else:
            payment = {
                "name": payee["holder"],
                "IBAN": payee["iban"],
                "amount": doc["payout_minor"],  # sepaxml takes integer cents
                "execution_date": execution_date,
                "description": "OneTill %s %s to %s"
                % (doc["merchant_id"], doc["from"], doc["to"]),
                "endtoend_id": ("OT%s%s" % (doc["merchant_id"], doc["to"].replace("-", "")))[:35],
            }
            if payee["bic"]:
                payment["BIC"] = payee["bic"]
            transfer.add_payment(payment)
            paid += 1
    if not paid:
        raise PayeeError("no payout to make in this period (%s)" % _reasons(left_out))
    return transfer.export(validate=True), left_out


def _reasons(left_out):
    return ", ".join("%s: %s" % item for item in left_out) or "no merchants"


def next_business_day(today):
    day = today + datetime.timedelta(days=1)
    while day.weekday() >= 5:
        day += datetime.timedelta(days=1)
    return day
