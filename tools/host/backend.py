"""tools/backend: the OneTill back end: FastAPI over TLS, SQLite, per-merchant reports.

    tools/backend certs --out DIR
    tools/backend terminals add --db FILE --tid T0001 --ik-id HEX [--merchants merchants.json]
    tools/backend serve --db FILE --bdk-file KEY --port 8443 --tls-cert C --tls-key K
    tools/backend report --db FILE [--merchant N] [--json]
    tools/backend config set --db FILE --terminal TID CONFIG.json
    tools/backend blacklist add|remove --db FILE [--token-key-file KEY] CARD|token:HEX...
    tools/backend command --db FILE --terminal TID settle|faultlog

The BDK is read from a key file (32 hex digits) that only the back end's user can read
(chmod 600); it is never stored in the database. The downlink (config, blacklist, commands)
is stored in versions; the terminal fetches what is newer than what it has, each document
encrypted and MACed with the terminal's downlink key (derived from the BDK and its IK ID).
"""

import argparse
import asyncio
import datetime
import json
import os
import sqlite3
import sys
import time
from binascii import unhexlify

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "lib"))

from tools.host.ledgerdb import (  # noqa: E402
    MAX_BATCH_BYTES,
    MAX_FAULT_LOG_BYTES,
    DownlinkError,
    IngestError,
    LedgerDB,
    LedgerError,
    RegistrationError,
)

DOCUMENT_KINDS = {"config": "C", "blacklist": "B", "commands": "K"}


class CommandError(Exception):
    """A user's mistake on the command line; the message says what, in one line."""


# Bounds on what a stranger can make the back end hold or wait for.
MAX_HEADER_BYTES = 8192  # h11's limit on a request's head
HEADER_TIMEOUT_S = 10  # a connection that has not sent a whole head by then is closed
BODY_TIMEOUT_S = 10  # a body not whole by then: 408
KEEP_ALIVE_S = 5
MAX_CONNECTIONS_PER_SOURCE = 64
UNAUTHENTICATED = "not authenticated"


class RefusalLog:
    """Counts refused requests and says so at most once a minute: a flood of forged
    requests must not become a flood of log lines."""

    def __init__(self, every_s=60, out=None):
        self.every_s = every_s
        self.out = out or sys.stderr
        self.count = 0
        self.total = 0
        self._since = time.monotonic()

    def refused(self):
        self.count += 1
        self.total += 1
        now = time.monotonic()
        if now - self._since >= self.every_s:
            self.out.write(
                "tools/backend: %d unauthenticated requests refused in the last %d s\n"
                % (self.count, now - self._since)
            )
            self.count = 0
            self._since = now


def make_app(db, docs=False):
    """The HTTP API over a LedgerDB. Every terminal route depends on `caller` (the request
    authenticated before its body is read); /docs and /openapi.json only with docs=True."""
    import hashlib
    from typing import Annotated

    from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
    from pydantic import BaseModel
    from starlette.concurrency import run_in_threadpool

    from tools.host.ledgerdb import EMPTY_BODY_HASH, AuthError, Caller, StaleRequest

    class BatchReply(BaseModel):
        ack: int
        stored: int
        duplicates: int
        quarantined: int
        refused: int
        server_time: int
        config: int
        blacklist: int
        commands: int
        blacklist_whole: bool

    class Versions(BaseModel):
        server_time: int
        config: int
        blacklist: int
        commands: int
        blacklist_whole: bool

    refusals = RefusalLog()
    unauthorized = {401: {"description": "not authenticated (the same for every terminal ID)"}}

    def signed(caller, payload, status=200):
        """A JSON reply tagged for the request it answers (X-OneTill-Reply)."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        return Response(
            body,
            status_code=status,
            media_type="application/json",
            headers={"X-OneTill-Reply": caller.reply_tag(body).hex()},
        )

    def refuse():
        refusals.refused()
        return HTTPException(401, UNAUTHENTICATED, headers={"WWW-Authenticate": "OneTill"})

    async def caller(tid: str, request: Request):
        """The authenticated terminal of a request (a dependency of every terminal route):
        401, with nothing read past the head, unless the request is signed with the
        terminal's request key and its counter is new."""
        scope = request.scope
        path = scope["path"]
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode("latin-1")
        try:
            return await run_in_threadpool(
                db.authenticate,
                tid,
                request.method,
                path,
                request.headers.get("x-onetill-status", ""),
                request.headers.get("x-onetill-auth"),
            )
        except StaleRequest as exc:
            raise Stale(exc) from None
        except AuthError:
            raise refuse() from None

    class Stale(Exception):
        def __init__(self, error):
            self.error = error

    Authenticated = Annotated[Caller, Depends(caller)]  # noqa: N806  (every terminal route)

    app = FastAPI(
        title="OneTill back end",
        version="1",
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )

    @app.exception_handler(Stale)
    async def stale(request, exc):
        # A replay, or a terminal whose counter fell behind: told where the counter is, in
        # a tagged reply only that terminal can check.
        refusals.refused()
        return signed(exc.error.caller, {"detail": "stale request", "last": exc.error.last}, 401)

    async def body_of(request, who, limit, what):
        """The body, at most `limit` bytes (413 from Content-Length before reading a
        byte), whole within BODY_TIMEOUT_S (408), and matching the hash it was signed
        with (401)."""
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/octet-stream":
            raise HTTPException(415, "send %s as application/octet-stream" % what)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise HTTPException(413, "%s larger than %d bytes" % (what, limit))

        async def read():
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise HTTPException(413, "%s larger than %d bytes" % (what, limit))
            return bytes(body)

        try:
            body = await asyncio.wait_for(read(), BODY_TIMEOUT_S)
        except TimeoutError:
            raise HTTPException(408, "%s not sent within %d s" % (what, BODY_TIMEOUT_S)) from None
        if hashlib.sha256(body).digest() != who.body_hash:
            raise refuse()
        return body

    def no_body(who):
        if who.body_hash != EMPTY_BODY_HASH:
            raise refuse()

    @app.get("/v1/health")
    def health() -> dict:
        return {"ok": True, "server_time": int(time.time())}

    @app.post(
        "/v1/terminals/{tid}/records",
        response_model=BatchReply,
        responses={
            **unauthorized,
            400: {"description": "an empty batch"},
            404: {"description": "unknown terminal"},
            408: {"description": "the batch did not arrive in time"},
            413: {"description": "batch larger than 64 KiB"},
            415: {"description": "not application/octet-stream"},
        },
        openapi_extra=_binary_body(
            MAX_BATCH_BYTES, "sealed records exactly as the terminal's queue stores them"
        ),
    )
    async def records(tid: str, request: Request, who: Authenticated) -> BatchReply:
        """Sealed records exactly as the terminal's queue stores them (binary body)."""
        body = await body_of(request, who, MAX_BATCH_BYTES, "the batch")
        if not body:
            raise HTTPException(400, "an empty batch")
        status = request.headers.get("x-onetill-status", "")

        def work():
            result = db.ingest(tid, body, who, status)
            result.update(db.versions(tid))
            result["blacklist_whole"] = db.blacklist_whole(tid)
            return result

        try:
            # Key derivation is CPU work and SQLite blocks: off the event loop, on this
            # thread's own connection.
            result = await run_in_threadpool(work)
        except IngestError as exc:
            raise HTTPException(404, str(exc)) from None
        result["server_time"] = int(time.time())
        return signed(who, result)

    @app.get(
        "/v1/terminals/{tid}/versions",
        response_model=Versions,
        responses={**unauthorized, 404: {"description": "unknown terminal"}},
    )
    async def terminal_versions(tid: str, request: Request, who: Authenticated) -> Versions:
        """The newest config, blacklist and command versions for a terminal (a poll: the
        X-OneTill-Status heartbeat is kept as with a batch)."""
        no_body(who)
        status = request.headers.get("x-onetill-status", "")

        def work():
            result = db.poll(tid, who, status)
            result["blacklist_whole"] = db.blacklist_whole(tid)
            return result

        try:
            result = await run_in_threadpool(work)
        except IngestError as exc:
            raise HTTPException(404, str(exc)) from None
        result["server_time"] = int(time.time())
        return signed(who, result)

    def document_route(kind):
        async def document(
            tid: str, who: Authenticated, since: int = Query(0, ge=0, le=0xFFFFFFFF)
        ):
            no_body(who)

            def work():
                db.take(who)
                return db.sealed_document(tid, DOCUMENT_KINDS[kind], since)

            try:
                body = await run_in_threadpool(work)
            except IngestError as exc:
                raise HTTPException(404, str(exc)) from None
            if body is None:
                raise HTTPException(404, "no %s for %s" % (kind, tid))
            return Response(body, media_type="application/octet-stream")

        app.get(
            "/v1/terminals/{tid}/" + kind,
            name="document_" + kind,
            description="The terminal's %s document, encrypted and MACed with its downlink key "
            "(config: the newest; blacklist: the delta from version `since`; commands: those "
            "after id `since`)." % kind,
            response_class=Response,
            responses={
                200: {
                    "description": "a sealed document (pos.downlink)",
                    "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                },
                **unauthorized,
                404: {"description": "unknown terminal, or no such document"},
            },
        )(document)

    for kind in DOCUMENT_KINDS:
        document_route(kind)

    @app.post(
        "/v1/terminals/{tid}/faults",
        responses={
            **unauthorized,
            400: {"description": "an empty body"},
            404: {"description": "unknown terminal"},
            408: {"description": "the body did not arrive in time"},
            413: {"description": "larger than 4 KiB"},
            415: {"description": "not application/octet-stream"},
        },
        openapi_extra=_binary_body(MAX_FAULT_LOG_BYTES, "the tail of the fault log"),
    )
    async def terminal_faults(tid: str, request: Request, who: Authenticated) -> dict:
        """The tail of the terminal's fault log (the faultlog command)."""
        body = await body_of(request, who, MAX_FAULT_LOG_BYTES, "the fault log")
        if not body:
            raise HTTPException(400, "an empty fault log")
        try:
            await run_in_threadpool(db.store_faults, tid, body.decode("utf-8", "replace"), who)
        except IngestError as exc:
            raise HTTPException(404, str(exc)) from None
        return signed(who, {"ok": True})

    app.state.refusals = refusals
    return app


def _binary_body(max_bytes, description):
    """The OpenAPI request body of an endpoint that takes raw bytes."""
    schema = {"type": "string", "format": "binary", "minLength": 1, "maxLength": max_bytes}
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/octet-stream": {"schema": schema}},
        }
    }


def guarded_protocol():
    """uvicorn's h11 protocol with what it lacks against strangers: a deadline for a
    request's head (a connection that sends nothing, or a byte at a time, is closed) and a
    cap on connections from one address."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._head_deadline = None
            peer = self.client[0] if self.client else None
            same = sum(1 for c in self.connections if c.client and c.client[0] == peer)
            if peer is not None and same > MAX_CONNECTIONS_PER_SOURCE:
                transport.close()
                return
            self._arm()

        def _arm(self):
            self._head_deadline = self.loop.call_later(HEADER_TIMEOUT_S, self._head_too_slow)

        def _disarm(self):
            if self._head_deadline is not None:
                self._head_deadline.cancel()
                self._head_deadline = None

        def _head_too_slow(self):
            self._head_deadline = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

        def data_received(self, data):
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._disarm()

        def on_response_complete(self):
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._disarm()
                self._arm()

        def connection_lost(self, exc):
            self._disarm()
            super().connection_lost(exc)

    return GuardedH11Protocol


def make_certs(out, hosts=("localhost", "127.0.0.1")):
    """A throwaway CA and a server certificate for `hosts` (names or IP addresses): PEM for
    uvicorn, the CA as DER for the terminal (MicroPython takes DER only)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    os.makedirs(out, mode=0o700, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "OneTill test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([_alt_name(h) for h in hosts]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = {
        "ca.der": ca.public_bytes(serialization.Encoding.DER),
        "ca.pem": ca.public_bytes(pem),
        "server.pem": cert.public_bytes(pem),
        "server.key": key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    }
    for name, data in files.items():
        path = os.path.join(out, name)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(data)
    return files


def _alt_name(host):
    import ipaddress

    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _end_with_parent(parent_pid):
    """For a child's preexec_fn: the child gets SIGTERM when its parent dies, even by kill -9
    (Linux PR_SET_PDEATHSIG), so a killed simulator leaves no back end behind."""

    import ctypes
    import signal

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls

    def arm():
        prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != parent_pid:  # the parent died before the line above
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


class Server:
    """`tools/backend serve` in a child process on a free loopback port, until stop().
    For the simulator, the benchmarks and the tests: one way to start and wait for it."""

    def __init__(self, db_path, bdk_file, cert_dir, timeout_s=15):
        import socket
        import ssl
        import subprocess
        import urllib.request

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = "https://127.0.0.1:%d" % self.port
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tools.host.backend",
                "serve",
                "--db",
                db_path,
                "--bdk-file",
                bdk_file,
                "--port",
                str(self.port),
                "--tls-cert",
                os.path.join(cert_dir, "server.pem"),
                "--tls-key",
                os.path.join(cert_dir, "server.key"),
            ],
            cwd=ROOT,
            preexec_fn=_end_with_parent(os.getpid()),
        )
        context = ssl.create_default_context(cafile=os.path.join(cert_dir, "ca.pem"))
        # A readiness probe: the CA chain is checked, the name not (some test servers are
        # made with certificates for other hosts on purpose).
        context.check_hostname = False
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(self.url + "/v1/health", context=context, timeout=1)
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise OSError("the back end did not start on port %d" % self.port) from None
                time.sleep(0.1)

    def stop(self):
        import subprocess

        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def read_bdk(path):
    try:
        with open(path) as source:
            bdk = unhexlify(source.read().strip())
    except (OSError, ValueError) as exc:
        raise CommandError("cannot read the BDK from %s: %s" % (path, exc)) from None
    if len(bdk) != 16:
        raise CommandError("the BDK in %s must be 16 bytes" % path)
    return bdk


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
            out.write(
                "  Link: %s unsent, oldest %s s, counter %s, heap %s, firmware %s "
                "(heard %s)\n"
                % (
                    fields.get("depth", "?"),
                    fields.get("oldest_s", "?"),
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
    out.write("Quarantined records (not counted as money): %d\n" % report["quarantined"])


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


def card_tokens(cards, token_key_file):
    """6-byte tokens of card numbers (tokenised as the terminal does, with the card-token
    key) or of token:HEX arguments; the card numbers themselves go nowhere."""
    from pos.card import DigitBuffer, Tokenizer, luhn_ok

    tokenizer = None
    tokens = []
    for card in cards:
        if card.startswith("token:"):
            try:
                token = unhexlify(card[6:])
            except ValueError:
                token = b""
            if len(token) != 6:
                raise DownlinkError("a token is token: and 12 hex digits, not %s" % card)
            tokens.append(token)
            continue
        digits = DigitBuffer(19)
        if not 12 <= len(card) <= 19 or not digits.set(card) or not luhn_ok(digits.view()):
            raise DownlinkError("not a card number (12 to 19 digits, Luhn): %s" % _masked(card))
        if tokenizer is None:
            if not token_key_file:
                raise DownlinkError("card numbers need --token-key-file (the card-token key)")
            tokenizer = Tokenizer(read_key(token_key_file, "card-token key"))
        tokens.append(bytes(tokenizer.token(digits.view(), bytearray(6))))
        digits.wipe()
    return sorted(set(tokens))


def _masked(card):
    return "*" * max(0, len(card) - 4) + card[-4:]


def read_key(path, what):
    try:
        with open(path) as source:
            key = unhexlify(source.read().strip())
    except (OSError, ValueError) as exc:
        raise DownlinkError("cannot read the %s from %s: %s" % (what, path, exc)) from None
    if len(key) != 16:
        raise DownlinkError("the %s in %s must be 16 bytes" % (what, path))
    return key


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
            print("config %d for %s stored: the terminal fetches it" % (version, args.terminal))
        elif args.command == "blacklist":
            tokens = card_tokens(args.cards, args.token_key_file)
            if args.action == "add":
                version = db.change_blacklist(add=tokens)
            else:
                version = db.change_blacklist(remove=tokens)
            print(
                "blacklist %d: %d %s"
                % (version, len(tokens), "added" if args.action == "add" else "removed")
            )
        else:
            number = db.add_command(args.terminal, args.name)
            print("command %d (%s) queued for %s" % (number, args.name, args.terminal))
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
    db = LedgerDB(args.db, mode="read")  # a report never writes, nor makes a ledger
    try:
        result = db.report(args.merchant)
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
    bdk = read_bdk(args.bdk_file)
    db = LedgerDB(args.db, bdk, mode="write")  # terminals add makes the ledger first
    import uvicorn

    uvicorn.run(
        make_app(db, docs=args.docs),
        host=args.host,
        port=args.port,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
        # Not "warning": uvicorn warns once per malformed request, which a stranger could
        # turn into a flood of log lines (refusals are counted by RefusalLog instead).
        log_level="error",
        http=guarded_protocol(),
        timeout_keep_alive=KEEP_ALIVE_S,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
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
    serve.add_argument("--bdk-file", required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument("--tls-cert", required=True)
    serve.add_argument("--tls-key", required=True)
    serve.add_argument("--docs", action="store_true", help="serve /docs and /openapi.json")
    report = commands.add_parser("report", help="per-merchant totals and settlements")
    report.add_argument("--db", required=True)
    report.add_argument("--merchant", type=int)
    report.add_argument("--json", action="store_true")
    config = commands.add_parser("config", help="push a config (merchants, cashiers, limits)")
    config.add_argument("action", choices=["set"])
    config.add_argument("--db", required=True)
    config.add_argument("--terminal", required=True)
    config.add_argument("file", help='{"merchants": <merchants.json>, "cashiers": <...>}')
    blacklist = commands.add_parser("blacklist", help="block or unblock cards everywhere")
    blacklist.add_argument("action", choices=["add", "remove"])
    blacklist.add_argument("--db", required=True)
    blacklist.add_argument(
        "--token-key-file", help="the card-token key (32 hex digits) to tokenise card numbers"
    )
    blacklist.add_argument("cards", nargs="+", help="card numbers, or token:12HEX")
    command = commands.add_parser("command", help="queue a command for a terminal")
    command.add_argument("name", choices=["settle", "faultlog"])
    command.add_argument("--db", required=True)
    command.add_argument("--terminal", required=True)
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
