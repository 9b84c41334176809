"""A terminal's side of the request signature (pos.uplink) for host tools and tests that
talk to the back end as a terminal would: the attacker suite, the benchmark, the fuzzing.

It holds the BDK-derived keys of one terminal, so it is no more than a terminal is: use it
only where the BDK is at hand anyway.
"""

import hashlib
import hmac

from pos.contact import link_keys, signed_message
from pos.downlink import derive_downlink_key
from tools.host.backend import cmac


class TerminalSigner:
    """Signs requests as terminal (bdk, ik_id) does, and checks the back end's replies."""

    def __init__(self, bdk, ik_id, nonce=0):
        self.request_key, self.reply_key = link_keys(derive_downlink_key(bdk, ik_id))
        self.nonce = nonce
        self.last_tag = b""

    def headers(self, method, path, body=b"", status="", nonce=None):
        """The X-OneTill-Auth (and X-OneTill-Status) headers of a request to `path` (with
        its query). A new counter each time unless `nonce` is given."""
        if nonce is None:
            self.nonce += 1
            nonce = self.nonce
        body_hash = hashlib.sha256(bytes(body)).digest()
        tag = cmac(self.request_key, signed_message(method, path, nonce, body_hash, status))
        self.last_tag = tag
        headers = {"X-OneTill-Auth": "%d:%s:%s" % (nonce, body_hash.hex(), tag.hex())}
        if status:
            headers["X-OneTill-Status"] = status
        return headers

    def reply_ok(self, reply_tag_hex, body, request_tag=None):
        """Whether a reply's X-OneTill-Reply tag binds its body to our last request."""
        try:
            tag = bytes.fromhex(reply_tag_hex or "")
        except ValueError:
            return False
        tagged = request_tag if request_tag is not None else self.last_tag
        return hmac.compare_digest(tag, cmac(self.reply_key, tagged + bytes(body)))
