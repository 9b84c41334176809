"""The back end's ledger: storage (SQLite or PostgreSQL, storage.py) of terminals, their
sealed records and the per-merchant totals, and the ingest rule that stores every record
exactly once.

Ingest takes a batch exactly as the terminal's queue stores it (frames of length byte, body,
CRC-32), checks each frame's CRC, rebuilds the record's keys from the BDK, the terminal's IK
ID and the record's counter (pos.dukpt), checks the tag, decrypts, and stores the record
under (terminal, counter) in one transaction for the batch. A record whose tag does not
check is quarantined, never counted as money, and does not hold up the records after it. A
frame that does not parse (bad length or CRC, cut short) ends the batch there.

The answer's ack is the highest counter below which every record of the batch is durably
here, as money or in the terminal's kept quarantine: the terminal reclaims exactly that, and
the same batch sent again is stored once. Only a frame whose tag checks can move the ack (a
forged frame's counter is the forger's choice); a counter far beyond the terminal's last
known one, or not above the frame before it, ends the batch unstored.

Every request of a terminal is authenticated (pos.uplink: a request key derived from the
BDK and the terminal's IK ID, a counter above the last one seen, the body's hash, the
heartbeat): authenticate() checks a request before its body is read, and the counter is
taken in the same transaction as what the request changes, so a replay changes nothing.
The back end holds no lock of its own: SQLite queues writers (one connection per thread,
WAL: readers do not wait); PostgreSQL locks the terminal's row for its batch.
"""

from tools.host.backend.auth import AuthMixin
from tools.host.backend.autoblocks import AutoBlockMixin
from tools.host.backend.documents import DocumentsMixin
from tools.host.backend.ingest import IngestMixin
from tools.host.backend.releases import ReleasesMixin
from tools.host.backend.reports import ReportsMixin
from tools.host.backend.rotation import RotationMixin
from tools.host.backend.storage import Storage


class LedgerDB(
    IngestMixin,
    DocumentsMixin,
    ReleasesMixin,
    AutoBlockMixin,
    RotationMixin,
    ReportsMixin,
    AuthMixin,
    Storage,
):
    """The ledger the API, the CLI and the tools use: storage, auth, ingest, downlink and
    reports, one module each, over the store `--db` names (an SQLite file or a
    postgresql:// URL)."""
