"""The HTTP API (FastAPI): every terminal route depends on the authenticated caller; the
bounds on what a stranger can make the back end hold or wait for."""

import asyncio
import json
import sys
import time

from tools.host.backend.documents import DOCUMENT_KINDS, MAX_FAULT_LOG_BYTES
from tools.host.backend.errors import (
    IngestError,
)
from tools.host.backend.ingest import MAX_BATCH_BYTES

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


def make_app(db, docs=False, office=False, token_key_file=None):
    """The HTTP API over a LedgerDB. Every terminal route depends on `caller` (the request
    authenticated before its body is read); /docs and /openapi.json only with docs=True;
    the back office's pages under /office with office=True (tools/host/backend/office)."""
    import hashlib
    from typing import Annotated

    from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
    from pydantic import BaseModel
    from starlette.requests import ClientDisconnect

    from tools.host.backend.auth import EMPTY_BODY_HASH, AuthError, Caller, StaleRequest
    from tools.host.backend.storage import StoreUnavailable

    read_row, write = ledger_access(db)

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
        release: int
        keys: int
        blacklist_whole: bool

    class Versions(BaseModel):
        server_time: int
        config: int
        blacklist: int
        commands: int
        release: int
        keys: int
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
            return await read_row(
                db.authenticate,
                tid,
                request.method,
                path,
                request.headers.get("x-onetill-status", ""),
                request.headers.get("x-onetill-auth"),
            )
        except StaleRequest:
            raise
        except AuthError:
            raise refuse() from None

    Authenticated = Annotated[Caller, Depends(caller)]  # noqa: N806  (every terminal route)

    app = FastAPI(
        title="OneTill back end",
        version="1",
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )

    @app.exception_handler(StoreUnavailable)
    async def unavailable(request, exc):
        # The database is restarting or out of reach: nothing was stored by this request,
        # and the terminal keeps its records and sends them again.
        return Response(
            json.dumps({"detail": "the ledger is unavailable; send again later"}),
            status_code=503,
            media_type="application/json",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(StaleRequest)
    async def stale(request, exc):
        # A replay, a terminal whose counter fell behind, or a copy of a request that another
        # one signed later overtook on its way to the ledger (several workers, or threads):
        # told where the counter is, in a tagged reply only that terminal can check.
        refusals.refused()
        return signed(exc.caller, {"detail": "stale request", "last": exc.last}, 401)

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
            try:
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > limit:
                        raise HTTPException(413, "%s larger than %d bytes" % (what, limit))
            except ClientDisconnect:
                # Gone before its body was whole (a terminal's timeout, a stranger): nothing
                # to answer and nothing to log (a traceback each would be a flood of lines).
                raise HTTPException(400, "%s cut short" % what) from None
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
            result.update(db.offer(tid))
            return result

        try:
            # Key derivation is CPU work and the database blocks: off the event loop.
            result = await write(work)
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
            db.poll(tid, who, status)
            return db.offer(tid)

        try:
            result = await write(work)
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
                body = await write(work)
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
            "after id `since`; keys: the newest key generation offered, pos.keyrot)." % kind,
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

    @app.get(
        "/v1/terminals/{tid}/release",
        response_class=Response,
        responses={
            200: {
                "description": "up to 8 KiB of the release file from offset (pos.update)",
                "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            },
            **unauthorized,
            404: {"description": "unknown terminal, or that release is not offered to it"},
        },
    )
    async def release_chunk(
        tid: str,
        who: Authenticated,
        version: int = Query(ge=1, le=0xFFFFFFFF),
        offset: int = Query(0, ge=0, le=0xFFFFFFFF),
    ):
        """A piece of the release offered to this terminal. Not tagged: the terminal uses
        nothing of it before the whole file passes the release signature (pos.release)."""
        no_body(who)

        def work():
            db.take(who)
            return db.release_chunk(tid, version, offset)

        try:
            body = await write(work)
        except IngestError as exc:
            raise HTTPException(404, str(exc)) from None
        if not body:
            raise HTTPException(404, "release %d is not offered to %s" % (version, tid))
        return Response(body, media_type="application/octet-stream")

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
            # NUL as the replacement character too, as undecodable bytes are: PostgreSQL's
            # text refuses it (a 500 there, found by the spec fuzzing), and both stores must
            # keep the same text.
            text = body.decode("utf-8", "replace").replace("\x00", "\ufffd")
            await write(lambda: db.store_faults(tid, text, who))
        except IngestError as exc:
            raise HTTPException(404, str(exc)) from None
        return signed(who, {"ok": True})

    app.state.refusals = refusals
    if office:
        from tools.host.backend.office import mount

        mount(app, db, token_key_file)
    return app


def ledger_access(db):
    """How a worker reads from and writes to the ledger: `await read_row(fn, *args)` for the
    request check (one row by key), `await write(work)` for what changes the ledger.

    SQLite lets one writer into the file at a time. Threads that race for it wait in SQLite's
    busy handler, which sleeps and retries (1 ms growing to 100 ms between tries, first come
    not first served): under load that waiting, not the work, made the batch latency's p99
    seconds (tools/bench uplink). So on SQLite a worker's writes queue for one thread of
    their own, which commits every write waiting in one transaction (group commit: one
    fsync for the group), and the workers (processes) meet at the ledger's writer lock
    (flock, sqlite_store.py), woken when it is let go. Its
    reads (WAL: they never wait for the writer) run on the event loop: a row by key takes
    tens of microseconds, less than handing it to a thread and back.
    PostgreSQL locks a terminal's row, not the database, and flushes concurrent commits
    together, and every query is a round trip: there both run on the thread pool."""
    from starlette.concurrency import run_in_threadpool

    from tools.host.backend.writer import GroupWriter

    store = getattr(db, "_store", None)
    if getattr(store, "name", "sqlite") != "sqlite":
        return run_in_threadpool, run_in_threadpool

    async def read_row(function, *args):
        return function(*args)

    # Every write waiting when the thread is free goes into one transaction and one COMMIT
    # (group commit, tools/host/backend/writer.py).
    return read_row, GroupWriter(store.transactions).write


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
    cap on connections from one address (tools/host/backend/protocol.py: a module of its
    own so that worker processes can name it)."""
    from tools.host.backend.protocol import GuardedH11Protocol

    return GuardedH11Protocol


# How `serve --workers N` tells its worker processes what to serve: uvicorn starts each
# from an import string, so the ledger and the BDK file's path (never the key) go by name.
ENV_DB = "ONETILL_BACKEND_DB"
ENV_BDK_FILE = "ONETILL_BACKEND_BDK_FILE"
ENV_DOCS = "ONETILL_BACKEND_DOCS"
ENV_TOKEN_KEY_FILE = "ONETILL_BACKEND_TOKEN_KEY_FILE"
ENV_SERVE_PID = "ONETILL_BACKEND_SERVE_PID"


def app_from_environment():
    """The app of one worker process of `serve --workers N` (uvicorn's factory): its own
    LedgerDB over the shared ledger (SQLite file or PostgreSQL URL), the BDK read from its
    file."""
    import os

    from tools.host.backend.cli import read_bdk
    from tools.host.backend.ledger import LedgerDB
    from tools.host.backend.server import _end_with_parent

    # A worker ends with the process that started it: the serve command killed with kill -9
    # must not leave workers serving the port with nobody to restart or stop them. Its pid
    # comes from the environment, not os.getppid(): a worker still importing when the serve
    # command was killed would read the pid of its new parent (init) and never end.
    _end_with_parent(int(os.environ[ENV_SERVE_PID]))()
    keyring = read_bdk(os.environ[ENV_BDK_FILE].split(os.pathsep))
    db = LedgerDB(os.environ[ENV_DB], keyring, mode="write")
    return make_app(
        db,
        docs=os.environ.get(ENV_DOCS) == "1",
        office=True,
        token_key_file=os.environ.get(ENV_TOKEN_KEY_FILE) or None,
    )
