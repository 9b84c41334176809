"""Signed software releases: stored after their signature checks with the release public key
(the back end never holds the private key), offered to a staged rollout of terminals in the
versions reply, served in chunks, and reported per terminal from the heartbeat."""

import hashlib
import io
import json
import time

from pos import release as release_format
from tools.host.backend.errors import DownlinkError

CHUNK_BYTES = 8192  # pos.update asks for at most this much per request


def bucket(tid):
    """The terminal's place (0-99) in a percentage rollout: fixed per terminal, so raising
    the percentage only adds terminals, and the same ones get every release first."""
    return int.from_bytes(hashlib.sha256(tid.encode()).digest()[:4], "big") % 100


class ReleasesMixin:
    """LedgerDB's releases."""

    def add_release(self, data, public_key, percent=100, terminals=None):
        """Check a release file (tools/release build) with the release public key and store
        it, offered to `percent` of the terminals or to the listed ones. Returns its header."""
        if len(public_key) != 60:
            raise DownlinkError("a release public key (release.pub) is 60 bytes")
        try:
            header = release_format.Header(data[: release_format.HEADER_SIZE])
            start = release_format.HEADER_SIZE + header.signature_length
            if len(data) != start + header.image_length:
                raise release_format.ReleaseError(
                    "the file is %d bytes, its header says %d"
                    % (len(data), start + header.image_length)
                )
            release_format.check(
                public_key,
                header,
                data[release_format.HEADER_SIZE : start],
                io.BytesIO(data[start:]),
            )
        except release_format.ReleaseError as exc:
            raise DownlinkError("release refused: %s" % exc) from None
        if not 0 <= percent <= 100:
            raise DownlinkError("--percent must be from 0 to 100")
        if terminals:
            for tid in terminals:
                self._terminal(tid)

        def store(db):
            if db.execute(
                "SELECT 1 FROM releases WHERE version = ?", (header.version,)
            ).fetchone():
                raise DownlinkError("release %d is stored already" % header.version)
            db.execute(
                "INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
                (
                    header.version,
                    header.min_version,
                    data,
                    header.image_sha256,
                    100 if terminals else percent,
                    json.dumps(sorted(terminals)) if terminals else None,
                    int(time.time()),
                ),
            )

        self._transaction(store)
        return header

    def releases(self):
        """[{version, min_version, size, sha256, rollout, stopped, created}], newest first."""
        out = []
        for row in self._db.execute(
            "SELECT version, min_version, length(file), sha256, percent, terminals, stopped, "
            "created FROM releases ORDER BY version DESC"
        ):
            version, min_version, size, digest, percent, terminals, stopped, created = row
            out.append(
                {
                    "version": version,
                    "min_version": min_version,
                    "size": size,
                    "sha256": bytes(digest).hex(),
                    "rollout": json.loads(terminals) if terminals else "%d%%" % percent,
                    "stopped": bool(stopped),
                    "created": created,
                }
            )
        return out

    def stop_release(self, version):
        """Offer a release no more (terminals that installed it keep it)."""

        def work(db):
            found = db.execute(
                "UPDATE releases SET stopped = ? WHERE version = ?", (int(time.time()), version)
            )
            if not found.rowcount:
                raise DownlinkError("no release %d" % version)

        self._transaction(work)

    def offered_release(self, tid):
        """The newest release not stopped whose rollout takes this terminal (0: none)."""
        for version, percent, terminals in self._db.execute(
            "SELECT version, percent, terminals FROM releases WHERE stopped IS NULL "
            "ORDER BY version DESC"
        ):
            if terminals is not None:
                if tid in json.loads(terminals):
                    return version
            elif bucket(tid) < percent:
                return version
        return 0

    def release_chunk(self, tid, version, offset):
        """Up to CHUNK_BYTES of the release file from offset, or None unless that release
        is the one offered to this terminal."""
        if version != self.offered_release(tid):
            return None
        row = self._db.execute(
            "SELECT substr(file, ?, ?) FROM releases WHERE version = ?",
            (offset + 1, CHUNK_BYTES, version),
        ).fetchone()
        return bytes(row[0]) if row else None

    def release_report(self, tid, status):
        """What is offered to a terminal and what it says (sw=, ota= of its heartbeat)."""
        ota = status.get("ota", "")
        word, _, version = ota.partition(":")
        return {
            "offered": self.offered_release(tid),
            "running": int(status.get("sw", 0) or 0),
            "state": word or "-",
            "state_version": int(version) if version.isdigit() else None,
        }
