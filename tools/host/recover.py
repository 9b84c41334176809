"""tools/recover: get the sales out of a terminal's flash, dead or alive.

Reads a flash dump (`esptool read-flash 0 0x400000 DUMP.bin`) or the simulator's flash.bin,
finds the txq partition through the partition table, recovers the queue exactly as the
terminal does (pos.txq, the same code), opens every record with keys derived from the BDK
(pos.dukpt, as the back end does) and lists them as text, CSV or JSON.

--upload URL (with --tid and --ca) sends the records not yet acked to the back end, as the
terminal would. The BDK never leaves the operator's machine: it is read from a key file
(hex), e.g. the simulator's STATE/backend/bdk.key. The terminal's IK ID comes from --ik-id or, with
--state, from STATE/backend/terminals.json.
"""

import argparse
import csv
import json
import os
import sys
from binascii import unhexlify

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "lib"), os.path.join(ROOT, "tools", "emu")]

from norflash import NorFlash  # noqa: E402  (after the path is set)
from pos.dukpt import (  # noqa: E402
    USAGE_DATA_ENCRYPT,
    USAGE_MAC_GENERATION,
    derive_initial_key,
    derive_transaction_key,
    derive_working_key,
    ksn_bytes,
)
from pos.record import KIND_NAMES, METHOD_NAMES, Record, RecordError  # noqa: E402
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
    except (OSError, ValueError) as exc:
        raise RecoverError("cannot read %s from %s: %s" % (what, path, exc)) from None
    if len(value) != size:
        raise RecoverError("%s in %s must be %d bytes" % (what, path, size))
    return value


def open_records(image, bdk, ik_id):
    """(rows, recovery report) for the queue in a flash image."""
    try:
        table = partitions.read_image_table(image)
    except (OSError, partitions.PartitionError) as exc:
        raise RecoverError("%s: %s" % (image, exc)) from None
    if "txq" not in table:
        raise RecoverError("%s has no txq partition" % image)
    offset, size = table["txq"]
    if os.path.getsize(image) < offset + size:
        raise RecoverError("%s ends before its txq partition does" % image)
    ik = derive_initial_key(bdk, ik_id)
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
        ksn = ksn_bytes(ik_id, counter)
        key = derive_transaction_key(ik, ksn)
        try:
            plain = sealer.open(
                bytes(frame[1:-4]),
                derive_working_key(key, ksn, USAGE_DATA_ENCRYPT),
                derive_working_key(key, ksn, USAGE_MAC_GENERATION),
            )
            record = Record.unpack(bytes(plain))
        except (SealError, RecordError) as exc:
            row["error"] = str(exc)  # a wrong BDK or IK ID, or a record altered on flash
            rows.append(row)
            continue
        row.update(
            type=KIND_NAMES[record.kind],
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
    context = ssl.create_default_context(cafile=ca_file)
    frames = [row["_frame"] for row in rows if not row["acked"]]
    ack = 0
    with httpx.Client(base_url=url, verify=context, timeout=30) as client:
        while frames:
            batch, size = [], 0
            while frames and size + len(frames[0]) <= batch_bytes:
                size += len(frames[0])
                batch.append(frames.pop(0))
            body = b"".join(batch)
            for _ in range(2):  # once more if the back end says where the counter is
                try:
                    reply = client.post(
                        path,
                        content=body,
                        headers=dict(
                            signer.headers("POST", path, body),
                            **{"Content-Type": "application/octet-stream"},
                        ),
                    )
                except httpx.HTTPError as exc:
                    raise RecoverError("upload failed: %s" % exc) from None
                tag = reply.headers.get("x-onetill-reply")
                if reply.status_code != 401 or not signer.reply_ok(tag, reply.content):
                    break
                signer.nonce = max(signer.nonce, reply.json().get("last", 0))
            if reply.status_code != 200:
                raise RecoverError("back end answered %d: %s" % (reply.status_code, reply.text))
            ack = reply.json()["ack"]
    return ack


def _read_only(*_args):
    raise RecoverError("recovery tried to write to the flash image")


def write_text(rows, report, out):
    out.write(
        "%-8s %-5s %-10s %3s %-7s %12s %8s %s\n"
        % ("counter", "acked", "type", "mer", "method", "amount", "receipt", "note")
    )
    for row in rows:
        if row["error"]:
            out.write(
                "%-8d %-5s %s\n" % (row["counter"], row["acked"], "UNREADABLE: " + row["error"])
            )
            continue
        out.write(
            "%-8d %-5s %-10s %3d %-7s %12d %8d %s\n"
            % (
                row["counter"],
                "yes" if row["acked"] else "no",
                row["type"],
                row["merchant_number"],
                row["method"] or "-",
                row["amount_minor"],
                row["receipt"],
                "card ****%04d" % row["last_four"] if row["last_four"] is not None else "",
            )
        )
    out.write("recovered: %s\n" % ", ".join("%s %s" % item for item in report.items()))


def main(argv):
    parser = argparse.ArgumentParser(prog="tools/recover", description=__doc__.split("\n")[0])
    parser.add_argument("--flash", help="flash dump or simulator flash.bin")
    parser.add_argument("--state", help="a simulator state folder (flash.bin and backend keys)")
    parser.add_argument("--bdk-file", help="the BDK, 32 hex digits, in a file")
    parser.add_argument("--ik-id", help="the terminal's IK ID, 16 hex digits")
    parser.add_argument("--format", choices=("text", "csv", "json"), default="text")
    parser.add_argument("--json", action="store_true", help="same as --format json")
    parser.add_argument("--unsent", action="store_true", help="only records not yet acked")
    parser.add_argument("--upload", metavar="URL", help="send the unsent records to this back end")
    parser.add_argument("--tid", help="the terminal ID the back end knows (with --upload)")
    parser.add_argument("--ca", help="the back end's CA, PEM (with --upload)")
    args = parser.parse_args(argv)
    try:
        if args.state:
            image = args.flash or os.path.join(args.state, "flash.bin")
            bdk_file = args.bdk_file or os.path.join(args.state, "backend", "bdk.key")
            if args.ik_id is None:
                try:
                    with open(os.path.join(args.state, "backend", "terminals.json")) as source:
                        args.ik_id = next(iter(json.load(source).values()))["ik_id"]
                except (OSError, ValueError, StopIteration, KeyError) as exc:
                    raise RecoverError(
                        "no terminal in %s/backend: %s" % (args.state, exc)
                    ) from None
        else:
            image, bdk_file = args.flash, args.bdk_file
        if not image or not bdk_file or not args.ik_id:
            raise RecoverError("give --state DIR, or --flash, --bdk-file and --ik-id")
        try:
            ik_id = unhexlify(args.ik_id)
        except ValueError:
            raise RecoverError("--ik-id must be hex") from None
        if len(ik_id) != 8:
            raise RecoverError("--ik-id must be 8 bytes (16 hex digits)")
        bdk = read_hex_file(bdk_file, 16, "the BDK")
        rows, report = open_records(image, bdk, ik_id)
    except RecoverError as exc:
        sys.stderr.write("tools/recover: %s\n" % exc)
        return 2
    if args.upload:
        if not args.tid or not args.ca:
            sys.stderr.write("tools/recover: --upload needs --tid and --ca\n")
            return 2
        try:
            ack = upload(rows, args.upload, args.tid, args.ca, bdk, ik_id)
        except RecoverError as exc:
            sys.stderr.write("tools/recover: %s\n" % exc)
            return 2
        sys.stderr.write("uploaded: the back end acked up to counter %d\n" % ack)
    for row in rows:
        del row["_frame"]
    if args.unsent:
        rows = [row for row in rows if not row["acked"]]
    form = "json" if args.json else args.format
    if form == "json":
        json.dump(rows, sys.stdout, indent=1)
        sys.stdout.write("\n")
        sys.stderr.write("recovered: %s\n" % json.dumps(report))
    elif form == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    else:
        write_text(rows, report, sys.stdout)
    return 1 if report["unreadable"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
