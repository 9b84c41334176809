"""A connection to the back end: the part of the uplink where the two runtimes differ, in a
module of its own as pos.compat's rule asks. pos.uplink loads it to make the TLS context and
for each contact, and pos.app unloads it when a contact is over (a terminal without a back
end never has it).

    reader, writer = await open_link(host, port, context, timeout_s)

gives one Link twice, with asyncio's stream methods the uplink, the downlink and an update
use: write(data) then drain(), read(n), readexactly(n), readline(), close() then
wait_closed(). Every wait ends at one deadline, timeout_s after the connection began: a
back end that stops answering, at any step, ends the exchange with OSError, and nothing
waits for ever (but the name's lookup, which comes before, and blocks, as in asyncio).
context: tls_context(ca_der), or None for plain TCP (tests only).

On MicroPython the socket is used directly, without blocking, and tried again every
_POLL_MS while it has nothing: asyncio's streams (1.7 KiB of heap on the 64-bit port), its
wait_for (0.9) and the ssl module (1.0) are not loaded, as tls's context wraps the socket
itself (tools/bench heap, README "Memory"). On CPython asyncio's streams, each step under
asyncio.wait_for with the time left (pos.compat_cpython).
"""

from pos.compat import IS_MICROPYTHON, const, sleep_ms

_POLL_MS = const(20)
_LINE_MAX = const(1024)  # pos.uplink's MAX_HEADER_BYTES: no line of a reply's head is longer

if IS_MICROPYTHON:
    # Its globals are kept few (imports inside the functions, plain `import X` where they
    # run often: a `from X import Y` in a function makes a list of the names each time):
    # the module is loaded at every contact, on a worn heap, and its globals table is one
    # block (8 slots, 128 bytes on the 64-bit port, for its 8 names; 17, 272 bytes, for
    # the 13 it had).

    def tls_context(ca_der):
        """A client context that trusts only the back end's CA (DER) and checks its
        certificate and host name."""
        import tls

        context = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
        context.verify_mode = tls.CERT_REQUIRED  # MicroPython starts with CERT_NONE
        context.load_verify_locations(ca_der)
        return context

    async def open_link(host, port, context, timeout_s):
        import socket
        from errno import EINPROGRESS

        # The name is looked up before the deadline starts, and blocks (as in asyncio's
        # open_connection): the back end's address is a name the terminal's resolver has
        # at hand, or an address.
        address = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        sock = socket.socket(address[0], address[1], address[2])
        try:
            sock.setblocking(False)
            try:
                sock.connect(address[-1])
            except OSError as exc:
                if exc.errno != EINPROGRESS:
                    raise
            if context is not None:  # the handshake runs in the first writes and reads
                sock = context.wrap_socket(
                    sock, server_hostname=host, do_handshake_on_connect=False
                )
                sock.setblocking(False)
            link = Link(sock, timeout_s)
        except BaseException:  # no TLS memory, say: the socket is not left open
            sock.close()
            raise
        return link, link

    class Link:
        def __init__(self, sock, timeout_s):
            import time

            self.s = sock
            self.out = b""
            self.end = time.ticks_add(time.ticks_ms(), timeout_s * 1000)

        async def _wait(self):
            # The socket had nothing (or no room): try again shortly, until the deadline.
            import time

            if time.ticks_diff(self.end, time.ticks_ms()) <= 0:
                raise OSError("timed out")
            await sleep_ms(_POLL_MS)

        def write(self, data):
            self.out = self.out + data if self.out else data

        async def drain(self):
            data, self.out = self.out, b""
            sent = 0
            while sent < len(data):
                count = self.s.write(memoryview(data)[sent:])
                if count is None:  # no room yet, or the connection or handshake under way
                    await self._wait()
                else:
                    sent += count
                    await sleep_ms(0)  # the keypad's and the display's turn

        async def read(self, n):
            while True:
                data = self.s.read(n)
                if data is not None:  # b"" at the end
                    # Other tasks' turn: with data always there (a download), the loop would
                    # otherwise hold the terminal until the last byte.
                    await sleep_ms(0)
                    return data
                await self._wait()

        async def readexactly(self, n):
            data = b""
            while len(data) < n:
                piece = await self.read(n - len(data))
                if not piece:
                    raise EOFError
                data += piece
            return data

        async def readline(self):
            """A line, at most _LINE_MAX bytes (OSError past that: a reply's head is read
            line by line, and a line without an end would grow until the deadline)."""
            line = b""
            while True:
                # What is there of the line, without waiting (a size given here would be
                # a buffer of that size at once).
                piece = self.s.readline()
                if piece is None:
                    await self._wait()
                    continue
                line += piece
                if len(line) > _LINE_MAX:
                    raise OSError("long line")  # 10 characters at most: no heap object
                if not piece or line[-1] == 10:
                    return line

        def close(self):
            # The socket (with TLS, an object holding mbedTLS's context) is let go at once,
            # not when the exchange's frames that hold the Link end.
            sock, self.s = self.s, None
            if sock is not None:
                sock.close()

        async def wait_closed(self):
            self.close()

else:
    from pos.compat_cpython import open_link, tls_context  # noqa: F401  (re-exported)
