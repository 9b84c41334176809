"""Request authentication (pos.uplink): the X-OneTill-Auth header, the request key derived
from the BDK and the terminal's IK ID, the counter taken in the transaction of what a
request changes, and the reply tag."""

import hashlib
import hmac

from cryptography.hazmat.primitives import cmac as _cmac
from cryptography.hazmat.primitives.ciphers import algorithms as _algorithms

from pos.contact import link_keys, signed_message
from pos.downlink import derive_downlink_key

EMPTY_BODY_HASH = hashlib.sha256(b"").digest()


class AuthError(Exception):
    """A request that does not prove it comes from the terminal it names: 401, nothing
    changes. The message is for tests and logs, never for the caller."""


class StaleRequest(AuthError):
    """A well-signed request whose counter is not above the last one taken (a replay, or a
    terminal that lost its counter): 401 with a tagged {"last": N}."""

    def __init__(self, caller, last):
        super().__init__("request counter %d is not above %d" % (caller.nonce, last))
        self.caller = caller
        self.last = last


class Caller:
    """An authenticated request: whose, its counter, body hash, tag and the reply key."""

    def __init__(self, tid, nonce, body_hash, tag, reply_key):
        self.tid = tid
        self.nonce = nonce
        self.body_hash = body_hash
        self.tag = tag
        self.reply_key = reply_key
        self.installs = None  # (generation, IK ID): signed with a newly offered key

    def reply_tag(self, body):
        """The tag of a reply body, bound to this request (pos.contact.reply_tag)."""
        return cmac(self.reply_key, self.tag + bytes(body))


def cmac(key, data):
    """AES-CMAC (16 bytes) with the cryptography package: the back end's fast path, and an
    implementation apart from pos.seal's, so the tests compare two."""
    mac = _cmac.CMAC(_algorithms.AES(bytes(key)))
    mac.update(bytes(data))
    return mac.finalize()


def parse_auth(value):
    """(nonce, body hash, tag) of an X-OneTill-Auth header, or None if it is not one."""
    parts = (value or "").split(":")
    if len(parts) != 3 or not parts[0].isdigit() or len(parts[0]) > 10:
        return None
    try:
        body_hash, tag = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
    except ValueError:
        return None
    nonce = int(parts[0])
    if not 0 < nonce <= 0xFFFFFFFF or len(body_hash) != 32 or len(tag) != 16:
        return None
    return nonce, body_hash, tag


class AuthMixin:
    """LedgerDB's request checks."""

    def _link_keys(self, ik_id):
        keys = self._keys.get(ik_id)
        if keys is None:
            key = derive_downlink_key(self._bdk.bdk_for(ik_id), ik_id)
            keys = self._keys[ik_id] = link_keys(key)
        return keys

    def authenticate(self, tid, method, path, status, auth):
        """The Caller of a request whose X-OneTill-Auth header `auth` proves it comes from
        terminal `tid` (pos.uplink): AuthError otherwise, StaleRequest for a counter not
        above the last one taken. Reads one row; changes nothing. The body is checked
        against the hash later, when it has been read."""
        if self._bdk is None:
            raise AuthError("the back end has no BDK loaded")
        parsed = parse_auth(auth)
        if parsed is None:
            raise AuthError("no X-OneTill-Auth header, or a malformed one")
        nonce, body_hash, tag = parsed
        row = self._db.execute("SELECT ik_id, nonce FROM terminals WHERE tid = ?", (tid,))
        row = row.fetchone()
        # An unknown terminal costs the same work as a known one and gets the same answer.
        ik_id, last = (bytes(row[0]), row[1]) if row is not None else (bytes(8), 0)
        request_key, reply_key = self._link_keys(ik_id)
        message = signed_message(method, path, nonce, body_hash, status)
        installs = None
        if not hmac.compare_digest(cmac(request_key, message), tag) and row is not None:
            # A terminal that has installed a key generation offered to it signs with the
            # new downlink key from its first request on (rotation.py).
            for generation, offered in self.pending_keys(tid):
                request_key, reply_key = self._link_keys(offered)
                if hmac.compare_digest(cmac(request_key, message), tag):
                    installs = generation, offered
                    break
            else:
                raise AuthError("request tag does not match")
        if row is None:
            raise AuthError("request tag does not match")
        caller = Caller(tid, nonce, body_hash, tag, reply_key)
        caller.installs = installs
        if nonce <= last:
            raise StaleRequest(caller, last)
        return caller

    @staticmethod
    def _take(db, caller):
        """Take the caller's request counter, in the transaction of what it changes."""
        if caller is None:
            return
        taken = db.execute(
            "UPDATE terminals SET nonce = ? WHERE tid = ? AND nonce < ?",
            (caller.nonce, caller.tid, caller.nonce),
        ).rowcount
        if not taken:
            row = db.execute("SELECT nonce FROM terminals WHERE tid = ?", (caller.tid,))
            raise StaleRequest(caller, row.fetchone()[0])
        if caller.installs is not None:
            from tools.host.backend.rotation import mark_installed

            mark_installed(db, caller)

    def take(self, caller):
        """Take an authenticated request's counter (a request that changes nothing else)."""
        self._transaction(lambda db: self._take(db, caller))
