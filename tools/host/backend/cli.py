"""tools/backend: the OneTill back end: FastAPI over TLS, SQLite or PostgreSQL, reports.

    tools/backend certs --out DIR
    tools/backend terminals add --db FILE --tid T0001 --ik-id HEX [--merchants merchants.json]
    tools/backend serve --db FILE --bdk-file KEY --port 8443 --tls-cert C --tls-key K
    tools/backend report --db FILE [--merchant N] [--json]
    tools/backend config set --db FILE --terminal TID CONFIG.json
    tools/backend blacklist add|remove --db FILE [--token-key-file KEY] CARD|token:HEX...
    tools/backend command --db FILE --terminal TID settle|faultlog|clock
    tools/backend blacklist policy --db FILE propagate|review
    tools/backend blacklist review --db FILE [--accept CARD|token:HEX...] [--reject ...]
    tools/backend keys rotate --db FILE --bdk-file NEW.key [--terminals all|TID,...]
    tools/backend keys status --db FILE [--json]
    tools/backend users add|list|disable|reset --db FILE [--role R --merchant MID] [NAME]
    tools/backend release add --db FILE --pub release.pub [--percent N | --terminals T,...] F
    tools/backend release list|stop --db FILE [VERSION]

--db is an SQLite file (ledger.db) or a PostgreSQL URL (postgresql://user@host/db); the
schema's migrations are applied when a command that writes opens it.

The BDK is read from a key file (32 hex digits) that only the back end's user can read
(chmod 600); it is never stored in the database. The downlink (config, blacklist, commands)
is stored in versions; the terminal fetches what is newer than what it has, each document
encrypted and MACed with the terminal's downlink key (derived from the BDK and its IK ID).
"""

import argparse
import json
import os
import sqlite3
import sys
from binascii import unhexlify

from tools.host.backend import api
from tools.host.backend.api import KEEP_ALIVE_S, MAX_HEADER_BYTES, guarded_protocol, make_app
from tools.host.backend.documents import card_tokens
from tools.host.backend.errors import (
    CommandError,
    DownlinkError,
    IngestError,
    LedgerError,
    RegistrationError,
)
from tools.host.backend.keyring import read_keyring
from tools.host.backend.ledger import LedgerDB
from tools.host.backend.office.accounts import add_users_parser, users_command
from tools.host.backend.reports import print_alerts, print_report
from tools.host.backend.server import make_certs
from tools.host.backend.storage import is_url


def read_bdk(paths):
    """The keyring of one or more BDK key files (keyring.py), the base key first."""
    return read_keyring(paths)


def downlink_command(args):
    db = LedgerDB(args.db, mode="write")  # a mistyped --db must not make a new ledger
    try:
        if args.command == "config":
            try:
                with open(args.file) as source:
                    doc = json.load(source)
            except (OSError, ValueError) as exc:
                raise DownlinkError("cannot read %s: %s" % (args.file, exc)) from None
            version = db.set_config(args.terminal, doc)
            _audit(db, "config pushed", "%s version %d" % (args.terminal, version))
            print("config %d for %s stored: the terminal fetches it" % (version, args.terminal))
        elif args.command == "blacklist" and args.action == "policy":
            if len(args.cards) != 1:
                raise DownlinkError("blacklist policy takes one word: propagate or review")
            db.set_auto_block_policy(args.cards[0])
            _audit(db, "auto_block policy", args.cards[0])
            print("auto_block policy: %s" % args.cards[0])
        elif args.command == "blacklist" and args.action == "review":
            _review(db, args)
        elif args.command == "blacklist":
            if not args.cards:
                raise DownlinkError("blacklist %s needs card numbers or token:HEX" % args.action)
            tokens = card_tokens(args.cards, args.token_key_file)
            if args.action == "add":
                version = db.change_blacklist(add=tokens)
            else:
                version = db.change_blacklist(remove=tokens)
            _audit(
                db,
                "blacklist %s" % args.action,
                "version %d: %s" % (version, " ".join("token:" + t.hex() for t in tokens)),
            )
            print(
                "blacklist %d: %d %s"
                % (version, len(tokens), "added" if args.action == "add" else "removed")
            )
        else:
            number = db.add_command(args.terminal, args.name)
            _audit(db, "command queued", "%s %s (%d)" % (args.terminal, args.name, number))
            print("command %d (%s) queued for %s" % (number, args.name, args.terminal))
    finally:
        db.close()
    return 0


def _review(db, args):
    """Accept or reject automatic blocks waiting for review; without either, list them."""
    accept = card_tokens(args.accept, args.token_key_file) if args.accept else []
    reject = card_tokens(args.reject, args.token_key_file) if args.reject else []
    if args.cards:
        raise DownlinkError("blacklist review takes --accept and --reject, not cards")
    if accept or reject:
        version = db.review_auto_blocks(accept, reject)
        _audit(
            db,
            "auto blocks reviewed",
            "accepted %s; rejected %s"
            % tuple(" ".join("token:" + t.hex() for t in ts) or "-" for ts in (accept, reject)),
        )
        print(
            "%d accepted%s, %d rejected"
            % (len(accept), " (blacklist %d)" % version if version else "", len(reject))
        )
        return
    from tools.host.backend.reports import print_auto_blocks

    waiting = [b for b in db.auto_blocks_report() if b["status"] == "waiting for review"]
    print("auto_block policy: %s; %d waiting for review" % (db.auto_block_policy(), len(waiting)))
    print_auto_blocks(waiting, sys.stdout)


def keys_command(args):
    """Schedule a new key generation under a new BDK, or list where every terminal is."""
    from tools.host.backend.keyring import bdk_id, read_key_file

    if args.action == "rotate":
        if not args.bdk_file:
            raise CommandError("keys rotate needs --bdk-file NEW.key (the new BDK)")
        new_bdk = read_key_file(args.bdk_file)
        db = LedgerDB(args.db, mode="write")
        try:
            named = None
            if args.terminals and args.terminals != "all":
                named = [tid.strip() for tid in args.terminals.split(",") if tid.strip()]
            offered = db.rotate_keys(new_bdk, named)
            _audit(
                db,
                "keys rotated",
                "BDK %s offered to %d terminals" % (bdk_id(new_bdk).hex(), len(offered)),
            )
        finally:
            db.close()
        for tid, generation, ik_id in offered:
            print("%s: generation %d offered, IK ID %s" % (tid, generation, ik_id.hex()))
        print(
            "BDK %s: %d terminals offered a new key; serve with --bdk-file %s added to the "
            "keyring, then watch tools/backend keys status"
            % (bdk_id(new_bdk).hex(), len(offered), args.bdk_file)
        )
        return 0
    db = LedgerDB(args.db, mode="read")
    try:
        status = db.keys_status()
    finally:
        db.close()
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    print("newest BDK: %s" % (status["newest_bdk_id"] or "the original (no rotation yet)"))
    for entry in status["terminals"]:
        print(
            "%-12s generation %d installed (BDK %s), %d offered%s; terminal says %s%s"
            % (
                entry["terminal"],
                entry["installed"],
                entry["bdk_id"],
                entry["offered"],
                " (%s)" % entry["offered_since"] if entry["offered_since"] else "",
                entry["heard"] if entry["heard"] is not None else "nothing yet",
                "" if entry["current"] else "  STILL ON AN OLD BDK",
            )
        )
    return 0


def _audit(db, action, detail):
    """An operator's action from the shell, in the back office's audit log beside those
    made in the browser."""
    from tools.host.backend.office.store import OfficeStore

    OfficeStore(db).audit("cli", action, detail)


def release_command(args):
    db = LedgerDB(args.db, mode="write")
    try:
        if args.action == "add":
            try:
                with open(args.pub, "rb") as source:
                    public_key = source.read()
                with open(args.file, "rb") as source:
                    data = source.read()
            except OSError as exc:
                raise CommandError("cannot read %s: %s" % (exc.filename, exc.strerror)) from None
            terminals = None
            if args.terminals:
                terminals = [t for t in args.terminals.split(",") if t]
            header = db.add_release(data, public_key, args.percent, terminals)
            print(
                "release %d stored (replaces %d or later), offered to %s"
                % (
                    header.version,
                    header.min_version,
                    ", ".join(terminals) if terminals else "%d%% of terminals" % args.percent,
                )
            )
        elif args.action == "stop":
            try:
                version = int(args.file or "")
            except ValueError:
                raise CommandError("release stop takes a version number") from None
            db.stop_release(version)
            print("release %d is offered no more" % version)
        else:
            for entry in db.releases():
                rollout = entry["rollout"]
                print(
                    "%d  min %d  %d bytes  sha256 %s...  %s%s"
                    % (
                        entry["version"],
                        entry["min_version"],
                        entry["size"],
                        entry["sha256"][:16],
                        rollout if isinstance(rollout, str) else ",".join(rollout),
                        "  STOPPED" if entry["stopped"] else "",
                    )
                )
    finally:
        db.close()
    return 0


def certs_command(args):
    try:
        make_certs(args.out)
    except OSError as exc:
        raise CommandError("cannot write the certificates in %s: %s" % (args.out, exc)) from None
    print("wrote ca.der, ca.pem, server.pem, server.key in %s" % args.out)
    return 0


def terminals_command(args):
    if args.action == "clear":
        return clear_command(args)
    try:
        ik_id = unhexlify(args.ik_id or "")
    except ValueError:
        ik_id = b""
    if len(ik_id) != 8:
        raise CommandError("--ik-id must be 16 hex digits")
    merchants = []
    if args.merchants:
        try:
            with open(args.merchants) as source:
                for entry in json.load(source)["merchants"]:
                    merchants.append((entry["number"], entry["merchant_id"], entry["name"]))
        except (OSError, ValueError) as exc:
            raise CommandError("cannot read %s: %s" % (args.merchants, exc)) from None
        except (KeyError, TypeError):
            raise CommandError(
                '%s is not a merchants.json ({"merchants": [{"number", "merchant_id", '
                '"name", ...}, ...]})' % args.merchants
            ) from None
    db = LedgerDB(args.db)  # registering the first terminal makes the ledger
    try:
        db.add_terminal(args.tid, ik_id, merchants, replace=args.replace)
    except RegistrationError as exc:
        raise CommandError(str(exc)) from None
    finally:
        db.close()
    print("terminal %s registered with %d merchants" % (args.tid, len(merchants)))
    return 0


def clear_command(args):
    db = LedgerDB(args.db, mode="write")
    try:
        reason = db.clear_terminal(args.tid)
        _audit(db, "terminal cleared", "%s (was: %s)" % (args.tid, reason))
    finally:
        db.close()
    if reason is None:
        print("terminal %s was not suspected" % args.tid)
    else:
        print(
            "terminal %s cleared (was: %s); its held records stay in quarantine"
            % (args.tid, reason)
        )
    return 0


def report_command(args):
    since = until = None
    if args.date_from or args.date_to:
        from tools.host.backend.office.figures import PeriodError, bounds, parse_period

        try:
            first, last = parse_period(args.date_from or args.date_to, args.date_to, None)
        except PeriodError as exc:
            raise CommandError(str(exc)) from None
        since, until = bounds(first, last, args.utc_offset_min)
    db = LedgerDB(args.db, mode="read")  # a report never writes, nor makes a ledger
    try:
        result = db.report(args.merchant, since, until)
    except sqlite3.Error as exc:
        raise CommandError("cannot read the ledger %s: %s" % (args.db, exc)) from None
    finally:
        db.close()
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print_alerts(result, sys.stdout)
        print_report(result, sys.stdout, args.merchant)
    return 0


def serve_command(args):
    import ssl

    for path in (args.tls_cert, args.tls_key):
        if not os.path.isfile(path):
            raise CommandError("no such file: %s" % path)
    try:  # as uvicorn will, so that a wrong file is one line here, not a traceback there
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            args.tls_cert, args.tls_key
        )
    except (OSError, ssl.SSLError) as exc:
        raise CommandError(
            "cannot use %s and %s as the TLS certificate and key: %s"
            % (args.tls_cert, args.tls_key, exc)
        ) from None
    if args.workers < 1:
        raise CommandError("--workers must be 1 or more")
    bdk = read_bdk(args.bdk_file)
    db = LedgerDB(args.db, bdk, mode="write")  # terminals add makes the ledger first
    import uvicorn

    options = dict(
        host=args.host,
        port=args.port,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
        # Not "warning": uvicorn warns once per malformed request, which a stranger could
        # turn into a flood of log lines (refusals are counted by RefusalLog instead).
        log_level="error",
        http=guarded_protocol(),
        # libuv's loop and its TLS: on the shared 2 cores, 200 terminals offering 1,000
        # records/s got 972 and 988 carried against 627 and 700 on asyncio's, runs taken
        # in turn (tools/bench uplink's load).
        loop="uvloop",
        timeout_keep_alive=KEEP_ALIVE_S,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )
    if args.workers == 1:
        app = make_app(db, docs=args.docs, office=True, token_key_file=args.token_key_file)
        uvicorn.run(app, **options)
        return 0
    # uvicorn's process model: one listening socket, N worker processes each with its own
    # LedgerDB over the one ledger; exactly-once holds across them in the database.
    db.close()
    os.environ.update(
        {
            api.ENV_DB: args.db if is_url(args.db) else os.path.abspath(args.db),
            api.ENV_BDK_FILE: os.pathsep.join(os.path.abspath(p) for p in args.bdk_file),
            api.ENV_DOCS: "1" if args.docs else "0",
            api.ENV_SERVE_PID: str(os.getpid()),
            api.ENV_TOKEN_KEY_FILE: os.path.abspath(args.token_key_file)
            if args.token_key_file
            else "",
        }
    )
    uvicorn.run(
        "tools.host.backend.api:app_from_environment",
        factory=True,
        workers=args.workers,
        **options,
    )
    return 0


COMMANDS = {
    "certs": certs_command,
    "terminals": terminals_command,
    "serve": serve_command,
    "report": report_command,
    "config": downlink_command,
    "blacklist": downlink_command,
    "command": downlink_command,
    "keys": keys_command,
    "users": users_command,
    "release": release_command,
}


def main(argv):
    parser = argparse.ArgumentParser(prog="tools/backend", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    certs = commands.add_parser("certs", help="make a throwaway CA and server certificate")
    certs.add_argument("--out", required=True)
    terminals = commands.add_parser(
        "terminals", help="register terminals; clear one suspected of being cloned"
    )
    terminals.add_argument("action", choices=["add", "clear"])
    terminals.add_argument("--db", required=True)
    terminals.add_argument("--tid", required=True)
    terminals.add_argument("--ik-id", help="16 hex digits (add)")
    terminals.add_argument("--merchants", help="the terminal's merchants.json")
    terminals.add_argument(
        "--replace",
        action="store_true",
        help="the ID is registered with another IK ID: start it afresh (old records kept "
        "under TID@OLDIKID)",
    )
    serve = commands.add_parser("serve", help="serve the API over TLS")
    serve.add_argument("--db", required=True)
    serve.add_argument(
        "--bdk-file",
        required=True,
        action="append",
        help="a BDK key file; give it once per key of the keyring, the original BDK first",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument("--tls-cert", required=True)
    serve.add_argument("--tls-key", required=True)
    serve.add_argument("--docs", action="store_true", help="serve /docs and /openapi.json")
    serve.add_argument(
        "--token-key-file",
        help="the card-token key, so that the back office can block a card by its number",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes on the one port and ledger (uvicorn's process model)",
    )
    report = commands.add_parser("report", help="per-merchant totals and settlements")
    report.add_argument("--db", required=True)
    report.add_argument("--merchant", type=int)
    report.add_argument("--json", action="store_true")
    report.add_argument("--from", dest="date_from", help="first local date (2026-11-29)")
    report.add_argument("--to", dest="date_to", help="last local date (default: --from)")
    report.add_argument(
        "--utc-offset-min",
        type=int,
        default=0,
        help="local time's offset from UTC in minutes, for --from and --to (default 0)",
    )
    config = commands.add_parser("config", help="push a config (merchants, cashiers, limits)")
    config.add_argument("action", choices=["set"])
    config.add_argument("--db", required=True)
    config.add_argument("--terminal", required=True)
    config.add_argument("file", help='{"merchants": <merchants.json>, "cashiers": <...>}')
    blacklist = commands.add_parser("blacklist", help="block or unblock cards everywhere")
    actions = blacklist.add_subparsers(dest="action", required=True)
    for name, words in (
        ("add", "block cards on every terminal"),
        ("remove", "lift cards from the fleet list"),
        ("policy", "what an automatic block of a terminal does to the fleet list"),
        ("review", "list, accept or reject automatic blocks waiting for review"),
    ):
        action = actions.add_parser(name, help=words)
        action.add_argument("--db", required=True)
        action.add_argument(
            "--token-key-file", help="the card-token key (32 hex digits) to tokenise card numbers"
        )
        if name == "policy":
            action.add_argument("cards", nargs=1, metavar="propagate|review")
        elif name == "review":
            action.add_argument("--accept", nargs="+", help="blocks to put on the fleet list")
            action.add_argument("--reject", nargs="+", help="blocks to drop")
            action.set_defaults(cards=[])
        else:
            action.add_argument("cards", nargs="+", help="card numbers, or token:12HEX")
    command = commands.add_parser("command", help="queue a command for a terminal")
    command.add_argument(
        "name",
        choices=["settle", "faultlog", "clock"],
        help="clock: the terminal takes the back end's next time however far it moves its "
        "clock (never before its newest sale), once",
    )
    command.add_argument("--db", required=True)
    command.add_argument("--terminal", required=True)
    keys = commands.add_parser("keys", help="rotate the terminals' keys to a new BDK; status")
    keys.add_argument("action", choices=["rotate", "status"])
    keys.add_argument("--db", required=True)
    keys.add_argument("--bdk-file", help="rotate: the new BDK's key file (32 hex digits)")
    keys.add_argument("--terminals", default="all", help="rotate: all, or TID,TID,...")
    keys.add_argument("--json", action="store_true", help="status: as JSON")
    add_users_parser(commands)
    release = commands.add_parser(
        "release", help="signed software releases: add (staged rollout), list, stop"
    )
    actions = release.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="check a release with the public key, offer it")
    add.add_argument("--db", required=True)
    add.add_argument("--pub", required=True, help="the release public key (release.pub)")
    who = add.add_mutually_exclusive_group()
    who.add_argument("--percent", type=int, default=100, help="share of terminals")
    who.add_argument("--terminals", help="TID,TID,... instead of a share")
    add.add_argument("file", help="the release file (tools/release build)")
    listing = actions.add_parser("list", help="the releases and their rollout")
    listing.add_argument("--db", required=True)
    stop = actions.add_parser("stop", help="offer a release no more")
    stop.add_argument("--db", required=True)
    stop.add_argument("file", metavar="VERSION")
    args = parser.parse_args(argv)
    try:
        status = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return status
    except (CommandError, LedgerError, DownlinkError, IngestError) as exc:
        sys.stderr.write("tools/backend: %s\n" % exc)
        return 2
    except BrokenPipeError:
        # `tools/backend report | head`: the reader has what it wanted; nothing left to say
        # (and stdout cannot be flushed again at exit).
        os._exit(0)
