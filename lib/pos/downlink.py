"""The downlink: config, blacklist deltas and commands from the back end, each an encrypted
and authenticated document that is checked in full before anything changes.

Loaded only while documents are fetched (pos.app unloads it after), so it takes no heap while
the terminal sells. A document (all 16-byte blocks, so the MAC can run as the bytes arrive):

    0  "OTDL" | format 1 | kind ("C" config, "B" blacklist, "K" commands, "R" keys) | 0 0
    8  version (4, big-endian) | plain length (4, big-endian)
   16  IV (16, random)
   32  AES-128-CBC(payload, zero-padded to 16)
  end  AES-CMAC (16) over everything before it

under two keys derived from the terminal's own 16-byte downlink key (AES of two constant
blocks, as pos.seal.StateSealer does with the storage key). The downlink key itself is
derived from the BDK and the terminal's IK ID (derive_downlink_key): tools/provision puts it
in /state/downlink.key and the back end, which has both, recomputes it, so no database holds
it. TLS with the pinned CA says who sent a document; the MAC says it was made for this
terminal and not changed, the version that it is newer than what is in force, and the
encryption keeps cashier PIN hashes from anyone who asks the back end for a terminal's
config. The payload is streamed: decrypted into a temporary file (or small buffer) while the
MAC runs, and used only once the tag matches; anything else removes the temporary file.
"""

from pos import compat
from pos.compat import const

# Imports are inside the functions that use them and the module's own numbers are const():
# every global is an entry of the module's dict, which is made when the module is loaded, at
# a sync on a worn heap. With 39 names it grew to 752 bytes in one piece, which a terminal
# with the back end could not find after its first sale (tools/bench heap); 22 fit in 368.

CONFIG = "C"
BLACKLIST = "B"
COMMANDS = "K"
KEYS = "R"  # a key rotation (pos.keyrot)
_HEADER_SIZE = const(32)
_TAG_SIZE = const(16)
_CHUNK = const(128)  # bytes read, decrypted and written at a time
MAX_PLAIN = {CONFIG: 32768, BLACKLIST: 65536, COMMANDS: 512, KEYS: 72}
PUSHED_CONFIG = "pushed.json"  # in the config folder, in force over the provisioned files
_TIMEOUT_S = const(30)


class DownlinkError(Exception):
    """A document that was refused or did not arrive; nothing changed. The message says why."""


def derive_downlink_key(bdk, ik_id):
    """The terminal's downlink key: NIST SP 800-108 counter mode with AES-CMAC under the
    BDK, label "OneTill downlink", context the IK ID, 128 bits."""
    from pos.seal import Cmac

    data = b"\x01OneTill downlink\x00" + bytes(ik_id) + b"\x00\x80"
    return bytes(Cmac().digest(bytes(bdk), data))


def _keys(downlink_key):
    derive = compat.aes(bytes(downlink_key), compat.AES_ECB)
    return derive.encrypt(b"\x11" * 16), derive.encrypt(b"\x12" * 16)


def seal_document(downlink_key, kind, version, payload, iv=None):
    """A sealed document (the back end makes them; the tests too)."""
    import os
    import struct

    from pos.seal import Cmac

    data_key, mac_key = _keys(downlink_key)
    if iv is None:
        iv = os.urandom(16)
    padded = bytearray(payload)
    while len(padded) % 16:
        padded.append(0)
    header = b"OTDL\x01" + kind.encode() + b"\x00\x00" + struct.pack(">II", version, len(payload))
    body = header + bytes(iv) + compat.aes(data_key, compat.AES_CBC, iv).encrypt(bytes(padded))
    return body + bytes(Cmac().digest(mac_key, body))


class _Opener:
    """Runs AES-CMAC over whole blocks as they arrive (no copy of the document is kept) and
    decrypts the payload beside it."""

    def __init__(self, downlink_key, header):
        from pos.seal import _double

        data_key, mac_key = _keys(downlink_key)
        self._mac = compat.aes(mac_key, compat.AES_ECB)
        self._state = bytearray(16)
        self._subkey = bytearray(16)
        self._mac.encrypt(self._state, self._subkey)  # L = AES(K, 0)
        _double(bytearray(self._subkey), self._subkey)  # K1: every message ends on a block
        self._last = bytearray(16)  # the block held back: the last one is MACed with K1
        self._held = False
        self.plain = bytearray(_CHUNK)
        self._update(header)
        self._cipher = compat.aes(data_key, compat.AES_CBC, bytes(header[16:32]))

    def _update(self, data):
        state = self._state
        for offset in range(0, len(data), 16):
            if self._held:
                for i in range(16):
                    state[i] ^= self._last[i]
                self._mac.encrypt(state, state)
            self._last[:] = data[offset : offset + 16]
            self._held = True

    def decrypt(self, chunk):
        """MAC and decrypt one chunk (a multiple of 16, at most _CHUNK bytes); returns a view
        of the plain bytes (the buffer is reused)."""
        self._update(chunk)
        view = memoryview(self.plain)[: len(chunk)]
        self._cipher.decrypt(chunk, view)
        return view

    def check(self, tag):
        state = self._state
        for i in range(16):
            state[i] ^= self._last[i] ^ self._subkey[i]
        self._mac.encrypt(state, state)
        difference = len(tag) ^ _TAG_SIZE
        for i in range(min(len(tag), _TAG_SIZE)):
            difference |= state[i] ^ tag[i]
        if difference:
            raise DownlinkError("MAC does not match: not from our back end, or altered")


class Downlink:
    def __init__(self, uplink, downlink_key, config_folder, store):
        self.uplink = uplink
        self.key = downlink_key
        self.config_folder = config_folder
        self.store = store
        self.timeout_s = _TIMEOUT_S

    async def fetch(self, kind, current, since, out):
        """GET the newest document of a kind and write its payload to out (a file or
        stream); returns its version. DownlinkError (out then holds garbage) unless the
        document is whole, has a matching MAC and is newer than `current`."""
        from pos.uplink import UplinkError

        try:
            return await self._fetch(kind, current, since, out)  # each step within timeout_s
        except DownlinkError:
            raise
        except UplinkError as exc:
            raise DownlinkError(str(exc)) from None
        except Exception as exc:  # OSError, TLS, EOFError when cut short, a timeout
            raise DownlinkError("no answer: %r" % (exc,)) from None

    async def _fetch(self, kind, current, since, out):
        import struct

        from pos.contact import head, read_head

        name = (
            "config"
            if kind == CONFIG
            else "blacklist"
            if kind == BLACKLIST
            else "keys"
            if kind == KEYS
            else "commands"
        )
        asking = head(self.uplink, "GET", "%s?since=%d" % (name, since), b"")
        reader, writer = await self.uplink.connect(self.timeout_s)
        try:
            writer.write(asking)
            asking = None
            await writer.drain()
            status, length, _ = await read_head(reader, 1 << 20)
            if status != 200:
                raise DownlinkError("%s: back end answered %d" % (name, status))
            header = await reader.readexactly(_HEADER_SIZE)
            if header[:5] != b"OTDL\x01" or header[5:8] != kind.encode() + b"\x00\x00":
                raise DownlinkError("%s: not a %s document" % (name, name))
            version, plain_size = struct.unpack_from(">II", header, 8)
            padded = (plain_size + 15) // 16 * 16
            if plain_size > MAX_PLAIN[kind] or length != _HEADER_SIZE + padded + _TAG_SIZE:
                raise DownlinkError("%s: document of the wrong size" % name)
            if version <= current:
                raise DownlinkError(
                    "%s: version %d is not newer than %d" % (name, version, current)
                )
            opener = _Opener(self.key, header)
            left = padded
            while left:
                size = _CHUNK if left > _CHUNK else left
                plain = opener.decrypt(await reader.readexactly(size))
                left -= size
                keep = size if left else size - (padded - plain_size)
                out.write(plain[:keep])
            opener.check(await reader.readexactly(_TAG_SIZE))
            return version
        finally:
            writer.close()
            await writer.wait_closed()

    async def config(self, current):
        """Fetch, check and install a newer config: (version, merchants, cashiers), in force
        at the next start and for the app to swap in at an idle moment."""
        import gc
        import json

        from pos.compat import unload

        path = self.config_folder + "/" + PUSHED_CONFIG
        temporary = path + ".new"
        try:
            with open(temporary, "wb") as out:
                version = await self.fetch(CONFIG, current, current, out)
                out.flush()
            try:
                gc.collect()  # the parser is loaded into what the fetch left behind
                from pos import config

                with open(temporary) as source:
                    parsed = config.parse_pushed(json.load(source))
            except ValueError as exc:  # ConfigError, or not JSON
                raise DownlinkError("config %d refused: %s" % (version, exc)) from None
            finally:
                config = None
                unload("pos.config")
            if parsed[0] != version:
                raise DownlinkError("config %d says it is version %d" % (version, parsed[0]))
        except BaseException:
            _remove(temporary)
            raise
        import os

        os.rename(temporary, path)
        return parsed

    async def blacklist(self, blacklist, whole=False):
        """Fetch the delta from the list's version to the newest (whole: the whole list, at
        this version or newer) and merge it in. The payload: the base version the delta
        applies to (0: the whole list, which replaces ours), the counts of tokens to add and
        to remove (4 bytes each), then the tokens. A delta from any other base is refused."""
        import struct

        from pos.blacklist import TOKEN_SIZE, BlacklistError

        path = blacklist.path + ".delta"
        current = blacklist.version
        try:
            with open(path, "wb") as out:
                since = 0 if whole else current
                version = await self.fetch(BLACKLIST, current - (1 if whole else 0), since, out)
            with open(path, "rb") as source:
                counts = source.read(12)
                size = source.seek(0, 2)
            if len(counts) != 12:
                raise DownlinkError("blacklist %d: no counts" % version)
            base, adding, removing = struct.unpack(">III", counts)
            if base and base != current:
                raise DownlinkError(
                    "blacklist %d: a delta from %d, the list is at %d" % (version, base, current)
                )
            if size != 12 + (adding + removing) * TOKEN_SIZE:
                raise DownlinkError("blacklist %d: counts do not match its size" % version)
            try:
                blacklist.apply(
                    version,
                    _FileTokens(path, 12, adding),
                    _FileTokens(path, 12 + adding * TOKEN_SIZE, removing),
                    not base,
                )
            except BlacklistError as exc:
                raise DownlinkError("blacklist %d refused: %s" % (version, exc)) from None
        finally:
            _remove(path)
        return version, adding, removing

    async def commands(self, done):
        """Fetch the commands queued after id `done`: [(id, name)], in order."""
        import json
        from io import BytesIO

        out = BytesIO()
        version = await self.fetch(COMMANDS, done, done, out)
        try:
            listed = json.loads(out.getvalue())
            commands = []
            for entry in listed:
                number, name = entry
                if not isinstance(number, int) or not isinstance(name, str) or number <= done:
                    raise ValueError
                done = number
                commands.append((number, name))
        except (ValueError, TypeError):
            raise DownlinkError("commands %d: not a list of [id, name]" % version) from None
        if not commands or done != version:
            raise DownlinkError("commands %d: ids do not end at the version" % version)
        return commands

    async def keys(self, generation):
        """Fetch the newest key rotation (above the generation in force): (version,
        payload), checked by pos.keyrot before it is staged."""
        from io import BytesIO

        out = BytesIO()
        version = await self.fetch(KEYS, generation, generation, out)
        return version, out.getvalue()


class _FileTokens:
    """`count` 6-byte tokens from a file at an offset, read one at a time when iterated."""

    def __init__(self, path, offset, count):
        self.path, self.offset, self.count = path, offset, count

    def __len__(self):
        return self.count

    def __iter__(self):
        with open(self.path, "rb") as source:
            source.seek(self.offset)
            for _ in range(self.count):
                yield source.read(6)


# --- what the app does with it (functions of the app, so pos.app itself stays small) -------

_FAULT_LOG_BYTES = const(2048)  # the tail of the fault log that the faultlog command sends


async def catch_up(app):
    """Fetch what the back end has newer. A document that is refused changes nothing and is
    reported (fault log, heartbeat) and not fetched again; one that did not arrive is."""
    board = app.board
    uplink = board.uplink
    from pos.received import Received

    if app.received is None:
        app.received = Received()
    received = app.received
    versions = uplink.versions
    todo = app.wanted()
    key = board.store.read("downlink.key")
    if todo[0] or todo[1] or todo[2] or todo[3]:
        if key is None or len(key) != 16:
            received.refused[:] = versions[:3] + versions[5:6]
            _refuse(app, "no downlink key: provision this terminal again")
            app.handled(versions)
            return
    link = Downlink(uplink, key, board.config_folder, board.store)
    try:
        for index in range(4):
            if not todo[index]:
                continue
            try:
                if index == 0:
                    parsed = await link.config(app.config_version)
                    app.config_version = parsed[0]
                    received.config = parsed[1], parsed[2], parsed[3]
                    board.fault("config %d installed" % parsed[0])
                    parsed = None
                elif index == 3:
                    version, payload = await link.keys(app.key_generation)
                    from pos import keyrot
                    from pos.compat import unload

                    try:
                        keyrot.stage(app, version, payload, key)
                    except keyrot.RotationError as exc:
                        raise DownlinkError(str(exc)) from None
                    finally:
                        keyrot = None
                        unload("pos.keyrot")
                        unload("pos.keywrap")
                    received.keys = True
                    board.fault("keys %d staged: installed at an idle moment" % version)
                elif index == 1:
                    board.fault(
                        "blacklist %d: %d added, %d removed"
                        % await link.blacklist(app.blacklist, versions[3])
                    )
                else:
                    last = received.commands[-1][0] if received.commands else app.command_done
                    received.commands += await link.commands(last)
            except DownlinkError as exc:
                received.refused[index] = versions[5 if index == 3 else index]
                _refuse(app, str(exc))
        if received.upload_faults:
            from pos.contact import request

            await request(uplink, "POST", "faults", _fault_tail(board))
            received.upload_faults = False
            board.fault("fault log sent")
        link = None
        await _update(app, versions[4])
        app.handled(versions)
    except Exception as exc:  # the link went down: what is missing is fetched again later
        board.fault("downlink: %r" % (exc,))


async def _update(app, offered):
    """Confirm a version on trial, fetch and check an offered release (pos.update, loaded
    only when there is something to do: loading it leaves its names interned for good)."""
    if not app.release_due(offered):
        return
    from pos import update
    from pos.compat import unload

    try:
        await update.after_contact(app, offered)
    finally:
        update = None
        for name in ("pos.update", "pos.install", "pos.release", "pos.lms"):
            unload(name)


def _refuse(app, text):
    app.received.refused_text = ";refused=%d,%d,%d,%d" % tuple(app.received.refused)
    app.board.fault("downlink refused: " + text)


def _fault_tail(board):
    path = board.fault_log_path
    if path is None:
        return b"(this board keeps no fault log)"
    try:
        with open(path, "rb") as log:
            size = log.seek(0, 2)
            log.seek(max(0, size - _FAULT_LOG_BYTES))
            return log.read(_FAULT_LOG_BYTES) or b"(empty)"
    except OSError:
        return b"(no fault log yet)"


def _remove(path):
    import os

    try:
        os.remove(path)
    except OSError:
        pass
