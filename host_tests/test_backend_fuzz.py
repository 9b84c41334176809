"""The back end's published OpenAPI spec, fuzzed with schemathesis in-process: every
operation answers within its documented responses and never with a server error, whatever
bytes arrive as a batch."""

import os
import tempfile

import schemathesis
from hypothesis import HealthCheck, settings

from tools.host.backend import make_app
from tools.host.ledgerdb import LedgerDB


class CountingDB(LedgerDB):
    """The real ledger, counting the batches that reached it (so the fuzzing is seen to
    exercise the ingest, not only the routing)."""

    batches = 0

    def ingest(self, tid, body):
        if body:
            CountingDB.batches += 1
        return super().ingest(tid, body)


_folder = tempfile.mkdtemp(prefix="onetill-fuzz-")
_db = CountingDB(os.path.join(_folder, "fuzz.db"), bytes(range(16)))
for tid in ("T0001", "0", "A"):  # short IDs the fuzzer is likely to try
    _db.add_terminal(tid, bytes(8))
schema = schemathesis.openapi.from_asgi("/openapi.json", make_app(_db))


@schema.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_spec(case):
    case.call_and_validate()


def test_fuzzing_reached_the_ingest():
    # Runs after the fuzzing above (pytest keeps file order).
    assert CountingDB.batches > 10, CountingDB.batches
