"""Every query the back office makes; its tables are made by the storage layer's migration
tools/host/backend/migrations/0002_office.sql, on SQLite and PostgreSQL alike.

The office keeps its own tables beside the ledger's, in the same database, and only reads
the ledger's (records, merchants, terminals, heartbeats): a merchant's money is what the
terminals sealed, never a copy the office could let drift.

    users            one login each: role operator or merchant (tied to one merchant ID)
    sessions         a browser's login: the SHA-256 of its cookie (the cookie itself is
                     never stored), its CSRF token, when it started and was last used
    login_failures   failed logins, by name and by address, for the rate limit
    audit            what an operator did, who did it and when
    commission       per merchant ID, rules effective from a local date: basis points of
                     the net and a fixed amount per sale (integer minor units)
    payees           per merchant ID: the account holder's name and IBAN (checked)
    office_settings  the food court's settings: time zone, the payer's account
"""

import time

from pos.autoblock import BLOCK


class OfficeStore:
    """The office's queries over a LedgerDB's connection (one per thread) and transactions."""

    def __init__(self, ledger):
        self.ledger = ledger

    @property
    def _db(self):
        return self.ledger._db

    def _write(self, work):
        return self.ledger._transaction(work)

    # --- users and sessions ---------------------------------------------------------------

    def user(self, name):
        row = self._db.execute(
            "SELECT name, role, merchant_id, password_hash, disabled FROM users WHERE name = ?",
            (name,),
        ).fetchone()
        if row is None:
            return None
        keys = ("name", "role", "merchant_id", "password_hash", "disabled")
        return dict(zip(keys, row, strict=True))

    def users(self):
        rows = self._db.execute(
            "SELECT name, role, merchant_id, disabled, created FROM users ORDER BY name"
        )
        keys = ("name", "role", "merchant_id", "disabled", "created")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def add_user(self, name, role, merchant_id, password_hash):
        def work(db):
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                return False
            db.execute(
                "INSERT INTO users VALUES (?, ?, ?, ?, 0, ?)",
                (name, role, merchant_id, password_hash, int(time.time())),
            )
            return True

        return self._write(work)

    def set_user(self, name, password_hash=None, disabled=None):
        """Change a user's password or disabled flag; either ends every session of theirs.
        Returns False for a user that does not exist."""

        def work(db):
            if not db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                return False
            if password_hash is not None:
                db.execute(
                    "UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name)
                )
            if disabled is not None:
                db.execute("UPDATE users SET disabled = ? WHERE name = ?", (int(disabled), name))
            db.execute("DELETE FROM sessions WHERE user_name = ?", (name,))
            return True

        return self._write(work)

    def start_session(self, digest, user_name, csrf, now, forget_before):
        """A new session; sessions unused since `forget_before` go (they are over)."""

        def work(db):
            db.execute("DELETE FROM sessions WHERE seen < ?", (forget_before,))
            db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)", (digest, user_name, csrf, now, now)
            )

        self._write(work)

    def session(self, digest):
        row = self._db.execute(
            "SELECT s.user_name, s.csrf, s.started, s.seen, u.role, u.merchant_id, u.disabled "
            "FROM sessions s JOIN users u ON u.name = s.user_name WHERE s.digest = ?",
            (digest,),
        ).fetchone()
        if row is None:
            return None
        keys = ("user", "csrf", "started", "seen", "role", "merchant_id", "disabled")
        return dict(zip(keys, row, strict=True))

    def touch_session(self, digest, now):
        self._write(
            lambda db: db.execute("UPDATE sessions SET seen = ? WHERE digest = ?", (now, digest))
        )

    def end_session(self, digest):
        self._write(lambda db: db.execute("DELETE FROM sessions WHERE digest = ?", (digest,)))

    def failures_since(self, user_name, address, since):
        """Failed logins since `since`: (for this name, from this address)."""
        db = self._db
        by_name = db.execute(
            "SELECT COUNT(*) FROM login_failures WHERE user_name = ? AND at >= ?",
            (user_name, since),
        ).fetchone()[0]
        by_address = db.execute(
            "SELECT COUNT(*) FROM login_failures WHERE address = ? AND at >= ?", (address, since)
        ).fetchone()[0]
        return by_name, by_address

    def record_failure(self, user_name, address, now, forget_before):
        def work(db):
            db.execute("DELETE FROM login_failures WHERE at < ?", (forget_before,))
            db.execute("INSERT INTO login_failures VALUES (?, ?, ?)", (user_name, address, now))

        self._write(work)

    # --- the audit log --------------------------------------------------------------------

    def audit(self, actor, action, detail):
        # The entry's number is taken in its own transaction (SQL both databases take: no
        # rowid, no serial), so the log's order is the order things were done.
        def work(db):
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM audit").fetchone()[0]
            db.execute(
                "INSERT INTO audit VALUES (?, ?, ?, ?, ?)",
                (seq, int(time.time()), actor, action, detail),
            )

        self._write(work)

    def audit_log(self, limit=500):
        rows = self._db.execute(
            "SELECT at, actor, action, detail FROM audit ORDER BY seq DESC LIMIT ?", (limit,)
        )
        return [dict(zip(("at", "actor", "action", "detail"), r, strict=True)) for r in rows]

    # --- commission, payees, settings -----------------------------------------------------

    def commission_rules(self, merchant_id=None):
        query = "SELECT merchant_id, effective, basis_points, fixed_minor FROM commission"
        args = ()
        if merchant_id is not None:
            query += " WHERE merchant_id = ?"
            args = (merchant_id,)
        rows = self._db.execute(query + " ORDER BY merchant_id, effective", args)
        keys = ("merchant_id", "effective", "basis_points", "fixed_minor")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def set_commission(self, merchant_id, effective, basis_points, fixed_minor):
        self._write(
            lambda db: db.execute(
                "INSERT INTO commission VALUES (?, ?, ?, ?) "
                "ON CONFLICT (merchant_id, effective) DO UPDATE SET "
                "basis_points = excluded.basis_points, fixed_minor = excluded.fixed_minor",
                (merchant_id, effective, basis_points, fixed_minor),
            )
        )

    def payee(self, merchant_id):
        row = self._db.execute(
            "SELECT holder, iban, bic FROM payees WHERE merchant_id = ?", (merchant_id,)
        ).fetchone()
        return None if row is None else dict(zip(("holder", "iban", "bic"), row, strict=True))

    def set_payee(self, merchant_id, holder, iban, bic):
        self._write(
            lambda db: db.execute(
                "INSERT INTO payees VALUES (?, ?, ?, ?) ON CONFLICT (merchant_id) DO UPDATE "
                "SET holder = excluded.holder, iban = excluded.iban, bic = excluded.bic",
                (merchant_id, holder, iban, bic),
            )
        )

    def settings(self):
        return dict(self._db.execute("SELECT name, value FROM office_settings").fetchall())

    def set_setting(self, name, value):
        self._write(
            lambda db: db.execute(
                "INSERT INTO office_settings VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, str(value)),
            )
        )

    # --- the ledger, read -----------------------------------------------------------------

    def merchants(self):
        """Every merchant ID the ledger knows: {merchant_id: {"name", "terminals": [(tid,
        number)]}}, in ID order."""
        out = {}
        for tid, number, merchant_id, name in self._db.execute(
            "SELECT tid, number, merchant_id, name FROM merchants ORDER BY merchant_id, tid"
        ):
            entry = out.setdefault(merchant_id, {"name": name, "terminals": []})
            entry["terminals"].append((tid, number))
        return out

    def merchant_records(self, merchant_id):
        """Every record of a merchant ID on every terminal that serves it, in each
        terminal's counter order (the order Z batches are counted in). Not a terminal's
        automatic blocks (pos.autoblock): they name a merchant but are no sale of it (the
        operator's report lists them)."""
        rows = self._db.execute(
            "SELECT r.tid, r.merchant, r.counter, r.kind, r.method, r.amount_minor, r.currency,"
            " r.time, r.receipt, r.reference, r.cashier, r.flags, r.token, r.last_four"
            " FROM records r JOIN merchants m ON m.tid = r.tid AND m.number = r.merchant"
            " WHERE m.merchant_id = ? AND r.kind <> ? ORDER BY r.tid, r.merchant, r.counter",
            (merchant_id, BLOCK),
        )
        keys = (
            "tid",
            "number",
            "counter",
            "kind",
            "method",
            "amount_minor",
            "currency",
            "time",
            "receipt",
            "reference",
            "cashier",
            "flags",
            "token",
            "last_four",
        )
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def terminals(self):
        rows = self._db.execute(
            "SELECT tid, ik_id, ack, registered, suspected FROM terminals ORDER BY tid"
        )
        keys = ("tid", "ik_id", "ack", "registered", "suspected")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def fault_logs(self, tid):
        rows = self._db.execute(
            "SELECT text, received FROM faults WHERE tid = ? ORDER BY received DESC", (tid,)
        )
        return [{"text": text, "received": received} for text, received in rows]

    def quarantined_by_terminal(self):
        return dict(self._db.execute("SELECT tid, COUNT(*) FROM quarantine GROUP BY tid"))

    def blacklist(self):
        rows = self._db.execute(
            "SELECT token, added FROM blacklist WHERE removed IS NULL ORDER BY added"
        )
        return [{"token": bytes(token).hex(), "added": added} for token, added in rows]
