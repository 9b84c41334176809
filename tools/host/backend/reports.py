"""Reports: per terminal and merchant, counts and totals, settlements and whether each
reconciles; printed for an operator."""

import struct
import time

from pos.autoblock import BLOCK
from pos.readout import KIND_NAMES, METHOD_NAMES
from pos.record import (
    FLAG_SUPERVISOR,
    REFUND,
    SALE,
    SETTLEMENT,
    VOID,
)
from tools.host.backend.errors import LedgerError


class ReportsMixin:
    """LedgerDB's report."""

    def report(self, merchant=None, since=None, until=None):
        """Per terminal and merchant: counts and totals by type and method, settlements and
        whether each Z reconciles with the records received before it. With since and until
        (unix seconds): only the records and Zs timed in [since, until) are counted, while
        each Z is still reconciled with its whole batch."""
        db = self._db
        names = {
            (tid, number): (merchant_id, name)
            for tid, number, merchant_id, name in db.execute("SELECT * FROM merchants")
        }
        if merchant is not None:
            known = self.merchant_numbers()
            if merchant not in known:
                raise LedgerError(
                    "no merchant %d in %s (it has %s)"
                    % (
                        merchant,
                        self._path,
                        "merchants " + ", ".join(map(str, known)) if known else "none",
                    )
                )
        query = (
            "SELECT tid, merchant, counter, kind, method, amount_minor, currency, token,"
            " last_four, reference, flags, time FROM records"
        )
        # Ordered here, not by the database: text order is the database's collation, and
        # the report must be the same on every store (Python orders by code point).
        rows = sorted(db.execute(query).fetchall(), key=lambda row: row[:3])
        merchants = {}
        for row in rows:
            tid, number, counter, kind, method, amount, currency, token, last_four = row[:9]
            if merchant is not None and number != merchant:
                continue
            entry = merchants.get((tid, number))
            if entry is None:
                merchant_id, name = names.get((tid, number), ("", ""))
                entry = merchants[(tid, number)] = _empty_entry(tid, number, merchant_id, name)
                entry["currency"] = currency  # ISO 4217 numeric, as the records carry it
            counted = since is None or since <= row[11] < until
            _count(entry, counter, kind, method, amount, token, last_four, row[9], counted)
            if (
                counted and kind == SALE and row[10] & FLAG_SUPERVISOR
            ):  # reference: who approved it
                entry["supervisor_approved"].append(
                    {"counter": counter, "amount_minor": amount, "supervisor": row[9]}
                )
        quarantined = db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        out = []
        for entry in merchants.values():
            entry.pop("_batch")
            out.append(entry)
        return {
            "merchants": out,
            "quarantined": quarantined,
            "terminals": self.heartbeats(),
            "downlink": self.downlink_report(),
            "alerts": self.alerts(),
            "auto_blocks": self.auto_blocks_report(),
            "keys": self.keys_report(),
        }


def _empty_entry(tid, number, merchant_id, name):
    return {
        "terminal": tid,
        "number": number,
        "merchant_id": merchant_id,
        "name": name,
        "sales_count": 0,
        "sales_total_minor": 0,
        "voids_count": 0,
        "voids_total_minor": 0,
        "refunds_count": 0,
        "refunds_total_minor": 0,
        "declines_count": 0,
        "net_total_minor": 0,
        "by_method": {},
        "settlements": [],
        # Sales a supervisor approved over a risk rule (an unusual amount), and who did.
        "supervisor_approved": [],
        # Since the last Z: [sales net of voids count, total, refund count, total].
        "_batch": [0, 0, 0, 0],
    }


def _count(entry, counter, kind, method, amount, token, last_four, reference, counted=True):
    if kind == BLOCK:  # moves no money: reported apart (auto_blocks)
        return
    batch = entry["_batch"]
    name = KIND_NAMES[kind]
    if not counted:  # outside the period: only its Z batch's sums
        if kind == SETTLEMENT:
            entry["_batch"] = [0, 0, 0, 0]
        elif kind in (SALE, VOID, REFUND):
            sign = -1 if kind == VOID else 1
            index = 2 if kind == REFUND else 0
            batch[index] += sign
            batch[index + 1] += sign * amount
        return
    if kind == SALE:
        entry["sales_count"] += 1
        entry["sales_total_minor"] += amount
        batch[0] += 1
        batch[1] += amount
    elif kind == VOID:
        entry["voids_count"] += 1
        entry["voids_total_minor"] += amount
        batch[0] -= 1
        batch[1] -= amount
    elif kind == REFUND:
        entry["refunds_count"] += 1
        entry["refunds_total_minor"] += amount
        batch[2] += 1
        batch[3] += amount
    elif kind == SETTLEMENT:
        sale_count, refund_total = struct.unpack(">HI", token)
        reported = [sale_count, amount, last_four, refund_total]
        entry["settlements"].append(
            {
                "batch": reference,
                "counter": counter,
                "sales_count": sale_count,
                "sales_total_minor": amount,
                "refunds_count": last_four,
                "refunds_total_minor": refund_total,
                "reconciles": reported == batch,
            }
        )
        entry["_batch"] = [0, 0, 0, 0]
        return
    else:
        entry["declines_count"] += 1
        return
    key = "%s_%s" % (name, METHOD_NAMES[method] or "none")
    entry["by_method"][key] = entry["by_method"].get(key, 0) + amount
    entry["net_total_minor"] = (
        entry["sales_total_minor"] - entry["voids_total_minor"] - entry["refunds_total_minor"]
    )


def print_alerts(report, out):
    """What an operator must see first: terminals suspected of being cloned (their records
    are held in quarantine), and bounds that dropped what a terminal sent."""
    for tid, alert in sorted(report.get("alerts", {}).items()):
        if alert["suspected"]:
            out.write(
                "SUSPECTED CLONE: terminal %s: %s; its records are held in quarantine until "
                "tools/backend terminals clear --tid %s\n" % (tid, alert["suspected"], tid)
            )
    for tid, alert in sorted(report.get("alerts", {}).items()):
        if alert["quarantine_dropped"] or alert["faults_dropped"]:
            out.write(
                "terminal %s: %d forged frames and %d fault logs dropped (bounds full)\n"
                % (tid, alert["quarantine_dropped"], alert["faults_dropped"])
            )


def money(amount_minor, currency_numeric):
    """Minor units as the receipt prints them: 21710, 978 -> 'EUR 217.10'."""
    from pos.money import MoneyError, currency, currency_code, format_minor

    try:
        code = currency_code(currency_numeric)
        return "%s %s" % (code, format_minor(amount_minor, currency(code)[1]))
    except MoneyError:
        return "%d minor units of currency %s" % (amount_minor, currency_numeric)


def print_report(report, out, merchant=None):
    """The report for an operator: per terminal, each merchant's takings in money as the
    receipt prints it, every Z and whether it reconciles, then what the terminal last said
    of its link and which downlink documents it has taken."""
    entries = {}
    for entry in report["merchants"]:
        entries.setdefault(entry["terminal"], []).append(entry)
    terminals = set(entries)
    if merchant is None:
        terminals |= set(report.get("terminals", {})) | set(report.get("downlink", {}))
    if not terminals:
        out.write(
            "No records for merchant %d yet.\n" % merchant
            if merchant is not None
            else "No terminals registered yet.\n"
        )
    for tid in sorted(terminals):
        out.write("Terminal %s\n" % tid)
        for entry in entries.get(tid, []):
            _print_merchant(entry, out)
        if tid not in entries:
            out.write("  no records received yet\n")
        heartbeat = report.get("terminals", {}).get(tid)
        if heartbeat:
            fields = heartbeat["status"]
            oldest = fields.get("oldest_s", "?")
            out.write(
                "  Link: %s unsent, oldest %s, counter %s, heap %s, firmware %s "
                "(heard %s)\n"
                % (
                    fields.get("depth", "?"),
                    "-" if oldest == "-1" else oldest + " s",
                    fields.get("counter", "?"),
                    fields.get("heap", "?"),
                    fields.get("fw", "?"),
                    time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(heartbeat["received"])),
                )
            )
        else:
            out.write("  Link: not heard from yet\n")
        entry = report.get("downlink", {}).get(tid)
        if entry:
            offered, in_force = entry["offered"], entry["in_force"]
            commands = ", ".join(
                "%d %s %s" % (c["id"], c["name"], "taken" if c["taken"] else "waiting")
                for c in entry["commands"]
            )
            out.write(
                "  Downlink: config %d (terminal has %d), blacklist %d (has %d), commands %s%s\n"
                % (
                    offered["config"],
                    in_force["config"],
                    offered["blacklist"],
                    in_force["blacklist"],
                    commands or "none",
                    ", refused " + entry["refused"] if entry["refused"] else "",
                )
            )
            keys = report.get("keys", {}).get(tid)
            if keys and keys["offered"]:
                out.write(
                    "  Keys: generation %d offered, %d installed (terminal says %d)\n"
                    % (keys["offered"], keys["installed"], in_force.get("keys", 0))
                )
            release = entry.get("release")
            if release and (release["offered"] or release["running"] or release["state"] != "-"):
                out.write(
                    "  Release: offered %s, terminal runs %d, %s\n"
                    % (
                        release["offered"] or "none",
                        release["running"],
                        release["state"]
                        + (
                            " %d" % release["state_version"]
                            if release["state_version"] is not None
                            else ""
                        ),
                    )
                )
    print_auto_blocks(report.get("auto_blocks", []), out)
    out.write("Quarantined records (not counted as money): %d\n" % report["quarantined"])


def _when(unix):
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(unix)) if unix else "clock not set"


def print_auto_blocks(blocks, out):
    """Every automatic block with its evidence (and every block lifted on a terminal)."""
    for block in blocks:
        if block["lifted"]:
            out.write(
                "Block lifted: card ****%04d (token:%s) on terminal %s by supervisor %d, %s\n"
                % (
                    block["last_four"],
                    block["token"],
                    block["terminal"],
                    block["by_cashier"],
                    _when(block["time"]),
                )
            )
            continue
        out.write(
            "AUTO-BLOCK: card ****%04d (token:%s) on terminal %s at merchant %d, %s: "
            "%d declines (%s); %s%s\n"
            % (
                block["last_four"],
                block["token"],
                block["terminal"],
                block["merchant"],
                _when(block["time"]),
                block["declines"],
                ", ".join(block["reasons"]),
                block["status"],
                " in blacklist %d" % block["blacklist_version"]
                if block["blacklist_version"]
                else "",
            )
        )
        for decline in block["evidence"]:
            out.write(
                "    decline %d at merchant %d, %s: %s\n"
                % (
                    decline["counter"],
                    decline["merchant"],
                    _when(decline["time"]),
                    decline["reason"],
                )
            )


def _print_merchant(entry, out):
    currency = entry.get("currency", 978)
    out.write(
        "  Merchant %d  %s  (MID %s)\n"
        % (entry["number"], entry["name"] or "(not registered)", entry["merchant_id"] or "?")
    )
    for label, count, total in (
        ("Sales", entry["sales_count"], entry["sales_total_minor"]),
        ("Voids", entry["voids_count"], entry["voids_total_minor"]),
        ("Refunds", entry["refunds_count"], entry["refunds_total_minor"]),
    ):
        out.write("    %-9s %5d  %18s\n" % (label, count, money(total, currency)))
    out.write("    %-9s %5s  %18s\n" % ("Net", "", money(entry["net_total_minor"], currency)))
    out.write("    %-9s %5d\n" % ("Declines", entry["declines_count"]))
    if entry["by_method"]:
        out.write(
            "    By method: %s\n"
            % ", ".join(
                "%s %s %s" % (key.split("_")[1], key.split("_")[0], money(total, currency))
                for key, total in sorted(entry["by_method"].items())
            )
        )
    for sale in entry["supervisor_approved"]:
        out.write(
            "    Sale %d of %s approved by supervisor %d\n"
            % (sale["counter"], money(sale["amount_minor"], currency), sale["supervisor"])
        )
    for z in entry["settlements"]:
        out.write(
            "    Z %d: sales %d %s, refunds %d %s: %s\n"
            % (
                z["batch"],
                z["sales_count"],
                money(z["sales_total_minor"], currency),
                z["refunds_count"],
                money(z["refunds_total_minor"], currency),
                "reconciles" if z["reconciles"] else "MISMATCH with the records received",
            )
        )
