"""Over-the-air updates on the terminal: a release offered in the back end's authenticated
versions reply is downloaded in chunks into /state/update.bin, checked, and installed at an
idle moment by the boot code (pos.install). Loaded by pos.downlink only while it handles an
offer or a trial, and unloaded after: it takes no heap while the terminal sells.

Each chunk is a signed request (GET release?version=V&offset=O); the reply's bytes are
appended to the staged file, so a lost link or a power cut loses at most the chunk under
way and the download resumes from the file's size (update.dl names the version it holds:
another offer starts afresh). The chunks need no tag of their own: nothing in them is used
before the whole file passes pos.release.check with the release public key provisioned in
/config/release.pub (which no downlink document can change): the LMS signature over the
header (checked as soon as the header is in, so a foreign or old release is refused
before its image is fetched), the version against what is installed and the highest ever
confirmed (anti-rollback), the image's length against the romfs partition, its SHA-256.
A refused release is named in update.ref and never fetched again; the heartbeat says
ota=refused:V and the fault log why.
"""

import struct

from pos import install
from pos.compat import const

RELEASE_KEY = "release.pub"  # in the config folder, written by tools/provision
DOWNLOADING = "update.dl"
REFUSED = "update.ref"
ROMFS_SIZE = const(0x20000)  # the romfs partition of firmware/partitions.csv
CHUNK = const(8192)  # bytes asked for per request
_PIECE = const(512)
_TIMEOUT_S = const(30)  # a connection's, for a chunk: pos.downlink's too
_HEADER = const(52)


def _path(store, name):
    return store.folder + "/" + name


def _version_in(store, name):
    data = store.read(name)
    return struct.unpack(">I", data)[0] if data and len(data) == 4 else 0


def _say(app, state, word, version):
    store = app.board.store
    text = ("sw=%d;ota=%s:%d" % (state[2], word, version)).encode()
    if store.read(install.TEXT) != text:
        store.write(install.TEXT, text)
        app.update_text = None  # the heartbeat's copy (pos.app) read again


async def after_contact(app, offered):
    """The first authenticated exchange of a boot confirms a version on trial; then an
    offered release newer than what is installed is fetched and checked."""
    store = app.board.store
    state = install.read_state(store)
    if state[0] == install.TRIAL:
        state = [install.IDLE, 0, state[2], 0, state[4], max(state[5], state[2])]
        install.write_state(store, state)
        app.update_text = None
        app.board.fault("update: version %d confirmed" % state[2])
    if not offered or offered <= max(state[2], state[5]):
        return
    received = app.received
    if received.update == offered or offered == _version_in(store, REFUSED):
        return
    if state[0] == install.ROLLED_BACK and offered == state[3]:
        return  # it failed its trial here: a newer release is needed
    if _version_in(store, DOWNLOADING) != offered:
        store.remove(install.STAGED)
        store.write(DOWNLOADING, struct.pack(">I", offered))
    _say(app, state, "downloading", offered)
    try:
        await _download(app.board, state, offered)
        _check(app.board, state, offered, True)
    except UpdateRefused as exc:
        store.write(REFUSED, struct.pack(">I", offered))
        store.remove(install.STAGED)
        store.remove(DOWNLOADING)
        _say(app, state, "refused", offered)
        app.board.fault("update: %d refused: %s" % (offered, exc))
        return
    received.update = offered
    _say(app, state, "staged", offered)
    app.board.fault("update: %d staged and checked; installs when idle" % offered)


class UpdateRefused(Exception):
    """The staged release is not to be installed; the message says why."""


async def _download(board, state, version):
    """Fetch the rest of the release file, chunk by chunk; the header's signature is
    checked as soon as it is whole. UplinkError (the link) leaves what arrived."""
    from pos.contact import head, read_head
    from pos.uplink import UplinkError

    uplink = board.uplink
    store = board.store
    path = _path(store, install.STAGED)
    total = signed = 0
    while True:
        have = store.size(install.STAGED) or 0
        if have >= _HEADER and not total:
            with open(path, "rb") as staged:
                total, signed = _header_total(staged.read(_HEADER))
        if signed and have >= signed:
            _check(board, state, version, False)
            signed = 0
        if total and have >= total:
            if have > total:
                raise UpdateRefused("the download is longer than the release")
            return
        asking = head(uplink, "GET", "release?version=%d&offset=%d" % (version, have), b"")
        reader, writer = await uplink.connect(_TIMEOUT_S)  # each step within it (pos.link)
        try:
            writer.write(asking)
            asking = None
            await writer.drain()
            status, length, _ = await read_head(reader, CHUNK)
            if status == 404:
                raise UpdateRefused("the back end no longer offers it")
            if status != 200 or not length:
                raise UplinkError("release: back end answered %d" % status)
            with open(path, "ab") as out:
                while length:
                    piece = await reader.read(min(length, _PIECE))
                    if not piece:
                        raise UplinkError("release: reply cut short")
                    out.write(piece)
                    length -= len(piece)
        finally:
            writer.close()
            await writer.wait_closed()


def _header_total(header):
    from pos.release import Header, ReleaseError

    try:
        parsed = Header(header)
    except ReleaseError as exc:
        raise UpdateRefused(str(exc)) from None
    if parsed.image_length > ROMFS_SIZE:
        raise UpdateRefused(
            "image of %d bytes does not fit the %d-byte romfs partition"
            % (parsed.image_length, ROMFS_SIZE)
        )
    signed = _HEADER + parsed.signature_length
    return signed + parsed.image_length, signed


def _check(board, state, offered, whole):
    """The staged file as pos.release checks it, before anything changes: the header alone
    (its signature and versions), or whole, the image too."""
    from pos.release import Header, ReleaseError, check

    key = None
    try:
        with open(board.config_folder + "/" + RELEASE_KEY, "rb") as source:
            key = source.read()
    except OSError:
        pass
    if key is None or len(key) != 60:
        raise UpdateRefused("no release key in the config: provision this terminal again")
    path = _path(board.store, install.STAGED)
    try:
        with open(path, "rb") as staged, open(path, "rb") as image:
            header = Header(staged.read(_HEADER))
            if header.version != offered:
                raise UpdateRefused("offered as %d, signed as %d" % (offered, header.version))
            image.seek(_HEADER + header.signature_length)
            signature = _Piecewise(staged, _HEADER, header.signature_length)
            check(key, header, signature, image if whole else None, max(state[2], state[5]))
    except ReleaseError as exc:
        raise UpdateRefused(str(exc)) from None


class _Piecewise:
    """Bytes of a file read as they are sliced (pos.lms takes 32 at a time), so the 2.5 KiB
    signature never needs one block of a heap that the TLS connections have broken up."""

    def __init__(self, source, start, length):
        self.source, self.start, self.length = source, start, length

    def __len__(self):
        return self.length

    def __getitem__(self, key):
        start = self.start + (key.start or 0)
        stop = self.start + (self.length if key.stop is None else min(key.stop, self.length))
        if stop - start > 64:
            return _Piecewise(self.source, start, stop - start)
        self.source.seek(start)
        return self.source.read(max(0, stop - start))


def install_now(app):
    """At an idle moment: the boot code saves the running image, copies the staged one in
    and starts it on trial (pos.install); the terminal restarts into it."""
    store = app.board.store
    state = install.read_state(store)
    target = app.received.update
    app.received.update = 0
    store.remove(DOWNLOADING)
    install.write_state(store, [install.SAVE, 0, state[2], target, state[2], state[5]])
    app.update_text = None
    app.board.fault("update: installing %d; restarting" % target)
    app.board.restart()
