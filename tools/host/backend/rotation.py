"""Key rotation on the back end: the key generations of each terminal, the rotation document
that brings a terminal its next initial key, and which terminals took it.

Generation 0 is the IK ID a terminal was registered with. `tools/backend keys rotate`
offers each terminal a new generation: a new IK ID (the new BDK's ID and a fresh random
derivation ID); only the IK ID is stored, never a key. When the terminal fetches the
document (pos.keyrot), its new initial key is derived then from the new BDK, which must be
in the serving back end's keyring, and wrapped with AES key wrap (RFC 3394, cryptography's
aes_key_wrap) under the KEK from the terminal's current downlink key, with the new
downlink key beside it.

A generation is installed when the terminal's first request signed with the new downlink
key arrives: that request moves the terminal to the new IK ID, in its own transaction.
Records are opened with every IK ID the terminal has had or been offered (the current one
first), so records sealed before the install stay readable, whenever they arrive.
"""

import os
import time

from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from pos.derive import derive_initial_key
from pos.downlink import derive_downlink_key, seal_document
from pos.keyrot import KIND, derive_kek, pack_payload
from tools.host.backend.errors import DownlinkError, IngestError
from tools.host.backend.keyring import bdk_id
from tools.host.backend.storage import by_terminal


def mark_installed(db, caller):
    """In the transaction of a request signed with an offered generation's key: that
    generation is the terminal's now (and those offered before it are passed over)."""
    generation, ik_id = caller.installs
    db.execute("UPDATE terminals SET ik_id = ? WHERE tid = ?", (ik_id, caller.tid))
    db.execute(
        "UPDATE key_generations SET installed = ? WHERE tid = ? AND generation = ?",
        (int(time.time()), caller.tid, generation),
    )


class RotationMixin:
    """LedgerDB's key generations."""

    def rotate_keys(self, new_bdk, terminals=None):
        """Offer every terminal (or those named) a new generation under new_bdk; returns
        [(tid, generation, IK ID)]. A terminal whose key is from that BDK already, or
        offered one from it, is left as it is."""
        ident = bdk_id(new_bdk)
        known = sorted(row[0] for row in self._db.execute("SELECT tid FROM terminals"))
        if terminals is None:
            terminals = [tid for tid in known if "@" not in tid]
        for tid in terminals:
            if tid not in known:
                raise DownlinkError("no terminal %s in the ledger" % tid)

        def store(db):
            now = int(time.time())
            offered = []
            for tid in terminals:
                current, registered = db.execute(
                    "SELECT ik_id, registered FROM terminals WHERE tid = ?", (tid,)
                ).fetchone()
                db.execute(
                    "INSERT INTO key_generations VALUES (?, 0, ?, ?, ?) "
                    "ON CONFLICT (tid, generation) DO NOTHING",
                    (tid, bytes(current), registered, registered),
                )
                newest = db.execute(
                    "SELECT generation, ik_id FROM key_generations WHERE tid = ? "
                    "ORDER BY generation DESC LIMIT 1",
                    (tid,),
                ).fetchone()
                if bytes(current)[:4] == ident or bytes(newest[1])[:4] == ident:
                    continue
                generation = newest[0] + 1
                ik_id = ident + os.urandom(4)
                db.execute(
                    "INSERT INTO key_generations VALUES (?, ?, ?, ?, NULL)",
                    (tid, generation, ik_id, now),
                )
                offered.append((tid, generation, ik_id))
            return offered

        return self._transaction(store)

    def key_candidates(self, db, tid, current):
        """The IK IDs a record of the terminal may be sealed under: the current one first,
        then those offered and not installed yet (newest first), then the older ones."""
        rows = db.execute(
            "SELECT ik_id, installed FROM key_generations WHERE tid = ? ORDER BY generation DESC",
            (tid,),
        ).fetchall()
        current = bytes(current)
        pending = [bytes(r[0]) for r in rows if r[1] is None and bytes(r[0]) != current]
        older = [bytes(r[0]) for r in rows if r[1] is not None and bytes(r[0]) != current]
        return [current] + pending + older

    def pending_keys(self, tid):
        """[(generation, IK ID)] offered to the terminal and not installed, newest first."""
        return [
            (r[0], bytes(r[1]))
            for r in self._db.execute(
                "SELECT generation, ik_id FROM key_generations WHERE tid = ? AND installed IS "
                "NULL ORDER BY generation DESC",
                (tid,),
            )
        ]

    def sealed_rotation(self, tid):
        """The rotation document of the newest generation offered to the terminal, or None."""
        if self._bdk is None:
            raise IngestError("the back end has no BDK loaded")
        current = self._terminal(tid)
        pending = self.pending_keys(tid)
        if not pending:
            return None
        generation, ik_id = pending[0]
        new_bdk = self._bdk.get(ik_id[:4])
        if new_bdk is None:
            raise IngestError(
                "keys %d for %s: BDK %s is not in this back end's keyring (serve --bdk-file)"
                % (generation, tid, ik_id[:4].hex())
            )
        link_key = derive_downlink_key(self._bdk.bdk_for(current), current)
        keys = derive_initial_key(new_bdk, ik_id) + derive_downlink_key(new_bdk, ik_id)
        wrapped = aes_key_wrap(derive_kek(link_key, generation), keys)
        payload = pack_payload(tid, generation, ik_id, wrapped)
        return seal_document(link_key, KIND, generation, payload)

    def keys_report(self):
        """Per terminal: the generations offered and installed, with their BDK IDs."""
        out = {}
        for tid, generation, ik_id, offered, installed in sorted(
            self._db.execute(
                "SELECT tid, generation, ik_id, offered, installed FROM key_generations"
            ),
            key=lambda row: (row[0], row[1]),
        ):
            entry = out.setdefault(tid, {"offered": 0, "installed": 0, "generations": []})
            entry["generations"].append(
                {
                    "generation": generation,
                    "ik_id": bytes(ik_id).hex(),
                    "bdk_id": bytes(ik_id)[:4].hex(),
                    "offered": offered,
                    "installed": installed,
                }
            )
            entry["offered"] = max(entry["offered"], generation)
            if installed is not None:
                entry["installed"] = max(entry["installed"], generation)
        for tid, ik_id in by_terminal(self._db.execute("SELECT tid, ik_id FROM terminals")):
            entry = out.setdefault(tid, {"offered": 0, "installed": 0, "generations": []})
            entry["bdk_id"] = bytes(ik_id)[:4].hex()
        return out

    def keys_status(self):
        """Where every terminal's keys are: the generation installed and its BDK ID, the
        newest offered, what its heartbeat says (kg=), and whether it is on the newest BDK
        (that of the newest generation offered to any terminal)."""
        db = self._db
        newest = db.execute(
            "SELECT ik_id FROM key_generations WHERE generation > 0 "
            "ORDER BY offered DESC, generation DESC LIMIT 1"
        ).fetchone()
        newest_id = bytes(newest[0])[:4].hex() if newest else None
        beats = self.heartbeats()
        keys = self.keys_report()
        terminals = []
        for (tid,) in by_terminal(db.execute("SELECT tid FROM terminals").fetchall()):
            if "@" in tid:
                continue  # a retired identity (terminals add --replace)
            entry = keys.get(tid, {})
            generations = entry.get("generations", [])
            installed = entry.get("installed", 0)
            offered = entry.get("offered", 0)
            pending = [g for g in generations if g["installed"] is None]
            bdk = entry.get("bdk_id") if installed else "original"
            heard = beats.get(tid, {}).get("status", {}).get("kg")
            terminals.append(
                {
                    "terminal": tid,
                    "installed": installed,
                    "offered": offered,
                    "bdk_id": bdk,
                    "offered_since": time.strftime(
                        "since %Y-%m-%d %H:%M UTC", time.gmtime(pending[-1]["offered"])
                    )
                    if pending
                    else None,
                    "heard": None if heard is None else "generation " + heard,
                    "current": newest_id is None or bdk == newest_id,
                }
            )
        return {"newest_bdk_id": newest_id, "terminals": terminals}
