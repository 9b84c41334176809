"""The back end's published OpenAPI spec, fuzzed with schemathesis in-process: every
operation answers within its documented responses and never with a server error, whatever
arrives. Half the requests go as the fuzzer made them (unsigned: every terminal route must
answer 401, never 500), half are signed on the way in as terminal T0001 would sign them,
so the fuzzed batches, paths and queries reach the real ingest behind the authentication.
On SQLite and on PostgreSQL (the `ledger_at` fixture)."""

import hashlib

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tools.host.backend import LedgerDB, make_app
from tools.host.linkclient import TerminalSigner

BDK = bytes(range(16))


class CountingDB(LedgerDB):
    """The real ledger, counting the batches that reached it (so the fuzzing is seen to
    exercise the ingest, not only the routing)."""

    batches = 0

    def ingest(self, tid, body, caller=None, status=None):
        if body:
            CountingDB.batches += 1
        return super().ingest(tid, body, caller, status)


def signing(app, signers):
    """ASGI middleware standing in for the terminals: signs every other terminal request
    as a terminal of `signers` ({tid: TerminalSigner}; T0001 when it names another), over
    the body, path, query and heartbeat exactly as they arrive."""
    state = {"count": 0}

    async def wrapped(scope, receive, send):
        parts = scope.get("path", "").split("/")
        if scope["type"] != "http" or parts[:3] != ["", "v1", "terminals"] or len(parts) < 5:
            return await app(scope, receive, send)
        state["count"] += 1
        if state["count"] % 2:
            return await app(scope, receive, send)
        if parts[3] not in signers:  # signed requests go as a registered terminal
            parts[3] = "T0001"
        signer = signers[parts[3]]
        path = "/".join(parts)
        scope = dict(scope, path=path, raw_path=path.encode())
        messages, body = [], b""
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = scope.get("query_string", b"").decode("latin-1")
        headers = dict(scope["headers"])
        status = headers.get(b"x-onetill-status", b"").decode("latin-1").strip()
        signed = signer.headers(
            scope["method"], path + ("?" + query if query else ""), body, status
        )
        scope["headers"] = [h for h in scope["headers"] if h[0] != b"x-onetill-auth"] + [
            (b"x-onetill-auth", signed["X-OneTill-Auth"].encode())
        ]

        async def replay():
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        return await app(scope, replay, send)

    return wrapped


def fuzzed_site(ledger_at):
    """The back end on the given store (a SQLite path or a PostgreSQL URL) with three
    terminals, behind the signing middleware; its OpenAPI schema for schemathesis."""
    db = CountingDB(ledger_at, BDK)
    signers = {}
    for tid in ("T0001", "0", "A"):  # short IDs the fuzzer is likely to try
        ik_id = hashlib.sha256(tid.encode()).digest()[:8]
        db.add_terminal(tid, ik_id)
        signers[tid] = TerminalSigner(BDK, ik_id)
    app = signing(make_app(db, docs=True), signers)
    return db, schemathesis.openapi.from_asgi("/openapi.json", app)


def test_api_conforms_to_its_spec_and_the_fuzzing_reaches_the_ingest(ledger_at):
    db, schema = fuzzed_site(ledger_at)
    CountingDB.batches = 0
    # Each operation in turn, in one test, rather than schema.parametrize(): that makes one
    # pytest item per operation under a single name, which pytest-xdist (tools/test runs
    # pytest in several processes) takes for one test and runs once.
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8, [op.label for op in operations]
    for operation in operations:
        strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
            GenerationMode.NEGATIVE
        )

        @given(case=strategy)
        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        def conforms(case):
            case.call_and_validate()

        conforms()
    # The fuzzed batches reached the real ingest, not only the routing.
    assert CountingDB.batches > 10, CountingDB.batches
    db.close()
