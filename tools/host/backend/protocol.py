"""uvicorn's h11 protocol with a deadline for a request's head and a cap on connections from
one address (what it lacks against strangers), at module level so that `serve --workers N`
can hand it to worker processes by name."""

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from tools.host.backend.api import HEADER_TIMEOUT_S, MAX_CONNECTIONS_PER_SOURCE


class GuardedH11Protocol(H11Protocol):
    def connection_made(self, transport):
        super().connection_made(transport)
        self._head_deadline = None
        peer = self.client[0] if self.client else None
        same = sum(1 for c in self.connections if c.client and c.client[0] == peer)
        if peer is not None and same > MAX_CONNECTIONS_PER_SOURCE:
            transport.abort()
            return
        self._arm()

    def _arm(self):
        self._head_deadline = self.loop.call_later(HEADER_TIMEOUT_S, self._head_too_slow)

    def _disarm(self):
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self):
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            # Aborted, not closed: a TLS close waits for the peer's close_notify (uvloop's
            # up to its shutdown timeout), which a slow sender never sends.
            self.transport.abort()

    def data_received(self, data):
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()

    def on_response_complete(self):
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._disarm()
            self._arm()

    def connection_lost(self, exc):
        self._disarm()
        super().connection_lost(exc)
