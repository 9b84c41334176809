"""tools/backend: the OneTill back end: FastAPI over TLS, SQLite, per-merchant reports.

    tools/backend certs --out DIR
    tools/backend terminals add --db FILE --tid T0001 --ik-id HEX [--merchants merchants.json]
    tools/backend serve --db FILE --bdk-file KEY --port 8443 --tls-cert C --tls-key K
    tools/backend report --db FILE [--merchant N] [--json]

The BDK is read from a key file (32 hex digits) that only the back end's user can read
(chmod 600); it is never stored in the database.
"""

import argparse
import datetime
import json
import os
import sys
import time
from binascii import unhexlify

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "lib"))

from tools.host.ledgerdb import MAX_BATCH_BYTES, IngestError, LedgerDB  # noqa: E402


def make_app(db):
    """The HTTP API over a LedgerDB."""
    from fastapi import FastAPI, HTTPException, Request
    from pydantic import BaseModel

    class BatchReply(BaseModel):
        ack: int
        stored: int
        duplicates: int
        quarantined: int
        refused: int
        server_time: int

    import threading

    from starlette.concurrency import run_in_threadpool

    lock = threading.Lock()

    def ingest(tid, body, status):
        with lock:
            result = db.ingest(tid, body)
            if status:
                db.heartbeat(tid, status)
            return result

    app = FastAPI(title="OneTill back end", version="1")

    @app.get("/v1/health")
    def health() -> dict:
        return {"ok": True, "server_time": int(time.time())}

    @app.post(
        "/v1/terminals/{tid}/records",
        response_model=BatchReply,
        responses={
            400: {"description": "an empty batch"},
            404: {"description": "unknown terminal"},
            413: {"description": "batch larger than 64 KiB"},
            415: {"description": "not application/octet-stream"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "sealed records exactly as the terminal's queue stores them",
                "content": {
                    "application/octet-stream": {
                        "schema": {
                            "type": "string",
                            "format": "binary",
                            "minLength": 1,
                            "maxLength": 65536,
                        }
                    }
                },
            }
        },
    )
    async def records(tid: str, request: Request) -> BatchReply:
        """Sealed records exactly as the terminal's queue stores them (binary body)."""
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/octet-stream":
            raise HTTPException(415, "send the batch as application/octet-stream")
        body = await request.body()
        if len(body) > MAX_BATCH_BYTES:
            raise HTTPException(413, "batch larger than %d bytes" % MAX_BATCH_BYTES)
        if not body:
            raise HTTPException(400, "an empty batch")
        try:
            # Key derivation is CPU work and SQLite blocks: off the event loop, one batch
            # at a time on the one connection.
            status = request.headers.get("x-onetill-status", "")
            result = await run_in_threadpool(ingest, tid, body, status)
        except IngestError as exc:
            raise HTTPException(404, str(exc)) from None
        return BatchReply(server_time=int(time.time()), **result)

    return app


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
        raise SystemExit("tools/backend: cannot read the BDK from %s: %s" % (path, exc)) from None
    if len(bdk) != 16:
        raise SystemExit("tools/backend: the BDK in %s must be 16 bytes" % path)
    return bdk


def print_report(report, out):
    for entry in report["merchants"]:
        out.write(
            "%s merchant %d %s %s: sales %d %d, voids %d %d, refunds %d %d, net %d, "
            "declines %d\n"
            % (
                entry["terminal"],
                entry["number"],
                entry["merchant_id"],
                entry["name"],
                entry["sales_count"],
                entry["sales_total_minor"],
                entry["voids_count"],
                entry["voids_total_minor"],
                entry["refunds_count"],
                entry["refunds_total_minor"],
                entry["net_total_minor"],
                entry["declines_count"],
            )
        )
        for z in entry["settlements"]:
            out.write(
                "  Z %d: sales %d %d, refunds %d %d: %s\n"
                % (
                    z["batch"],
                    z["sales_count"],
                    z["sales_total_minor"],
                    z["refunds_count"],
                    z["refunds_total_minor"],
                    "reconciles" if z["reconciles"] else "MISMATCH",
                )
            )
    out.write("quarantined records: %d\n" % report["quarantined"])
    for tid, heartbeat in sorted(report.get("terminals", {}).items()):
        fields = heartbeat["status"]
        out.write(
            "terminal %s: %s unsent, oldest %s s, counter %s, heap %s, firmware %s\n"
            % (
                tid,
                fields.get("depth", "?"),
                fields.get("oldest_s", "?"),
                fields.get("counter", "?"),
                fields.get("heap", "?"),
                fields.get("fw", "?"),
            )
        )


def main(argv):
    parser = argparse.ArgumentParser(prog="tools/backend", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    certs = commands.add_parser("certs", help="make a throwaway CA and server certificate")
    certs.add_argument("--out", required=True)
    terminals = commands.add_parser("terminals", help="register terminals")
    terminals.add_argument("action", choices=["add"])
    terminals.add_argument("--db", required=True)
    terminals.add_argument("--tid", required=True)
    terminals.add_argument("--ik-id", required=True, help="16 hex digits")
    terminals.add_argument("--merchants", help="the terminal's merchants.json")
    serve = commands.add_parser("serve", help="serve the API over TLS")
    serve.add_argument("--db", required=True)
    serve.add_argument("--bdk-file", required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument("--tls-cert", required=True)
    serve.add_argument("--tls-key", required=True)
    report = commands.add_parser("report", help="per-merchant totals and settlements")
    report.add_argument("--db", required=True)
    report.add_argument("--merchant", type=int)
    report.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "certs":
        make_certs(args.out)
        print("wrote ca.der, ca.pem, server.pem, server.key in %s" % args.out)
        return 0
    if args.command == "terminals":
        try:
            ik_id = unhexlify(args.ik_id)
        except ValueError:
            ik_id = b""
        if len(ik_id) != 8:
            parser.error("--ik-id must be 16 hex digits")
        merchants = []
        if args.merchants:
            with open(args.merchants) as source:
                for entry in json.load(source)["merchants"]:
                    merchants.append((entry["number"], entry["merchant_id"], entry["name"]))
        db = LedgerDB(args.db)
        db.add_terminal(args.tid, ik_id, merchants)
        db.close()
        print("terminal %s registered with %d merchants" % (args.tid, len(merchants)))
        return 0
    if args.command == "report":
        db = LedgerDB(args.db)
        result = db.report(args.merchant)
        db.close()
        if args.json:
            json.dump(result, sys.stdout, indent=1)
            sys.stdout.write("\n")
        else:
            print_report(result, sys.stdout)
        return 0
    import uvicorn

    db = LedgerDB(args.db, read_bdk(args.bdk_file))
    uvicorn.run(
        make_app(db),
        host=args.host,
        port=args.port,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
