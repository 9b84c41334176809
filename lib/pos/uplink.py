"""The uplink: sends unsent records to the back end over HTTPS and acks the queue.

This module is the uplink's state (its keys, request counter and the back end's versions),
resident for the terminal's life; the protocol's code is pos.contact, loaded for a contact
and unloaded by pos.app after it (as pos.link is), so that between contacts the sales have
its heap (README "Memory").

A minimal HTTP/1.1 client on a pos.link connection: one POST per batch with Content-Length,
the reply read with bounded header and body sizes, strict parsing, and every step within
one timeout (TIMEOUT_S) of the connection's start.
TLS pins the back end's CA (DER), with CERT_REQUIRED and the host name checked; micropython-
lib's requests turns verification off, so it is not used. A reply that does not parse, or
an ack outside what was sent, changes nothing: the batch is simply sent again later.

Every request is signed, and every reply the terminal acts on is checked (TLS alone trusts
anyone holding the server's certificate, or a TLS-terminating proxy). The keys:

    request key = AES-128(link key, 0x13 x 16)    reply key = AES-128(link key, 0x14 x 16)

where the link key is /state/downlink.key, derived from the BDK and the IK ID
(pos.downlink.derive_downlink_key): the back end recomputes all three, nothing is
registered and no key is in its database. Two keys, so a reply tag is never a request tag.
The request header

    X-OneTill-Auth: NONCE:SHA256HEX:TAGHEX

carries a request counter (NONCE, decimal, above every one the back end has seen from this
terminal), the SHA-256 of the body (64 hex digits, of b"" when there is none) and
TAG = AES-CMAC(request key, signed_message(method, path, nonce, body hash, heartbeat)), 32
hex digits; the heartbeat is the X-OneTill-Status header exactly as sent. The back end
checks the tag and the counter before it reads the body, then the body against its hash.
Its reply carries

    X-OneTill-Reply: AES-CMAC(reply key, request tag | reply body), 32 hex digits

so a reply is bound to the request it answers: a replayed or forged reply changes nothing.
A 401 with a good reply tag and {"last": N} says the counter is behind (a lost counter
file, a copied terminal): the counter moves past N and the next request goes through.

The counter lives in /state/request.counter as a reservation: at start, and every
NONCE_STEP requests, the file is moved NONCE_STEP ahead before those counters are used, so
a power cut never reuses one and the flash sees one small write per NONCE_STEP requests.
"""

from pos.compat import const

BATCH_BYTES = const(2048)  # about 40 records of 49 bytes on the wire
MAX_HEADER_BYTES = const(1024)
MAX_BODY_BYTES = const(512)
TIMEOUT_S = const(10)
NONCE_STEP = const(64)
NONCE_FILE = "request.counter"
_TAG_SIZE = const(16)


class UplinkError(Exception):
    """A batch that did not get through; the message says why (for the fault log)."""


def tls_context(ca_der):
    """The TLS context that trusts only the back end's CA (DER), made by pos.link (loaded
    with it, and left loaded until the first request's exchange ends: pos.contact)."""
    from pos.link import tls_context

    return tls_context(ca_der)


class Uplink:
    """The uplink's state. What talks to the back end is pos.contact's functions, which
    take it: authenticate(uplink, link key, store), head(uplink, ...), sync(uplink) and
    request(uplink, ...); pos.app unloads pos.contact when the contact is over. Only
    connect is a method: the seam the simulator and tests replace."""

    def __init__(self, queue, host, port, terminal_id, context):
        # The protocol's code loaded now, while the heap is whole (the board makes the
        # uplink at start), so its first contact finds it compact; pos.app unloads it after
        # that contact, and each later contact loads it again.
        import pos.contact  # noqa: F401

        self.queue = queue
        self.host = host
        self.port = port
        self.context = context
        self.base_path = "/v1/terminals/%s" % terminal_id
        # The heartbeat: a function giving "name=value;..." for the X-OneTill-Status header
        # (queue depth, oldest unsent age, DUKPT counter, free heap, reset cause, signal,
        # firmware), sent with every batch.
        self.status = None
        self.server_time = 0
        # What the back end holds for this terminal, from its last reply: the newest config
        # version, blacklist version and command id (pos.downlink fetches what is newer),
        # 1 when the back end sends the blacklist whole, the release on offer and the key
        # generation offered.
        self.versions = (0, 0, 0, 0, 0, 0)
        self.timeout_s = TIMEOUT_S
        self._keys = None  # (request key, reply key); None: not provisioned, nothing is sent
        self._store = None
        # The request in flight's tag (its reply must name it), filled in place: nothing a
        # request makes outlives it on the heap, where it would split the holes the next
        # connection needs.
        self._request_tag = bytearray(_TAG_SIZE)
        self.nonce = 0
        self._reserved = 0

    async def connect(self, timeout_s=0):
        """(reader, writer) of a new connection to the back end: one pos.link Link, each
        step of it within timeout_s (the uplink's own when 0) of now. Plain TCP without a
        context: tests only, the device always pins a CA."""
        from pos.link import open_link  # loaded for a contact: pos.app unloads it after

        return await open_link(self.host, self.port, self.context, timeout_s or self.timeout_s)
