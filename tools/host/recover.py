"""tools/recover: get the sales out of a terminal's flash, dead or alive.

Reads a flash dump (`esptool read-flash 0 0x400000 DUMP.bin`) or the simulator's flash.bin,
finds the txq partition through the partition table, recovers the queue exactly as the
terminal does (pos.txq, the same code), opens every record with keys derived from the BDK
(pos.dukpt, as the back end does) and lists them as text, CSV or JSON.

--upload URL (with --tid and --ca) sends the records not yet acked to the back end, as the
terminal would. The BDK never leaves the operator's machine: it is read from a key file
(hex), e.g. the simulator's STATE/backend/bdk.key. The terminal's IK ID comes from --ik-id or, with
--state, from STATE/backend/terminals.json.

After a key rotation (tools/backend keys rotate) a queue holds records of two key generations:
give every BDK (--bdk-file, once each) and every IK ID (--ik-id, once each, the terminal's
current one last); each record is opened with the IK ID whose tag it matches, under the BDK
that IK ID names (its first half is the BDK ID; the first BDK file otherwise). With --state,
every STATE/backend/bdk*.key and the IK IDs the simulator's back end offered are used.
"""

import argparse
import csv
import json
import os
import sys
import time
from binascii import unhexlify

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "lib"), os.path.join(ROOT, "tools", "emu")]

from norflash import NorFlash  # noqa: E402  (after the path is set)
from pos.derive import derive_initial_key, derive_transaction_key, derive_working_key, ksn_bytes  # noqa: E402
from pos.dukpt import USAGE_DATA_ENCRYPT, USAGE_MAC_GENERATION  # noqa: E402
from pos.money import MoneyError, currency, currency_code, format_minor  # noqa: E402
from pos.readout import METHOD_NAMES, kind_name, settlement_counts  # noqa: E402
from pos.record import SETTLEMENT, Record, RecordError  # noqa: E402
from pos.seal import Sealer, SealError  # noqa: E402
from pos.txq import QueueError, TxQueue  # noqa: E402
from tools.host import partitions  # noqa: E402

FIELDS = (
    "counter",
    "acked",
    "type",
    "merchant_number",
    "method",
    "amount_minor",
    "currency",
    "time",
    "receipt",
    "reference",
    "cashier",
    "reason",
    "flags",
    "last_four",
    "error",
)


class RecoverError(Exception):
    """The dump or the keys cannot be used; the message says why."""


def read_hex_file(path, size, what):
    try:
        with open(path) as source:
            value = unhexlify(source.read().strip())
    except OSError as exc:
        raise RecoverError("cannot read %s from %s: %s" % (what, path, exc.strerror)) from None
    except ValueError:
        raise RecoverError(
            "%s in %s must be %d hex digits, and it is not hex" % (what, path, 2 * size)
        ) from None
    if len(value) != size:
        raise RecoverError(
            "%s in %s must be %d hex digits (%d bytes)" % (what, path, 2 * size, size)
        )
    return value


def key_pairs(bdks, ik_ids):
    """[(initial key, IK ID)], each IK ID under the BDK it names (the first otherwise)."""
    from tools.host.backend.keyring import bdk_id

    named = {bdk_id(bdk): bdk for bdk in bdks}
    return [(derive_initial_key(named.get(ik_id[:4], bdks[0]), ik_id), ik_id) for ik_id in ik_ids]


def _open(sealer, frame, counter, pairs):
    """The record in a frame, opened with the first (IK, IK ID) whose tag it matches."""
    failure = None
    for ik, ik_id in pairs:
        ksn = ksn_bytes(ik_id, counter)
        key = derive_transaction_key(ik, ksn)
        try:
            plain = sealer.open(
                bytes(frame[1:-4]),
                derive_working_key(key, ksn, USAGE_DATA_ENCRYPT),
                derive_working_key(key, ksn, USAGE_MAC_GENERATION),
            )
            return Record.unpack(bytes(plain))
        except (SealError, RecordError) as exc:
            failure = exc
    raise failure


def open_records(image, bdk, ik_id):
    """(rows, recovery report) for the queue in a flash image. bdk and ik_id: one each, or
    lists of them (the key generations of a rotation)."""
    try:
        table = partitions.read_image_table(image)
    except OSError as exc:
        raise RecoverError("%s: %s" % (image, exc.strerror)) from None
    except partitions.PartitionError as exc:
        raise RecoverError("%s: %s" % (image, exc)) from None
    if "txq" not in table:
        raise RecoverError("%s has no txq partition" % image)
    offset, size = table["txq"]
    if os.path.getsize(image) < offset + size:
        raise RecoverError("%s ends before its txq partition does" % image)
    bdks = bdk if isinstance(bdk, list) else [bdk]
    pairs = key_pairs(bdks, ik_id if isinstance(ik_id, list) else [ik_id])
    flash = NorFlash(size // 4096, path=image, offset=offset, count_erases=False)
    flash.program = flash.erase = _read_only  # recovery must never write to the evidence
    try:
        queue = TxQueue(flash)
    except QueueError as exc:
        raise RecoverError(str(exc)) from None
    sealer = Sealer()
    rows = []
    for counter, acked, frame in queue.records():
        row = {"counter": counter, "acked": acked, "error": "", "_frame": bytes(frame)}
        try:
            record = _open(sealer, frame, counter, pairs)
        except (SealError, RecordError) as exc:
            row["error"] = str(exc)  # a wrong BDK or IK ID, or a record altered on flash
            rows.append(row)
            continue
        row.update(
            type=kind_name(record),
            merchant_number=record.merchant,
            method=METHOD_NAMES[record.method],
            amount_minor=record.amount_minor,
            currency=record.currency,
            time=record.time,
            receipt=record.receipt,
            reference=record.reference,
            cashier=record.cashier,
            reason=record.reason,
            flags=record.flags,
            last_four=None if record.last_four == 0xFFFF else record.last_four,
        )
        if record.kind == SETTLEMENT:
            # A Z has no card: its last-four field carries the refund count.
            row["last_four"] = None
            row["_z"] = settlement_counts(record)
        rows.append(row)
    report = {
        "records": queue.found_records,
        "acks": queue.found_acks,
        "corrupt": queue.found_corrupt,
        "stale_sectors": queue.found_stale_sectors,
        "unknown_sectors": queue.found_unknown_sectors,
        "ack_watermark": queue.ack_watermark,
        "unsent": sum(1 for row in rows if not row["acked"]),
        "unreadable": sum(1 for row in rows if row["error"]),
    }
    flash.close()
    return rows, report


def upload(rows, url, tid, ca_file, bdk, ik_id, batch_bytes=2048):
    """POST the unsent records, oldest first, in batches as the terminal would (signed with
    its request key, from the BDK and IK ID: pos.uplink); returns the back end's last ack.
    Records that do not open are sent too: the back end quarantines what it cannot verify,
    and the decision is its, not this tool's."""
    import ssl

    import httpx

    from tools.host.linkclient import TerminalSigner

    signer = TerminalSigner(bdk, ik_id)
    path = "/v1/terminals/%s/records" % tid
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise RecoverError("cannot read the CA from %s: %s" % (ca_file, exc)) from None
    frames = [row["_frame"] for row in rows if not row["acked"]]
    ack = 0
    try:
        with httpx.Client(base_url=url, verify=context, timeout=30) as client:
            while frames:
                batch, size = [], 0
                while frames and size + len(frames[0]) <= batch_bytes:
                    size += len(frames[0])
                    batch.append(frames.pop(0))
                body = b"".join(batch)
                for _ in range(2):  # once more if the back end says where the counter is
                    reply = client.post(
                        path,
                        content=body,
                        headers=dict(
                            signer.headers("POST", path, body),
                            **{"Content-Type": "application/octet-stream"},
                        ),
                    )
                    tag = reply.headers.get("x-onetill-reply")
                    if reply.status_code != 401 or not signer.reply_ok(tag, reply.content):
                        break
                    signer.nonce = max(signer.nonce, reply.json().get("last", 0))
                if reply.status_code != 200:
                    raise RecoverError(
                        "the back end answered %d: %s" % (reply.status_code, reply.text[:200])
                    )
                ack = reply.json()["ack"]
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise RecoverError("upload to %s failed: %s" % (url, exc)) from None
    except (ValueError, KeyError, TypeError):
        raise RecoverError("the back end at %s did not answer with an ack" % url) from None
    return ack


def _read_only(*_args):
    raise RecoverError("recovery tried to write to the flash image")


def money(amount_minor, currency_numeric):
    """Minor units as the receipt prints them: 21710, 978 -> 'EUR 217.10'."""
    try:
        code = currency_code(currency_numeric)
        return "%s %s" % (code, format_minor(amount_minor, currency(code)[1]))
    except MoneyError:
        return "%d minor units of currency %s" % (amount_minor, currency_numeric)


def write_text(rows, report, out):
    """One line a record for an operator: money as the receipt prints it (a void or refund
    below zero), the time in UTC
    (none before the terminal's clock was set), the card's last four digits where there
    was a card, and a Z's own figures."""
    out.write(
        "%7s %-5s %-10s %3s %-6s %15s %7s  %-16s %s\n"
        % ("counter", "acked", "type", "mer", "method", "amount", "receipt", "time (UTC)", "note")
    )
    for row in rows:
        acked = "yes" if row["acked"] else "no"
        if row["error"]:
            out.write("%7d %-5s UNREADABLE: %s\n" % (row["counter"], acked, row["error"]))
            continue
        if "_z" in row:
            sales_count, sales_total, refunds_count, refunds_total = row["_z"]
            note = "Z %d: sales %d %s, refunds %d %s" % (
                row["reference"],
                sales_count,
                money(sales_total, row["currency"]),
                refunds_count,
                money(refunds_total, row["currency"]),
            )
        else:
            note = "card ****%04d" % row["last_four"] if row["last_four"] is not None else ""
            if row["reference"] and row["type"] in ("void", "refund"):
                note = ("of receipt %06d %s" % (row["reference"], note)).strip()
            elif row["reference"] and row["type"] == "sale":  # an unusual amount's approver
                note = ("supervisor %d %s" % (row["reference"], note)).strip()
        line = "%7d %-5s %-10s %3d %-6s %15s %7s  %-16s %s" % (
            row["counter"],
            acked,
            row["type"],
            row["merchant_number"],
            row["method"] or "-",
            money(
                -row["amount_minor"] if row["type"] in ("void", "refund") else row["amount_minor"],
                row["currency"],
            ),
            "%06d" % row["receipt"],
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(row["time"])) if row["time"] else "-",
            note,
        )
        out.write(line.rstrip() + "\n")
    out.write(
        "%d records: %d acked by the back end, %d not yet, %d unreadable\n"
        % (
            report["records"],
            report["records"] - report["unsent"],
            report["unsent"],
            report["unreadable"],
        )
    )
    out.write(
        "queue: acked up to counter %d; ack records %d, corrupt frames %d, stale sectors %d, "
        "unknown sectors %d\n"
        % (
            report["ack_watermark"],
            report["acks"],
            report["corrupt"],
            report["stale_sectors"],
            report["unknown_sectors"],
        )
    )


def main(argv):
    parser = argparse.ArgumentParser(prog="tools/recover", description=__doc__.split("\n")[0])
    parser.add_argument("--flash", help="flash dump or simulator flash.bin")
    parser.add_argument("--state", help="a simulator state folder (flash.bin and backend keys)")
    parser.add_argument(
        "--bdk-file",
        action="append",
        help="the BDK, 32 hex digits, in a file (once per BDK after a key rotation)",
    )
    parser.add_argument(
        "--ik-id",
        action="append",
        help="the terminal's IK ID, 16 hex digits (once per key generation, the current last)",
    )
    parser.add_argument("--format", choices=("text", "csv", "json"), default="text")
    parser.add_argument("--json", action="store_true", help="same as --format json")
    parser.add_argument("--unsent", action="store_true", help="only records not yet acked")
    parser.add_argument("--upload", metavar="URL", help="send the unsent records to this back end")
    parser.add_argument("--tid", help="the terminal ID the back end knows (with --upload)")
    parser.add_argument("--ca", help="the back end's CA, PEM (with --upload)")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except RecoverError as exc:
        sys.stderr.write("tools/recover: %s\n" % exc)
        return 2
    except BrokenPipeError:
        # `tools/recover ... | head`: the reader has what it wanted; nothing left to say
        # (and stdout cannot be flushed again at exit).
        os._exit(0)


def keys_of_state(state):
    """(flash image, [BDK files], [IK IDs]) of a simulator state folder: every bdk*.key of
    its back end, and the IK IDs its back end registered or offered (key rotations)."""
    if not os.path.isdir(state):
        raise RecoverError("no simulator state folder %s" % state)
    try:
        with open(os.path.join(state, "backend", "terminals.json")) as source:
            ik_id = next(iter(json.load(source).values()))["ik_id"]
    except OSError as exc:
        raise RecoverError("no terminal in %s: %s" % (state, exc.strerror)) from None
    except (ValueError, StopIteration, KeyError, TypeError, AttributeError):
        raise RecoverError(
            "no terminal in %s: backend/terminals.json names none" % state
        ) from None
    keys = os.path.join(state, "backend")
    files = [os.path.join(keys, "bdk.key")] + sorted(
        os.path.join(keys, name)
        for name in os.listdir(keys)
        if name.startswith("bdk") and name.endswith(".key") and name != "bdk.key"
    )
    ik_ids = [ik_id] + [
        i for i in _offered_ik_ids(os.path.join(state, "backend.db")) if i != ik_id
    ]
    return os.path.join(state, "flash.bin"), files, ik_ids


def _offered_ik_ids(db_path):
    """The IK IDs of the key generations the simulator's back end offered, oldest first."""
    import sqlite3

    if not os.path.exists(db_path):
        return []
    try:
        db = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True)
        try:
            rows = db.execute("SELECT ik_id FROM key_generations ORDER BY tid, generation")
            return [bytes(row[0]).hex() for row in rows]
        finally:
            db.close()
    except sqlite3.Error:
        return []  # a ledger from before key rotation


def run(args):
    if args.upload and (not args.tid or not args.ca):
        raise RecoverError("--upload needs --tid and --ca")
    image, bdk_file, ik_hex = args.flash, args.bdk_file, args.ik_id
    if args.state:
        from_state = keys_of_state(args.state)
        image = image or from_state[0]
        bdk_file = bdk_file or from_state[1]
        ik_hex = ik_hex or from_state[2]
    if not image or not bdk_file or not ik_hex:
        raise RecoverError("give --state DIR, or --flash, --bdk-file and --ik-id")
    ik_ids = []
    for text in ik_hex:
        try:
            ik_id = unhexlify(text)
        except ValueError:
            raise RecoverError("--ik-id must be hex") from None
        if len(ik_id) != 8:
            raise RecoverError("--ik-id must be 8 bytes (16 hex digits)")
        ik_ids.append(ik_id)
    bdks = [read_hex_file(path, 16, "the BDK") for path in bdk_file]
    rows, report = open_records(image, bdks, ik_ids)
    if args.upload:
        # Signed as the terminal signs now: with its current key (the last IK ID given).
        from tools.host.backend.keyring import bdk_id

        current = ik_ids[-1]

        named = {bdk_id(b): b for b in bdks}
        ack = upload(
            rows, args.upload, args.tid, args.ca, named.get(current[:4], bdks[0]), current
        )
        sys.stderr.write("uploaded: the back end acked up to counter %d\n" % ack)
    if args.unsent:
        rows = [row for row in rows if not row["acked"]]
    form = "json" if args.json else args.format
    if form == "text":
        write_text(rows, report, sys.stdout)
    else:
        for row in rows:
            del row["_frame"]
            row.pop("_z", None)
        if form == "json":
            json.dump(rows, sys.stdout, indent=1)
            sys.stdout.write("\n")
            sys.stderr.write("recovered: %s\n" % json.dumps(report))
        else:
            writer = csv.DictWriter(sys.stdout, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    sys.stdout.flush()  # a closed pipe shows here, not at exit
    return 1 if report["unreadable"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
