"""The downlink: versioned configs, the blacklist and commands, sealed per terminal; the
fault logs terminals send back."""

import hashlib
import json
import struct
import time
from binascii import unhexlify

from pos.downlink import BLACKLIST, CONFIG, MAX_PLAIN, derive_downlink_key, seal_document
from tools.host.backend.errors import DownlinkError, IngestError
from tools.host.backend.storage import by_terminal

MAX_FAULT_LOGS_PER_TERMINAL = 16
COMMANDS = ("settle", "faultlog", "clock")
MAX_COMMANDS_A_DOCUMENT = 8  # keeps a commands document within the terminal's 512 bytes
MAX_FAULT_LOG_BYTES = 4096
DOCUMENT_KINDS = {"config": "C", "blacklist": "B", "commands": "K", "keys": "R"}


class DocumentsMixin:
    """LedgerDB's downlink."""

    def poll(self, tid, caller, status):
        """An authenticated poll: its counter taken and its heartbeat kept."""

        def work(db):
            self._take(db, caller)
            if status:
                self._beat(db, tid, status, int(time.time()))

        self._terminal(tid)
        self._transaction(work)

    def set_config(self, tid, doc):
        """Store a new config for a terminal ({"merchants": ..., "cashiers": ...}, as the
        terminal's merchants.json and cashiers.json), checked with the terminal's own
        parser; returns its version (one above the last)."""
        from pos import config

        self._terminal(tid)
        extra = {"auto_block_declines", "auto_block_window_min"}
        if not isinstance(doc, dict) or set(doc) - {"merchants", "cashiers", "version"} - extra:
            raise DownlinkError('a config is {"merchants": {...}, "cashiers": {...}}')

        def store(db):
            self._lock_terminal(db, tid)  # one new version at a time, from any worker
            row = db.execute("SELECT MAX(version) FROM configs WHERE tid = ?", (tid,)).fetchone()
            version = (row[0] or 0) + 1
            pushed = {
                "version": version,
                "merchants": doc.get("merchants"),
                "cashiers": doc.get("cashiers"),
            }
            for name in extra & set(doc):
                pushed[name] = doc[name]
            try:
                _, merchants, _, _ = config.parse_pushed(pushed, "config")
            except config.ConfigError as exc:
                raise DownlinkError("config refused: %s" % exc) from None
            payload = json.dumps(pushed, separators=(",", ":"))
            if len(payload) > MAX_PLAIN[CONFIG]:
                raise DownlinkError("config larger than %d bytes" % MAX_PLAIN[CONFIG])
            db.execute(
                "INSERT INTO configs VALUES (?, ?, ?, ?)",
                (tid, version, payload, int(time.time())),
            )
            for merchant in merchants:
                self._name_merchant(db, tid, merchant.number, merchant.merchant_id, merchant.name)
            return version

        return self._transaction(store)

    def change_blacklist(self, add=(), remove=()):
        """Add and remove 6-byte card tokens (one list for every terminal: the token key is
        the same everywhere); returns the new blacklist version."""
        for token in list(add) + list(remove):
            if len(token) != 6:
                raise DownlinkError("a card token is 6 bytes")
        if set(add) & set(remove):
            raise DownlinkError("the same token added and removed")

        def store(db):
            version = self._next(db, "blacklist")
            for token in add:
                db.execute(
                    "INSERT INTO blacklist VALUES (?, ?, NULL) ON CONFLICT (token) DO UPDATE SET "
                    "added = excluded.added, removed = NULL WHERE blacklist.removed IS NOT NULL",
                    (bytes(token), version),
                )
            for token in remove:
                db.execute(
                    "UPDATE blacklist SET removed = ? WHERE token = ? AND removed IS NULL",
                    (version, bytes(token)),
                )
            return version

        return self._transaction(store)

    def add_command(self, tid, name):
        """Queue a command for a terminal; returns its id (per terminal, from 1)."""
        if name not in COMMANDS:
            raise DownlinkError("unknown command %s (known: %s)" % (name, ", ".join(COMMANDS)))
        self._terminal(tid)

        def store(db):
            self._lock_terminal(db, tid)
            row = db.execute("SELECT MAX(id) FROM commands WHERE tid = ?", (tid,)).fetchone()
            number = (row[0] or 0) + 1
            db.execute(
                "INSERT INTO commands VALUES (?, ?, ?, ?)", (tid, number, name, int(time.time()))
            )
            return number

        return self._transaction(store)

    def _lock_terminal(self, db, tid):
        """Hold the terminal's row until the transaction ends (PostgreSQL; SQLite's write
        transaction holds the whole ledger already)."""
        db.execute("SELECT tid FROM terminals WHERE tid = ?" + self._store.for_update, (tid,))

    @staticmethod
    def _next(db, name):
        db.execute("INSERT INTO counters VALUES (?, 0) ON CONFLICT (name) DO NOTHING", (name,))
        db.execute("UPDATE counters SET value = value + 1 WHERE name = ?", (name,))
        return db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0]

    def versions(self, tid):
        """{"config", "blacklist", "commands"}: the newest of each the terminal can fetch."""
        return self._versions_and_status(tid)[0]

    def offer(self, tid):
        """What a batch reply or a poll tells the terminal: versions and blacklist_whole,
        read in one statement (every reply carries them), and the release offered."""
        versions, status = self._versions_and_status(tid)
        versions["blacklist_whole"] = self._whole(versions["blacklist"], status)
        return versions

    def _versions_and_status(self, tid):
        row = self._db.execute(
            "SELECT (SELECT MAX(version) FROM configs WHERE tid = ?), "
            "(SELECT value FROM counters WHERE name = 'blacklist'), "
            "(SELECT MAX(id) FROM commands WHERE tid = ?), "
            "(SELECT status FROM heartbeats WHERE tid = ?), "
            # keys: the newest generation offered and not installed (rotation.py)
            "(SELECT MAX(generation) FROM key_generations WHERE tid = ? AND installed IS NULL) "
            "FROM terminals WHERE tid = ?",
            (tid,) * 5,
        ).fetchone()
        if row is None:
            raise IngestError("unknown terminal %s" % tid)
        versions = {
            "config": row[0] or 0,
            "blacklist": row[1] or 0,
            "commands": row[2] or 0,
            "release": self.offered_release(tid),
            "keys": row[4] or 0,
        }
        return versions, row[3]

    def document(self, tid, kind, since):
        """(version, payload) of the newest document of a kind for a terminal, from `since`
        (blacklist: the delta from that version; commands: those after that id), or None."""
        self._terminal(tid)
        db = self._db
        if kind == CONFIG:
            row = db.execute(
                "SELECT version, payload FROM configs WHERE tid = ? ORDER BY version DESC LIMIT 1",
                (tid,),
            ).fetchone()
            return None if row is None else (row[0], row[1].encode())
        if kind == BLACKLIST:
            version = self.versions(tid)["blacklist"]
            if not version:
                return None
            # The whole list (base 0) from nothing, from a version we never made, or when
            # the terminal's list is not what its version says (its heartbeat's digest).
            if not since or since > version or self.blacklist_whole(tid):
                base, since, removed = 0, 0, "1 = 0"
            else:
                base, removed = since, "removed > ?"
            add = [
                bytes(r[0])
                for r in db.execute(
                    "SELECT token FROM blacklist WHERE removed IS NULL AND added > ? "
                    "ORDER BY token",
                    (since,),
                )
            ]
            # Every token removed since: one the terminal never had is simply not there.
            remove = [
                bytes(r[0])
                for r in db.execute(
                    "SELECT token FROM blacklist WHERE %s ORDER BY token" % removed,
                    (since,) if base else (),
                )
            ]
            counts = struct.pack(">III", base, len(add), len(remove))
            return version, counts + b"".join(add) + b"".join(remove)
        rows = db.execute(
            "SELECT id, name FROM commands WHERE tid = ? AND id > ? ORDER BY id LIMIT ?",
            (tid, since, MAX_COMMANDS_A_DOCUMENT),
        ).fetchall()
        if not rows:
            return None
        return rows[-1][0], json.dumps([list(r) for r in rows]).encode()

    def blacklist_digest(self, version):
        """What a terminal's list at the newest version digests to: the first 4 bytes of
        SHA-256 over the file pos.blacklist keeps, in hex (cached per version)."""
        digests = self._digests
        if version not in digests:
            tokens = [
                bytes(r[0])
                for r in self._db.execute(
                    "SELECT token FROM blacklist WHERE removed IS NULL ORDER BY token"
                )
            ]
            listed = b"BL" + struct.pack(">II", version, len(tokens)) + b"".join(tokens)
            digests[version] = hashlib.sha256(listed).digest()[:4].hex()
        return digests[version]

    def blacklist_whole(self, tid):
        """Whether the terminal says it has the newest list but its digest (bld= in its
        heartbeat) is another: then it is offered the whole list again."""
        versions, status = self._versions_and_status(tid)
        return self._whole(versions["blacklist"], status)

    def _whole(self, newest, status):
        if not newest or status is None:
            return False
        fields = dict(p.split("=", 1) for p in status.split(";") if "=" in p)
        if fields.get("bl") != str(newest) or len(fields.get("bld", "")) != 8:
            return False
        return fields["bld"] != self.blacklist_digest(newest)

    def sealed_document(self, tid, kind, since):
        """The document sealed with the terminal's downlink key (from the BDK and its IK ID),
        or None when there is none."""
        if self._bdk is None:
            raise IngestError("the back end has no BDK loaded")
        if kind == "R":
            return self.sealed_rotation(tid)
        found = self.document(tid, kind, since)
        if found is None:
            return None
        ik_id = self._terminal(tid)
        key = derive_downlink_key(self._bdk.bdk_for(ik_id), ik_id)
        return seal_document(key, kind, found[0], found[1])

    def store_faults(self, tid, text, caller=None):
        """Keep a terminal's fault log, within its bound (the oldest kept, the rest
        counted in faults_dropped)."""
        self._terminal(tid)

        def work(db):
            self._take(db, caller)
            self._lock_terminal(db, tid)
            count, last = db.execute(
                "SELECT COUNT(*), MAX(seq) FROM faults WHERE tid = ?", (tid,)
            ).fetchone()
            if count >= MAX_FAULT_LOGS_PER_TERMINAL:
                db.execute(
                    "UPDATE terminals SET faults_dropped = faults_dropped + 1 WHERE tid = ?",
                    (tid,),
                )
                return
            db.execute(
                "INSERT INTO faults (tid, text, received, seq) VALUES (?, ?, ?, ?)",
                (tid, text[:MAX_FAULT_LOG_BYTES], int(time.time()), (last or 0) + 1),
            )

        self._transaction(work)

    def downlink_report(self):
        """Per terminal: versions on offer, what the terminal says is in force (heartbeat),
        the commands and whether each was taken, the last fault log sent."""
        db = self._db
        beats = self.heartbeats()
        out = {}
        for (tid,) in by_terminal(db.execute("SELECT tid FROM terminals").fetchall()):
            status = beats.get(tid, {}).get("status", {})
            taken = int(status.get("cmd", 0) or 0)
            commands = [
                {"id": number, "name": name, "taken": number <= taken}
                for number, name in db.execute(
                    "SELECT id, name FROM commands WHERE tid = ? ORDER BY id", (tid,)
                )
            ]
            fault = db.execute(
                "SELECT text FROM faults WHERE tid = ? ORDER BY seq DESC LIMIT 1", (tid,)
            ).fetchone()
            out[tid] = {
                "offered": self.versions(tid),
                "in_force": {
                    "config": int(status.get("cfg", 0) or 0),
                    "blacklist": int(status.get("bl", 0) or 0),
                    "commands": taken,
                    "keys": int(status.get("kg", 0) or 0),
                },
                "refused": status.get("refused", ""),
                "release": self.release_report(tid, status),
                "commands": commands,
                "fault_log": fault[0] if fault else None,
            }
        return out


def card_tokens(cards, token_key_file):
    """6-byte tokens of card numbers (tokenised as the terminal does, with the card-token
    key) or of token:HEX arguments; the card numbers themselves go nowhere."""
    from pos.card import DigitBuffer, Tokenizer, luhn_ok

    tokenizer = None
    tokens = []
    for card in cards:
        if card.startswith("token:"):
            try:
                token = unhexlify(card[6:])
            except ValueError:
                token = b""
            if len(token) != 6:
                raise DownlinkError("a token is token: and 12 hex digits, not %s" % card)
            tokens.append(token)
            continue
        digits = DigitBuffer(19)
        if not 12 <= len(card) <= 19 or not digits.set(card) or not luhn_ok(digits.view()):
            raise DownlinkError("not a card number (12 to 19 digits, Luhn): %s" % _masked(card))
        if tokenizer is None:
            if not token_key_file:
                raise DownlinkError("card numbers need --token-key-file (the card-token key)")
            tokenizer = Tokenizer(read_key(token_key_file, "card-token key"))
        tokens.append(bytes(tokenizer.token(digits.view(), bytearray(6))))
        digits.wipe()
    return sorted(set(tokens))


def _masked(card):
    return "*" * max(0, len(card) - 4) + card[-4:]


def read_key(path, what):
    try:
        with open(path) as source:
            key = unhexlify(source.read().strip())
    except (OSError, ValueError) as exc:
        raise DownlinkError("cannot read the %s from %s: %s" % (what, path, exc)) from None
    if len(key) != 16:
        raise DownlinkError("the %s in %s must be 16 bytes" % (what, path))
    return key
