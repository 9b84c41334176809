"""Automatic blocks: a terminal's BLOCK records (pos.autoblock) and the operator's policy for
the fleet blacklist.

A terminal blocks a card on itself at once; the back end decides whether the fleet follows,
by the policy `auto_block` (in the settings table, `tools/backend blacklist policy`):

    propagate   the token joins the fleet blacklist in the next version, in the same
                transaction as the BLOCK record is stored (so every terminal's next sync
                fetches it)
    review      (the default) it waits in a list the operator accepts or rejects
                (`tools/backend blacklist review`); accepted, it joins the fleet list

Every block is reported with its evidence: the terminal, and the declines of that card
before it (merchants, times, reasons) from the records the terminal sent. A block a
supervisor lifted on the terminal (FLAG_LIFTED) is reported too; the fleet list is lifted
by the operator as any entry is (`tools/backend blacklist remove token:HEX`).
"""

import time

from pos.autoblock import BLOCK, FLAG_LIFTED
from pos.record import DECLINE
from pos.risk import REASON_TEXT
from tools.host.backend.errors import DownlinkError

POLICIES = ("propagate", "review")
_DEFAULT_POLICY = "review"
_EVIDENCE_S = 24 * 3600  # declines of the card this long before its block are its evidence


def reason_words(code):
    if code < len(REASON_TEXT) // 16:
        return REASON_TEXT[code * 16 : code * 16 + 16].rstrip(b"\0").decode()
    return "reason %d" % code


class AutoBlockMixin:
    """LedgerDB's automatic blocks."""

    def auto_block_policy(self):
        row = self._db.execute("SELECT value FROM settings WHERE name = 'auto_block'").fetchone()
        return row[0] if row else _DEFAULT_POLICY

    def set_auto_block_policy(self, policy):
        if policy not in POLICIES:
            raise DownlinkError("auto_block policy is propagate or review, not %s" % policy)

        def store(db):
            db.execute(
                "INSERT INTO settings (name, value) VALUES ('auto_block', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (policy,),
            )

        self._transaction(store)

    def _note_blocks(self, db, tid, rows):
        """In ingest's transaction: the BLOCK records of a batch (rows as stored)."""
        blocks = [row for row in rows if row[2] == BLOCK]
        if not blocks:
            return
        row = db.execute("SELECT value FROM settings WHERE name = 'auto_block'").fetchone()
        policy = row[0] if row else _DEFAULT_POLICY
        version = None
        now = int(time.time())
        for block in blocks:
            counter, flags, token = block[1], block[12], bytes(block[13])
            lifted = 1 if flags & FLAG_LIFTED else 0
            status = "lifted on the terminal" if lifted else policy
            listed = None
            if not lifted and policy == "propagate":
                if version is None:
                    version = self._next(db, "blacklist")
                db.execute(
                    "INSERT INTO blacklist VALUES (?, ?, NULL) ON CONFLICT (token) DO UPDATE SET "
                    "added = excluded.added, removed = NULL WHERE blacklist.removed IS NOT NULL",
                    (token, version),
                )
                listed = version
                status = "propagated"
            elif not lifted:
                status = "waiting for review"
            db.execute(
                "INSERT INTO auto_blocks VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (tid, counter) DO NOTHING",
                (tid, counter, token, lifted, status, listed, now if listed else None),
            )

    def review_auto_blocks(self, accept=(), reject=()):
        """Decide blocks waiting for review, by token; returns the new blacklist version
        (None if nothing joined the list). A token not waiting is refused."""
        waiting = {
            bytes(r[0])
            for r in self._db.execute(
                "SELECT token FROM auto_blocks WHERE status = 'waiting for review'"
            )
        }
        for token in list(accept) + list(reject):
            if bytes(token) not in waiting:
                raise DownlinkError("token:%s is not waiting for review" % bytes(token).hex())
        if set(accept) & set(reject):
            raise DownlinkError("the same token accepted and rejected")

        def store(db):
            now = int(time.time())
            version = self._next(db, "blacklist") if accept else None
            for token in accept:
                db.execute(
                    "INSERT INTO blacklist VALUES (?, ?, NULL) ON CONFLICT (token) DO UPDATE SET "
                    "added = excluded.added, removed = NULL WHERE blacklist.removed IS NOT NULL",
                    (bytes(token), version),
                )
            for tokens, status in ((accept, "accepted"), (reject, "rejected")):
                for token in tokens:
                    db.execute(
                        "UPDATE auto_blocks SET status = ?, blacklist_version = ?, decided = ? "
                        "WHERE token = ? AND status = 'waiting for review'",
                        (status, version if status == "accepted" else None, now, bytes(token)),
                    )
            return version

        return self._transaction(store)

    def auto_blocks_report(self):
        """Every automatic block (and lift) with its evidence, oldest first."""
        db = self._db
        out = []
        # Oldest first: by when the BLOCK record was stored, then terminal and counter, the
        # same on every store (no insertion order to read on PostgreSQL, as SQLite's rowid).
        blocks = db.execute(
            "SELECT a.tid, a.counter, a.token, a.lifted, a.status, a.blacklist_version, "
            "r.received FROM auto_blocks a LEFT JOIN records r "
            "ON r.tid = a.tid AND r.counter = a.counter"
        ).fetchall()
        blocks.sort(key=lambda b: (b[6] or 0, b[0], b[1]))
        for tid, counter, token, lifted, status, listed, _ in blocks:
            row = db.execute(
                "SELECT time, merchant, cashier, amount_minor, reference, last_four FROM records"
                " WHERE tid = ? AND counter = ?",
                (tid, counter),
            ).fetchone()
            when, merchant, cashier, declines, reasons, last_four = row
            evidence = []
            if not lifted:
                since = when - _EVIDENCE_S if when else 0
                for d_counter, d_time, d_merchant, d_reason in db.execute(
                    "SELECT counter, time, merchant, reason FROM records WHERE tid = ? AND "
                    "kind = ? AND token = ? AND counter < ? AND (time >= ? OR time = 0) "
                    "ORDER BY counter",
                    (tid, DECLINE, bytes(token), counter, since),
                ):
                    evidence.append(
                        {
                            "counter": d_counter,
                            "time": d_time,
                            "merchant": d_merchant,
                            "reason": reason_words(d_reason),
                        }
                    )
            out.append(
                {
                    "terminal": tid,
                    "counter": counter,
                    "token": bytes(token).hex(),
                    "last_four": last_four,
                    "lifted": bool(lifted),
                    "by_cashier": cashier,
                    "time": when,
                    "merchant": merchant,
                    "declines": declines,
                    "reasons": [reason_words(c) for c in range(32) if reasons >> c & 1],
                    "status": status,
                    "blacklist_version": listed,
                    "evidence": evidence,
                }
            )
        return out
