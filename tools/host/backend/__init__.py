"""The OneTill back end, one module per concern:

api.py        the HTTP API (FastAPI), authentication as a dependency, the bounds
auth.py       request signatures and the reply tag (pos.uplink)
storage.py    the storage interface, migrations (migrations/NNNN_*.sql), terminals
sqlite_store.py    SQLite (a file, the embedded default)
postgres_store.py  PostgreSQL (psycopg 3 and its pool: several processes and hosts)
ingest.py     frames, DUKPT keys, tags, exactly-once storage and quarantine
documents.py  the downlink: config, blacklist, commands; fault logs
reports.py    per-merchant reports, built and printed
ledger.py     LedgerDB: the above over one ledger
server.py     the back end in a child process (Server), throwaway certificates
cli.py        tools/backend's commands
"""

import os
import sys

_LIB = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
    "lib",
)
if _LIB not in sys.path:
    sys.path.insert(0, _LIB)

from tools.host.backend.api import (  # noqa: E402
    BODY_TIMEOUT_S,
    HEADER_TIMEOUT_S,
    MAX_CONNECTIONS_PER_SOURCE,
    RefusalLog,
    make_app,
)
from tools.host.backend.auth import AuthError, Caller, StaleRequest, cmac  # noqa: E402
from tools.host.backend.errors import (  # noqa: E402
    CommandError,
    DownlinkError,
    IngestError,
    LedgerError,
    RegistrationError,
)
from tools.host.backend.ledger import LedgerDB  # noqa: E402
from tools.host.backend.server import ROOT, Server, make_certs  # noqa: E402
from tools.host.backend.storage import StoreUnavailable  # noqa: E402

__all__ = [
    "BODY_TIMEOUT_S",
    "HEADER_TIMEOUT_S",
    "MAX_CONNECTIONS_PER_SOURCE",
    "ROOT",
    "AuthError",
    "Caller",
    "CommandError",
    "DownlinkError",
    "IngestError",
    "LedgerDB",
    "LedgerError",
    "RefusalLog",
    "RegistrationError",
    "Server",
    "StaleRequest",
    "StoreUnavailable",
    "cmac",
    "make_app",
    "make_certs",
]
