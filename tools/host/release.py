"""tools/release: the release signing key, signed releases of the core, and their check.

    tools/release keygen --out KEYDIR [--height 10|15]
    tools/release build --key KEYDIR --version N [--min-version M] [--image ROMFS] --out FILE
    tools/release verify --pub PUBFILE FILE

Parameters: HSS with one level of LMS_SHA256_M32_H10 (1,024 releases per key; --height 15
for 32,768) over LMOTS_SHA256_N32_W4. W4 rather than W8: the signature is 2,512 bytes
instead of 1,456 (either is about 2 % of the 128 KiB romfs partition, downloaded once), but
the terminal checks it with about 500 hashes on average instead of about 4,300, eight times
less time (`tools/bench update`), and keygen makes every leaf's full hash chains: an H15
key takes under a minute with W4 and about five with W8.

The key folder, written by keygen (the folder 0700):
    release.pub   the HSS public key (60 bytes, laid out in lib/pos/lms.py): what every
                  terminal is given to check releases with
    release.key   the private key and its state, 0600, 72 bytes, >4sHHII16s32sII: magic
                  b"OTRK", format 1, 0, LMS type, LM-OTS type, I, SEED, the next unused leaf
                  index, CRC-32 of the 68 bytes before it
    release.tree  the Merkle tree's nodes, node r at r * 32 (public values derived from the
                  key), so that a signature needs no recomputation of every leaf; rebuilt
                  from release.key when missing or damaged

Signing (build): the leaf index is advanced in release.key (temporary file, fsync, rename,
fsync of the folder) before the signature is even made, so a crash at any point wastes a
leaf at worst and never uses one twice; a key with no leaf left is refused. The one-time
signatures and the leaf public keys come from hsslms (PyPI; LM-OTS keys drawn from SEED as
RFC 8554 Appendix A says); the tree, the key file and the release format are ours. Each
signature is checked with the terminal's own code (pos.release, pos.lms) before the release
file is written (temporary file and rename: FILE is whole or absent).

The release file (lib/pos/release.py has the details, where the terminal reads it):
    header     52 bytes, >4sHHIII32s: magic b"OTRL", format 1, signature length, version,
               lowest installed version it may replace, image length, image SHA-256
    signature  the HSS signature of the 52 header bytes (2,512 bytes with an H10 key)
    image      the ROMFS image of the core
verify checks a file with the terminal's own code, exactly as a terminal would.
"""

import argparse
import fcntl
import hashlib
import os
import struct
import sys
import zlib
from concurrent.futures import ProcessPoolExecutor

from hsslms import LMOTS_ALGORITHM_TYPE, LM_OTS_Priv

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if os.path.join(ROOT, "lib") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "lib"))

from pos import lms  # noqa: E402  (the terminal's own code, from lib/)
from pos import release as release_format  # noqa: E402

PUBLIC_KEY_FILE = "release.pub"
PRIVATE_KEY_FILE = "release.key"
TREE_FILE = "release.tree"
LOCK_FILE = ".lock"
OTS_TYPE = 3  # LMOTS_SHA256_N32_W4
LMS_TYPES = {5: 5, 10: 6, 15: 7}  # height: LMS_SHA256_M32_H<height> (5 only for tests)
KEY_FORMAT = ">4sHHII16s32sII"
KEY_MAGIC = b"OTRK"
KEY_SIZE = struct.calcsize(KEY_FORMAT)
ROMFS_MAGIC = b"\xd2\xcd\x31"  # how MicroPython's ROMFS images begin
_N = 32
_D_LEAF = b"\x82\x82"
_D_INTR = b"\x83\x83"


class ReleaseToolError(Exception):
    """The operator's request cannot be carried out; the message says why, in one line."""


class Key:
    """The private key and its state as release.key holds them."""

    def __init__(self, lms_type, ots_type, identifier, seed, next_leaf):
        self.lms_type = lms_type
        self.ots_type = ots_type
        self.identifier = identifier  # RFC 8554's I
        self.seed = seed
        self.next_leaf = next_leaf

    @property
    def height(self):
        return 5 * (self.lms_type - 4)

    @property
    def leaves(self):
        return 1 << self.height

    def pack(self):
        body = struct.pack(
            KEY_FORMAT[:-1],
            KEY_MAGIC,
            1,
            0,
            self.lms_type,
            self.ots_type,
            self.identifier,
            self.seed,
            self.next_leaf,
        )
        return body + struct.pack(">I", zlib.crc32(body))

    @classmethod
    def unpack(cls, data, path):
        if len(data) != KEY_SIZE:
            raise ReleaseToolError("%s is not a release key (%d bytes)" % (path, len(data)))
        magic, key_format, _, lms_type, ots_type, identifier, seed, next_leaf, crc = struct.unpack(
            KEY_FORMAT, data
        )
        if magic != KEY_MAGIC or key_format != 1:
            raise ReleaseToolError("%s is not a release key" % path)
        if zlib.crc32(data[:-4]) != crc:
            raise ReleaseToolError("%s is damaged (checksum): restore it from backup" % path)
        if ots_type != OTS_TYPE or lms_type not in LMS_TYPES.values():
            raise ReleaseToolError("%s holds parameters this tool does not make" % path)
        return cls(lms_type, ots_type, identifier, seed, next_leaf)

    def public_key(self, root):
        return struct.pack(">III", 1, self.lms_type, self.ots_type) + self.identifier + root


def _ots_private(key, leaf):
    return LM_OTS_Priv(LMOTS_ALGORITHM_TYPE(key.ots_type), key.identifier, leaf, key.seed)


def _leaf_values(job):
    # One worker's share of leaves: H(I || u32(node) || D_LEAF || K) for each OTS public key K.
    lms_type, ots_type, identifier, seed, first, stop = job
    key = Key(lms_type, ots_type, identifier, seed, 0)
    values = []
    for leaf in range(first, stop):
        ots_public = _ots_private(key, leaf).gen_pub().pubkey[24:]
        node = struct.pack(">I", key.leaves + leaf)
        values.append(hashlib.sha256(identifier + node + _D_LEAF + ots_public).digest())
    return values


def compute_tree(key):
    """All 2 ** (height + 1) nodes (node 0 unused), the leaves spread over the CPU cores."""
    step = max(1, key.leaves // 64)
    jobs = [
        (
            key.lms_type,
            key.ots_type,
            key.identifier,
            key.seed,
            first,
            min(first + step, key.leaves),
        )
        for first in range(0, key.leaves, step)
    ]
    nodes = [b""] * (2 * key.leaves)
    with ProcessPoolExecutor() as pool:
        leaf_values = [value for values in pool.map(_leaf_values, jobs) for value in values]
    nodes[key.leaves :] = leaf_values
    for node in range(key.leaves - 1, 0, -1):
        nodes[node] = hashlib.sha256(
            key.identifier
            + struct.pack(">I", node)
            + _D_INTR
            + nodes[2 * node]
            + nodes[2 * node + 1]
        ).digest()
    nodes[0] = bytes(_N)
    return b"".join(nodes)


def write_durably(path, data, mode):
    """Write a whole file so that after a crash it holds either the old or the new bytes:
    a temporary file flushed to the disk, renamed over path, and the folder flushed."""
    temporary = path + ".tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as out:
        os.fchmod(out.fileno(), mode)  # whatever the umask
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    folder = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def keygen(out, height=10, say=print):
    """A new key pair in the folder out; refuses to overwrite a key."""
    if height not in LMS_TYPES:
        raise ReleaseToolError("--height must be 10 or 15")
    private_path = os.path.join(out, PRIVATE_KEY_FILE)
    if os.path.exists(private_path):
        raise ReleaseToolError("%s exists: a key is never overwritten" % private_path)
    os.makedirs(out, mode=0o700, exist_ok=True)
    key = Key(LMS_TYPES[height], OTS_TYPE, os.urandom(16), os.urandom(_N), 0)
    tree = compute_tree(key)
    public_key = key.public_key(tree[_N : 2 * _N])
    write_durably(os.path.join(out, TREE_FILE), tree, 0o644)
    write_durably(private_path, key.pack(), 0o600)
    write_durably(os.path.join(out, PUBLIC_KEY_FILE), public_key, 0o644)
    say(
        "%s: LMS_SHA256_M32_H%d with LMOTS_SHA256_N32_W4, %d signatures; public key %s"
        % (out, height, key.leaves, os.path.join(out, PUBLIC_KEY_FILE))
    )
    return public_key


def read_file(path, what):
    try:
        with open(path, "rb") as source:
            return source.read()
    except OSError as exc:
        raise ReleaseToolError("cannot read %s %s: %s" % (what, path, exc.strerror)) from None


def load_tree(folder, key, say=print):
    """release.tree, checked against release.pub; rebuilt from the key when it is not right."""
    public_key = read_file(os.path.join(folder, PUBLIC_KEY_FILE), "public key")
    tree_path = os.path.join(folder, TREE_FILE)
    try:
        tree = read_file(tree_path, "tree")
    except ReleaseToolError:
        tree = b""
    if len(tree) != 2 * key.leaves * _N or key.public_key(tree[_N : 2 * _N]) != public_key:
        say("%s is missing or damaged: rebuilding it from the key" % tree_path)
        tree = compute_tree(key)
        if key.public_key(tree[_N : 2 * _N]) != public_key:
            raise ReleaseToolError("%s does not belong to the key beside it" % PUBLIC_KEY_FILE)
        write_durably(tree_path, tree, 0o644)
    return tree, public_key


def reserve_leaf(folder):
    """The next unused leaf of the key in folder, and the key; the key file on disk already
    names the leaf after it when this returns."""
    path = os.path.join(folder, PRIVATE_KEY_FILE)
    key = Key.unpack(read_file(path, "private key"), path)
    if key.next_leaf >= key.leaves:
        raise ReleaseToolError(
            "the key in %s is exhausted: all %d signatures are used; make a new key with "
            "tools/release keygen and give terminals its public key" % (folder, key.leaves)
        )
    leaf = key.next_leaf
    key.next_leaf += 1
    write_durably(path, key.pack(), 0o600)
    return leaf, key


def sign(key, tree, leaf, message):
    """The HSS signature (one level) of message with the given leaf (RFC 8554, 5.4.1)."""
    ots_signature = _ots_private(key, leaf).sign(message)
    path = []
    node = key.leaves + leaf
    for _ in range(key.height):
        sibling = node ^ 1
        path.append(tree[sibling * _N : (sibling + 1) * _N])
        node >>= 1
    lms_signature = (
        struct.pack(">I", leaf) + ots_signature + struct.pack(">I", key.lms_type) + b"".join(path)
    )
    return struct.pack(">I", 0) + lms_signature


def build_image():
    """The ROMFS image of the core exactly as tools/deploy writes it to the romfs partition."""
    from tools.host import deploy, mpybuild

    try:
        _, base = deploy.bundle("esp32")
        return deploy.build_romfs_image(base, "esp32", deploy.romfs_partition_size())
    except (deploy.DeployError, mpybuild.BuildError) as exc:
        raise ReleaseToolError(str(exc)) from None


def build(key_folder, version, out, min_version=0, image_path=None, say=print):
    """Sign the ROMFS image (built from lib/, or image_path) as release `version`."""
    if not 0 < version < 1 << 32:
        raise ReleaseToolError("--version must be a whole number from 1 to 4294967295")
    if not 0 <= min_version < version:
        raise ReleaseToolError("--min-version must be below --version")
    if not os.path.isfile(os.path.join(key_folder, PRIVATE_KEY_FILE)):
        raise ReleaseToolError("%s holds no release key (%s)" % (key_folder, PRIVATE_KEY_FILE))
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        raise ReleaseToolError("no folder for %s" % out)
    image_path = image_path or build_image()
    image = read_file(image_path, "image")
    if not image.startswith(ROMFS_MAGIC):
        raise ReleaseToolError("%s is not a ROMFS image" % image_path)
    from tools.host import deploy

    capacity = deploy.romfs_partition_size()
    if len(image) > capacity:
        raise ReleaseToolError(
            "%s is %d bytes, the romfs partition %d" % (image_path, len(image), capacity)
        )
    # The private key is needed from here on: one build at a time per key folder.
    with open(os.path.join(key_folder, LOCK_FILE), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        leaf, key = reserve_leaf(key_folder)
        tree, public_key = load_tree(key_folder, key, say)
        signature_length = 4 + lms.lms_signature_size(key.ots_type, key.lms_type)
        header = release_format.pack_header(
            signature_length, version, min_version, len(image), hashlib.sha256(image).digest()
        )
        signature = sign(key, tree, leaf, header)
    release = header + signature + image
    _check_release(public_key, release, "the new release")
    write_release(out, release)
    say(
        "%s: version %d (replaces %d or later), image %d bytes, leaf %d of %d used"
        % (out, version, min_version, len(image), leaf + 1, key.leaves)
    )
    return leaf


def write_release(out, release):
    write_durably(out, release, 0o644)


class _Reader:
    """readinto over bytes, as the terminal's staging area is read."""

    def __init__(self, data):
        self._data = memoryview(data)

    def readinto(self, buf):
        count = min(len(buf), len(self._data))
        buf[:count] = self._data[:count]
        self._data = self._data[count:]
        return count


def _check_release(public_key, release, name):
    try:
        header = release_format.Header(release[: release_format.HEADER_SIZE])
        signature_end = release_format.HEADER_SIZE + header.signature_length
        signature = release[release_format.HEADER_SIZE : signature_end]
        release_format.check(public_key, header, signature, _Reader(release[signature_end:]))
    except release_format.ReleaseError as exc:
        raise ReleaseToolError("%s refused: %s" % (name, exc)) from None
    if len(release) != signature_end + header.image_length:
        raise ReleaseToolError("%s refused: bytes after the image" % name)
    return header


def verify(public_key_path, path, say=print):
    """Check a release file as a terminal would; returns its header."""
    public_key = read_file(public_key_path, "public key")
    if len(public_key) != lms.HSS_PUBLIC_KEY_SIZE:
        raise ReleaseToolError("%s is not a release public key" % public_key_path)
    header = _check_release(public_key, read_file(path, "release"), path)
    say(
        "%s: good: version %d (replaces %d or later), image %d bytes, SHA-256 %s"
        % (
            path,
            header.version,
            header.min_version,
            header.image_length,
            header.image_sha256.hex(),
        )
    )
    return header


# Each sub-command and its handler (mpremote's layout).
COMMANDS = {
    "keygen": lambda args: keygen(args.out, args.height),
    "build": lambda args: build(args.key, args.version, args.out, args.min_version, args.image),
    "verify": lambda args: verify(args.pub, args.file),
}


def main(argv):
    parser = argparse.ArgumentParser(prog="tools/release", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("keygen", help="make a release key pair (once, offline)")
    command.add_argument("--out", required=True, help="a new folder for the key")
    command.add_argument("--height", type=int, choices=(10, 15), default=10)
    command = commands.add_parser("build", help="build the core's ROMFS image and sign it")
    command.add_argument("--key", required=True, help="the key folder made by keygen")
    command.add_argument("--version", required=True, type=int, help="the code version, 1 up")
    command.add_argument(
        "--min-version", type=int, default=0, help="lowest installed version it may replace"
    )
    command.add_argument("--image", help="sign this ROMFS image instead of building one")
    command.add_argument("--out", required=True, help="the release file to write")
    command = commands.add_parser("verify", help="check a release file as a terminal would")
    command.add_argument("--pub", required=True, help="the release public key (release.pub)")
    command.add_argument("file")
    args = parser.parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (ReleaseToolError, OSError) as exc:
        sys.stderr.write("tools/release: %s\n" % exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
