"""pos.app: the event loop, and the display updated only when the screen changed."""

import sys
from binascii import hexlify, unhexlify

from appkit import Board, config_folder
from pos.app import App
from pos.compat import run, sleep_ms, spawn
from pos.seal import Cmac
from pos.uplink import Uplink


def test_start_then_sell_through_the_event_loop():
    keys = "1 2 3 4 # 1 # 5 0 0 # 4 #".split()
    board = Board(config_folder(), events=[("key", k) for k in keys])
    app = App(board)
    app.start()
    assert board.last_screen[2] == "Cashier PIN"
    run(app.main())
    assert board.last_screen[1] == "APPROVED"
    assert board.printed == 1
    assert app.ledger.queue.unsent_count() == 1
    assert board.faults == []


def test_screen_goes_to_the_display_only_when_it_changed():
    board = Board(config_folder())
    app = App(board)
    app.start()
    shown = board.shown
    for _ in range(5):
        app.feed(("tick", 0, 0))
    assert board.shown == shown
    app.feed(("key", "1"))
    assert board.shown == shown + 1


LINK_KEY = b"link-key-for-app"


class _BackEnd:
    """The back end at the socket's edge (the uplink's connect): it answers a request as
    the real one does (pos.uplink's docstring): a request whose tag, counter or body does
    not check out gets a 401 without a tag; any other its reply, tagged for that request,
    offering these versions (config, blacklist, commands, whole, release, keys), but a
    document fetched (a config, say), which it does not have: 404. It keeps the name of
    each request it took."""

    def __init__(self, versions):
        from pos.compat import AES_ECB, aes

        self.versions = versions
        self.asked = []
        self._sent = self._reply = b""
        self._nonce = 0
        # Made before the terminal starts: this back end runs in the terminal's heap here,
        # and cipher objects of its own at each request would take the terminal's. Its keys
        # from the link key as pos.uplink's docstring says, not by the terminal's code.
        derive = aes(LINK_KEY, AES_ECB)
        self._request_cipher = aes(derive.encrypt(b"\x13" * 16), AES_ECB)
        self._reply_cipher = aes(derive.encrypt(b"\x14" * 16), AES_ECB)
        self._cmac = Cmac()

    # A connection (the uplink's connect): the request is taken whole, then answered. One
    # at a time, as the terminal makes them: the back end is its own connection.
    async def connect(self, timeout_s=0):
        self._sent, self._reply = b"", None
        return self, self

    def write(self, data):
        self._sent += bytes(data)

    async def drain(self):
        pass

    async def read(self, n):
        if self._reply is None:
            self._reply = self._answer(self._sent)
        reply, self._reply = self._reply[:n], self._reply[n:]
        return reply

    async def readline(self):
        if self._reply is None:
            self._reply = self._answer(self._sent)
        return await self.read(self._reply.find(b"\n") + 1 or len(self._reply))

    async def readexactly(self, n):
        return await self.read(n)

    def close(self):
        pass

    async def wait_closed(self):
        pass

    def _answer(self, request):
        from hashlib import sha256

        end = request.find(b"\r\n\r\n")
        head = request[:end].split(b"\r\n")
        method, path = head[0].split(b" ")[:2]
        status = auth = b""
        for line in head:
            if line.startswith(b"X-OneTill-Status: "):
                status = line[18:]
            elif line.startswith(b"X-OneTill-Auth: "):
                auth = line[16:]
        nonce, body_hash, request_tag = auth.split(b":")
        nonce, body_hash, request_tag = int(nonce), unhexlify(body_hash), unhexlify(request_tag)
        # What the tag covers (pos.uplink's docstring), made here, not by the terminal's code.
        signed = b"%s %s\n%d\n" % (method, path, nonce) + body_hash + status
        if (
            self._cmac.digest(self._request_cipher, signed) != request_tag
            or nonce <= self._nonce
            or sha256(request[end + 4 :]).digest() != body_hash
        ):
            return b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"
        self._nonce = nonce
        name = path.split(b"/")[-1].split(b"?")[0].decode()
        self.asked.append(name)
        if name not in ("versions", "faults", "records"):
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        v = self.versions
        body = (
            b'{"server_time": 0, "config": %d, "blacklist": %d, "commands": %d,'
            b' "blacklist_whole": %s, "release": %d, "keys": %d}'
            % (v[0], v[1], v[2], b"true" if v[3] == 1 else b"false", v[4], v[5])
        )
        tag = hexlify(self._cmac.digest(self._reply_cipher, request_tag + body))
        return (
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-OneTill-Reply: %s\r\n\r\n"
            % (len(body), tag)
        ) + body


def _first_contact(versions, before=None):
    """(app, its board, how many times pos.downlink was loaded) once the app's first
    contact with a back end offering `versions` has been dealt with; before(app) first.
    The uplink is the real one, with its link key; the back end is at its connection."""
    board = Board(config_folder())
    board.store.write("downlink.key", LINK_KEY)
    back_end = _BackEnd(versions)
    board.uplink = Uplink(None, "127.0.0.1", 1, "T0001", None)
    board.uplink.connect = back_end.connect
    board.back_end = back_end
    app = App(board)
    app.start()
    board.uplink.queue = app.ledger.queue
    if before is not None:
        before(app)
    loaded = []
    with_downlink = app._with_downlink

    def counted():
        loaded.append(1)
        return with_downlink()

    app._with_downlink = counted

    async def main():
        spawn(app.uplink())
        for _ in range(300):
            await sleep_ms(10)
            if app._handled is not None:
                break  # the uplink's task ends with main

    run(main())
    return app, board, len(loaded)


def test_nothing_new_from_the_back_end_loads_no_downlink():
    versions = (0, 0, 0, 0, 0, 0)  # what a freshly provisioned terminal has
    app, board, loaded = _first_contact(versions)
    assert app._handled == versions
    assert loaded == 0
    assert app.terminal.link_up
    assert board.back_end.asked == ["versions"]  # signed, and its reply's tag checked


def test_the_contact_code_leaves_the_heap_after_a_contact():
    """pos.contact (the protocol's code, 2 KiB of heap) and pos.link (the connection's, 1.2
    KiB) are loaded for a contact (pos.app's _contact, pos.contact.head), and the app
    unloads both once the contact is over: only the uplink's state (pos.uplink) stays."""
    import pos.contact  # noqa: F401  # as a contact loads them
    import pos.link  # noqa: F401

    assert "pos.contact" in sys.modules and "pos.link" in sys.modules
    app, board, loaded = _first_contact((0, 0, 0, 0, 0, 0))
    assert app._handled is not None  # the contact happened
    assert "pos.contact" not in sys.modules and "pos.link" not in sys.modules


def test_a_newer_config_loads_the_downlink():
    versions = (3, 0, 0, 0, 0, 0)
    app, board, loaded = _first_contact(versions)
    assert loaded == 1
    assert app._handled == versions
    # The downlink asked for it; this back end has none to give, so it is refused, and
    # said so.
    assert board.back_end.asked == ["versions", "config"]
    assert [f for f in board.faults if "config: back end answered 404" in f], board.faults


def _received(app):
    from pos.compat import unload
    from pos.received import Received

    app.received = Received()
    unload("pos.received")
    return app.received


def test_a_config_once_refused_loads_no_downlink():
    versions = (3, 0, 0, 0, 0, 0)

    def refused(app):
        _received(app).refused[0] = 3

    app, board, loaded = _first_contact(versions, refused)
    assert loaded == 0 and app._handled == versions


def test_faults_to_upload_load_the_downlink_which_sends_them():
    def asked(app):
        _received(app).upload_faults = True

    app, board, loaded = _first_contact((0, 0, 0, 0, 0, 0), asked)
    assert loaded == 1
    assert board.back_end.asked == ["versions", "faults"] and not app.received.upload_faults


def test_a_release_on_trial_loads_the_downlink():
    def on_trial(app):
        app.board.store.write("update.txt", b"sw=2;trial")

    app, board, loaded = _first_contact((0, 0, 0, 0, 0, 0), on_trial)
    assert loaded == 1
