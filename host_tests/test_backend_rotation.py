"""Key rotation on the back end: a keyring of BDKs, `keys rotate` offering each terminal a new
generation, the sealed rotation document (opened here as the terminal opens it), records of
both generations opened, the generation installed by the first request signed with its key,
and `keys status` naming the terminals still on the old BDK."""

import json
import struct
import zlib

from fastapi.testclient import TestClient
from test_backend import BDK, IK_ID, MERCHANTS, Terminal, backend, one_line_refusal

from pos.derive import derive_initial_key
from pos.downlink import _HEADER_SIZE as HEADER_SIZE  # private const()s: CPython keeps them
from pos.downlink import _TAG_SIZE as TAG_SIZE
from pos.downlink import DownlinkError, _Opener, derive_downlink_key
from pos.dukpt import USAGE_DATA_ENCRYPT, USAGE_MAC_GENERATION, DukptTerminal
from pos.keyrot import RotationError, open_payload
from pos.record import CASH, SALE, Record
from pos.seal import Sealer
from tools.host.backend import LedgerDB, make_app
from tools.host.backend.keyring import Keyring, bdk_id
from tools.host.linkclient import TerminalSigner

NEW_BDK = bytes(range(100, 116))


def open_document(key, body):
    """(version, payload) of a sealed document, checked as pos.downlink checks it."""
    opener = _Opener(key, body[:HEADER_SIZE])
    version, size = struct.unpack_from(">II", body, 8)
    plain = b""
    for offset in range(HEADER_SIZE, len(body) - TAG_SIZE, 16):
        plain += bytes(opener.decrypt(body[offset : offset + 16]))
    opener.check(body[-TAG_SIZE:])
    return version, plain[:size]


def frame_of(dukpt, record):
    """A queue frame of a record sealed under dukpt's next counter (as pos.txq frames it)."""
    counter, _, (data_key, mac_key) = dukpt.next_keys((USAGE_DATA_ENCRYPT, USAGE_MAC_GENERATION))
    body = bytes(Sealer().seal(record.pack(), counter, data_key, mac_key))
    head = bytes([len(body)]) + body
    return counter, head + struct.pack("<I", zlib.crc32(head))


def ledger(where, keyring):
    db = LedgerDB(where, keyring)
    db.add_terminal("T0001", IK_ID, MERCHANTS)
    return db


def test_a_rotation_document_carries_the_new_keys_for_this_terminal_only(ledger_at):
    db = ledger(ledger_at, Keyring([BDK, NEW_BDK]))
    db.add_terminal("T0002", bytes.fromhex("b1b2b3b4b5b6b7b8"), MERCHANTS)
    ((tid, generation, new_ik_id), _) = db.rotate_keys(NEW_BDK)
    assert tid == "T0001" and generation == 1 and new_ik_id[:4] == bdk_id(NEW_BDK)
    assert db.versions("T0001")["keys"] == 1
    assert db.rotate_keys(NEW_BDK) == []  # offered already: nothing more
    body = db.sealed_rotation("T0001")
    link_key = derive_downlink_key(BDK, IK_ID)
    version, payload = open_document(link_key, body)
    assert version == 1 and body[5:6] == b"R"
    got = open_payload(payload, "T0001", version, 0, link_key)
    assert got == (
        1,
        new_ik_id,
        derive_initial_key(NEW_BDK, new_ik_id),
        derive_downlink_key(NEW_BDK, new_ik_id),
    )
    for terminal, in_force, words in (
        ("T0002", 0, "another terminal"),
        ("T0001", 1, "generation 1 is in force"),
    ):
        try:
            open_payload(payload, terminal, version, in_force, link_key)
            raise AssertionError("refused")
        except RotationError as exc:
            assert words in str(exc)
    other_key = derive_downlink_key(BDK, bytes.fromhex("b1b2b3b4b5b6b7b8"))
    try:  # the other terminal cannot even open it
        open_document(other_key, body)
        raise AssertionError("refused")
    except DownlinkError:
        pass
    db.close()


def test_records_of_both_generations_open_and_the_first_new_request_installs(ledger_at):
    db = ledger(ledger_at, Keyring([BDK, NEW_BDK]))
    terminal = Terminal()
    terminal.book(SALE, 1, 1000)
    terminal.book(SALE, 2, 2000)
    old_frames = terminal.batch()
    ((_, _, new_ik_id),) = db.rotate_keys(NEW_BDK)
    # The terminal installs generation 1 at counter 3: its next records use the new key.
    dukpt = DukptTerminal.load_initial_key(derive_initial_key(NEW_BDK, new_ik_id), new_ik_id)
    dukpt.skip_past(terminal.ledger.queue.last_counter)
    new_frames = b"".join(
        frame_of(dukpt, Record(SALE, 1, amount, 978, method=CASH, receipt=9))[1]
        for amount in (300, 400)
    )
    client = TestClient(make_app(db))
    signer = TerminalSigner(NEW_BDK, new_ik_id)
    path = "/v1/terminals/T0001/records"
    body = old_frames + new_frames  # queued before the install, and after: one batch
    reply = client.post(
        path,
        content=body,
        headers=dict(
            signer.headers("POST", path, body, "kg=1"),
            **{"Content-Type": "application/octet-stream"},
        ),
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["stored"] == 4 and reply.json()["quarantined"] == 0
    assert reply.json()["keys"] == 0  # installed: nothing more offered
    sales = {e["number"]: e["sales_total_minor"] for e in db.report()["merchants"]}
    assert sales == {1: 1700, 2: 2000}
    keys = db.keys_report()["T0001"]
    assert keys["installed"] == 1 and keys["offered"] == 1
    # The old key no longer signs for this terminal.
    old = TerminalSigner(BDK, IK_ID, nonce=50)
    refused = client.get(
        "/v1/terminals/T0001/versions", headers=old.headers("GET", "/v1/terminals/T0001/versions")
    )
    assert refused.status_code == 401
    db.close()


def test_keys_rotate_and_status_on_the_command_line(tmp_path, ledger_at):
    path = ledger_at
    db = LedgerDB(path, BDK)
    db.add_terminal("T0001", IK_ID, MERCHANTS)
    db.add_terminal("T0002", bytes.fromhex("b1b2b3b4b5b6b7b8"), MERCHANTS)
    db.close()
    key_file = str(tmp_path / "new.key")
    with open(key_file, "w") as out:
        out.write(NEW_BDK.hex() + "\n")
    one_line_refusal(backend("keys", "rotate", "--db", path), "--bdk-file")
    one_line_refusal(
        backend("keys", "rotate", "--db", path, "--bdk-file", str(tmp_path / "none.key")),
        "cannot read the BDK",
    )
    one_line_refusal(
        backend("keys", "rotate", "--db", path, "--bdk-file", key_file, "--terminals", "T9"),
        "no terminal T9",
    )
    rotated = backend(
        "keys", "rotate", "--db", path, "--bdk-file", key_file, "--terminals", "T0001"
    )
    assert rotated.returncode == 0, rotated.stderr
    assert "T0001: generation 1 offered" in rotated.stdout and "T0002" not in rotated.stdout
    status = backend("keys", "status", "--db", path)
    assert status.returncode == 0, status.stderr
    assert "newest BDK: %s" % bdk_id(NEW_BDK).hex() in status.stdout
    lines = {line.split()[0]: line for line in status.stdout.splitlines()[1:]}
    assert "generation 0 installed" in lines["T0001"] and "1 offered" in lines["T0001"]
    assert "STILL ON AN OLD BDK" in lines["T0001"] and "STILL ON AN OLD BDK" in lines["T0002"]
    shown = json.loads(backend("keys", "status", "--db", path, "--json").stdout)
    assert [t["offered"] for t in shown["terminals"]] == [1, 0]


def test_keyrot_and_release_migrations_apply_to_a_ledger_that_has_either(ledger_at):
    """0003_keyrot and 0004_releases were numbered on two branches: a ledger made on either
    (main's 0001, 0002, 0004; keyrot's 0001, 0003) gets what it lacks when a writing command
    opens it, and both features work on it after. On each store in turn."""
    import re

    from tools.host.backend.storage import migration_files, pending

    every = [version for version, _, _ in migration_files()]
    assert {3, 4} <= set(every)
    for generation, missing in ((1, (3,)), (2, (2, 4))):
        db = ledger(ledger_at, [BDK])
        tables = [
            re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", statement).group(1)
            for version, _, statements in migration_files()
            if version in missing
            for statement in statements
            if statement.startswith("CREATE TABLE")
        ]

        def forget(connection, tables=tables, missing=missing):
            for table in tables:
                connection.execute("DROP TABLE %s" % table)
            for version in missing:
                connection.execute("DELETE FROM schema_migrations WHERE version = ?", (version,))

        db._transaction(forget)
        assert pending(db._store) == list(missing)
        db.close()
        new_bdk = bytes([generation]) * 16
        db = LedgerDB(ledger_at, [BDK, new_bdk], mode="write")
        assert pending(db._store) == []
        applied = db._db.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
        assert [row[0] for row in applied] == every
        assert db.rotate_keys(new_bdk)[0][:2] == ("T0001", generation)  # 0003's tables
        assert db.releases() == [] and db.offered_release("T0001") == 0  # 0004's table
        db.close()
