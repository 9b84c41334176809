"""tools/release and the terminal's checks against an independent LMS implementation (hsslms
from PyPI), both ways: hsslms signatures verify with pos.lms on CPython and on the MicroPython
unix port, and tools/release keys and signatures verify with hsslms. Then the release file:
round trip, every kind of damage refused with a one-line reason, the leaf index on disk before
any signature leaves, and an exhausted key refused."""

import os
import stat
import struct
import subprocess

import pytest
from hsslms import INVALID, HSS_Priv, HSS_Pub
from hsslms import LMOTS_ALGORITHM_TYPE as OTS
from hsslms import LMS_ALGORITHM_TYPE as LMS

from pos import lms
from pos import release as release_format
from tools.host import release

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")
FAKE_IMAGE = release.ROMFS_MAGIC + bytes(range(256)) * 12  # only the magic is looked at

# Run on the MicroPython unix port: each line of the fixture is `lms N` (case N's key,
# signature and message are the binary files kN, sN and mN beside it) or
# `release KEY PATH INSTALLED`; prints one result line per fixture line. Binary files, not
# hex on the line: a 4 KB signature as hex is a 9 KB line, more contiguous heap than the
# terminal ever asks for (it reads a release's signature on its own), and at 96 KiB that
# allocation failed now and then with the heap's holes.
MICROPYTHON_CHECK = """
import gc, sys
from binascii import unhexlify
from pos import lms, release
folder = sys.argv[1].rsplit("/", 1)[0] + "/"
def read(name):
    gc.collect()
    with open(folder + name, "rb") as source:
        return source.read()
for line in open(sys.argv[1]):
    fields = line.split()
    if fields[0] == "lms":
        key, sig, msg = [read(kind + fields[1]) for kind in "ksm"]
        print("ok" if lms.verify(key, sig, msg) else "refused")
        key = sig = msg = None
    else:
        installed = int(fields[3]) if fields[3] != "-" else None
        with open(fields[2], "rb") as source:
            try:
                header = release.Header(source.read(release.HEADER_SIZE))
                signature = source.read(header.signature_length)
                release.check(unhexlify(fields[1]), header, signature, source, installed)
                print("ok")
            except release.ReleaseError as exc:
                print("refused: " + str(exc))
"""


def run_on_micropython(tmp_path, lines):
    fixture = tmp_path / "fixture.txt"
    fixture.write_text("\n".join(lines) + "\n")
    script = tmp_path / "check.py"
    script.write_text(MICROPYTHON_CHECK)
    env = dict(os.environ, MICROPYPATH=".frozen:" + os.path.join(ROOT, "lib"))
    result = subprocess.run(
        [MICROPYTHON, "-X", "heapsize=96k", str(script), str(fixture)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def hsslms_fixtures():
    """(expected, public key, signature, message) made by hsslms, good and damaged."""
    cases = []
    keys = (
        ([LMS.LMS_SHA256_M32_H10], OTS.LMOTS_SHA256_N32_W4),  # the release key's own types
        ([LMS.LMS_SHA256_M32_H5], OTS.LMOTS_SHA256_N32_W8),
        ([LMS.LMS_SHA256_M32_H5], OTS.LMOTS_SHA256_N32_W2),
        ([LMS.LMS_SHA256_M32_H5, LMS.LMS_SHA256_M32_H5], OTS.LMOTS_SHA256_N32_W4),
    )
    for lms_types, ots_type in keys:
        private = HSS_Priv(lms_types, ots_type, num_cores=2)
        public_key = private.gen_pub().get_pubkey()
        for message in (b"", b"release header", os.urandom(1000)):
            signature = private.sign(message)
            cases.append((True, public_key, signature, message))
        cases.append((False, public_key, signature, message + b"!"))
        damaged = bytearray(signature)
        damaged[len(damaged) // 2] ^= 4
        cases.append((False, public_key, bytes(damaged), message))
        cases.append((False, public_key, signature[:-1], message))
        other_key = HSS_Priv(lms_types[:1] * len(lms_types), ots_type, num_cores=2)
        cases.append((False, other_key.gen_pub().get_pubkey(), signature, message))
    return cases


def test_hsslms_signatures_verify_with_pos_lms_on_both_runtimes(tmp_path):
    cases = hsslms_fixtures()
    for expected, public_key, signature, message in cases:
        assert lms.verify(public_key, signature, message) is expected
    lines = []
    for number, (_, key, sig, msg) in enumerate(cases):
        for kind, data in (("k", key), ("s", sig), ("m", msg)):
            (tmp_path / ("%s%d" % (kind, number))).write_bytes(data)
        lines.append("lms %d" % number)
    results = run_on_micropython(tmp_path, lines)
    assert results == ["ok" if expected else "refused" for expected, *_ in cases]


def make_key(tmp_path, height=5):
    folder = str(tmp_path / "key")
    release.keygen(folder, height=height, say=lambda text: None)
    return folder


def build(folder, tmp_path, version, name="release.bin", min_version=0):
    image = tmp_path / "image.romfs"
    image.write_bytes(FAKE_IMAGE)
    out = str(tmp_path / name)
    release.build(folder, version, out, min_version, str(image), say=lambda text: None)
    return out


def split(path):
    with open(path, "rb") as source:
        data = source.read()
    header = release_format.Header(data[: release_format.HEADER_SIZE])
    end = release_format.HEADER_SIZE + header.signature_length
    return header, data[release_format.HEADER_SIZE : end], data[end:]


def test_release_keys_and_signatures_verify_with_hsslms(tmp_path):
    folder = make_key(tmp_path)
    with open(os.path.join(folder, release.PUBLIC_KEY_FILE), "rb") as source:
        public_key = source.read()
    verifier = HSS_Pub(public_key)
    for version in (1, 2, 3):
        header, signature, image = split(build(folder, tmp_path, version))
        verifier.verify(header.data, signature)  # raises hsslms.INVALID if it does not hold
        assert struct.unpack(">II", signature[:8]) == (0, version - 1)  # Nspk 0, leaf q
        assert image == FAKE_IMAGE and header.version == version
    with pytest.raises(INVALID):
        verifier.verify(header.data[:-1] + b"\x00", signature)


def test_keygen_writes_an_h10_key_private_to_its_owner(tmp_path, capsys):
    folder = str(tmp_path / "key")
    assert release.main(["keygen", "--out", folder]) == 0
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(folder, release.PRIVATE_KEY_FILE)).st_mode) == 0o600
    with open(os.path.join(folder, release.PUBLIC_KEY_FILE), "rb") as source:
        public_key = source.read()
    assert public_key[:12] == struct.pack(">III", 1, 6, 3)  # L=1, H10, W4
    assert os.path.getsize(os.path.join(folder, release.TREE_FILE)) == 2048 * 32
    assert "1024 signatures" in capsys.readouterr().out
    assert release.main(["keygen", "--out", folder]) == 2  # never over an existing key
    assert "never overwritten" in capsys.readouterr().err


def test_build_and_verify_the_core_image(tmp_path, capsys):
    folder = make_key(tmp_path)
    out = str(tmp_path / "v7.bin")
    assert release.main(["build", "--key", folder, "--version", "7", "--min-version", "5",
                         "--out", out]) == 0  # fmt: skip
    public_key = os.path.join(folder, release.PUBLIC_KEY_FILE)
    assert release.main(["verify", "--pub", public_key, out]) == 0
    assert "good: version 7 (replaces 5 or later)" in capsys.readouterr().out
    header, _, image = split(out)
    with open(os.path.join(ROOT, "build", "onetill-esp32.romfs"), "rb") as source:
        assert image == source.read()  # the image tools/deploy writes
    assert image.startswith(release.ROMFS_MAGIC)
    assert header.image_length == len(image) <= 0x20000  # fits the romfs partition


def damaged_copies(path):
    """(what, bytes) for every kind of damage to a release file."""
    with open(path, "rb") as source:
        data = source.read()
    header_size = release_format.HEADER_SIZE
    signature_end = header_size + struct.unpack(">H", data[6:8])[0]

    def flipped(offset, bit=1):
        changed = bytearray(data)
        changed[offset] ^= bit
        return bytes(changed)

    copies = [
        ("magic", flipped(0)),
        ("format", flipped(5)),
        ("signature length", flipped(7, 4)),
        ("version", flipped(11)),
        ("lowest version", flipped(15)),
        ("image length", flipped(19)),
        ("image hash", flipped(30)),
        ("signature leaf", flipped(header_size + 7)),
        ("signature C", flipped(header_size + 20)),
        ("signature path", flipped(signature_end - 1)),
        ("image first byte", flipped(signature_end)),
        ("image last byte", flipped(len(data) - 1)),
        ("extra byte", data + b"\x00"),
    ]
    for length in (0, 10, header_size, header_size + 100, signature_end, len(data) - 1):
        copies.append(("cut at %d" % length, data[:length]))
    return copies


def test_every_damaged_release_refused_in_one_line(tmp_path, capsys):
    folder = make_key(tmp_path)
    good = build(folder, tmp_path, 2)
    public_key = os.path.join(folder, release.PUBLIC_KEY_FILE)
    for what, data in damaged_copies(good):
        damaged = tmp_path / "damaged.bin"
        damaged.write_bytes(data)
        assert release.main(["verify", "--pub", public_key, str(damaged)]) == 2, what
        err = capsys.readouterr().err
        assert err.startswith("tools/release: ") and err.count("\n") == 1, (what, err)
        assert "Traceback" not in err
    other = make_key(tmp_path / "other")
    other_key = os.path.join(other, release.PUBLIC_KEY_FILE)
    assert release.main(["verify", "--pub", other_key, good]) == 2
    assert "bad signature" in capsys.readouterr().err
    assert release.main(["verify", "--pub", good, good]) == 2  # not a public key
    assert release.main(["verify", "--pub", public_key, str(tmp_path / "none")]) == 2
    assert release.main(["verify", "--pub", public_key, good]) == 0


def test_terminal_check_on_micropython_agrees(tmp_path):
    folder = make_key(tmp_path)
    good = build(folder, tmp_path, 3, min_version=2)
    with open(os.path.join(folder, release.PUBLIC_KEY_FILE), "rb") as source:
        key = source.read().hex()
    lines = ["release %s %s -" % (key, good)]
    for installed in (2, 1, 3):
        lines.append("release %s %s %d" % (key, good, installed))
    expected = [
        "ok",
        "ok",
        "refused: version 3 needs 2 or later installed",
        "refused: version 3 is not newer than 3",
    ]
    for number, (what, data) in enumerate(damaged_copies(good)):
        path = tmp_path / ("damaged-%d.bin" % number)
        path.write_bytes(data)
        lines.append("release %s %s -" % (key, path))
        expected.append(what)
    results = run_on_micropython(tmp_path, lines)
    assert results[:4] == expected[:4]
    for result, what in zip(results[4:], expected[4:], strict=True):
        # An extra byte after the image is for the caller (it knows where the staging ends).
        assert result.startswith("refused: ") or what == "extra byte", (what, result)


class PowerCut(BaseException):
    """The machine stops here (not an error any handler would catch)."""


def next_leaf(folder):
    path = os.path.join(folder, release.PRIVATE_KEY_FILE)
    with open(path, "rb") as source:
        return release.Key.unpack(source.read(), path).next_leaf


def test_leaf_index_reaches_the_disk_before_the_signature_leaves(tmp_path, monkeypatch):
    folder = make_key(tmp_path)
    seen = []

    def cut_while_writing(out, data):
        seen.append(next_leaf(folder))  # what the disk says as the release is written
        raise PowerCut

    monkeypatch.setattr(release, "write_release", cut_while_writing)
    with pytest.raises(PowerCut):
        build(folder, tmp_path, 1)
    assert seen == [1]
    assert not os.path.exists(tmp_path / "release.bin")
    monkeypatch.undo()
    _, signature, _ = split(build(folder, tmp_path, 1))
    assert struct.unpack(">I", signature[4:8])[0] == 1  # leaf 0 is never used again


def test_cut_while_advancing_the_index_signs_nothing(tmp_path, monkeypatch):
    folder = make_key(tmp_path)
    signed = []
    monkeypatch.setattr(release, "sign", lambda *args: signed.append(args))

    def cut(source, target):
        raise PowerCut

    monkeypatch.setattr(release.os, "replace", cut)
    with pytest.raises(PowerCut):
        build(folder, tmp_path, 1)
    monkeypatch.undo()
    assert signed == [] and next_leaf(folder) == 0
    assert not os.path.exists(tmp_path / "release.bin")


def test_exhausted_key_refused(tmp_path, capsys):
    folder = make_key(tmp_path)  # height 5: 32 signatures
    for version in range(1, 33):
        build(folder, tmp_path, version)
    with open(os.path.join(folder, release.PRIVATE_KEY_FILE), "rb") as source:
        before = source.read()
    out = str(tmp_path / "33.bin")
    image = str(tmp_path / "image.romfs")
    argv = ["build", "--key", folder, "--version", "33", "--image", image, "--out", out]
    assert release.main(argv) == 2
    assert "exhausted: all 32 signatures are used" in capsys.readouterr().err
    assert not os.path.exists(out)
    with open(os.path.join(folder, release.PRIVATE_KEY_FILE), "rb") as source:
        assert source.read() == before


def test_damaged_key_refused_and_missing_tree_rebuilt(tmp_path, capsys):
    folder = make_key(tmp_path)
    os.remove(os.path.join(folder, release.TREE_FILE))
    good = build(folder, tmp_path, 1)
    assert release.main(["verify", "--pub", os.path.join(folder, "release.pub"), good]) == 0
    key_path = os.path.join(folder, release.PRIVATE_KEY_FILE)
    with open(key_path, "r+b") as key:
        key.seek(40)
        damaged = key.read(1)[0] ^ 0xFF  # a byte of the random seed: changed, whatever it was
        key.seek(40)
        key.write(bytes([damaged]))
    image = str(tmp_path / "image.romfs")
    argv = ["build", "--key", folder, "--version", "2", "--image", image, "--out", good]
    assert release.main(argv) == 2
    assert "damaged (checksum)" in capsys.readouterr().err
    big = tmp_path / "big.romfs"
    big.write_bytes(release.ROMFS_MAGIC + bytes(0x20000))  # one byte past the partition
    for argv, reason in (
        (["--version", "0", "--image", image], "--version must be"),
        (["--version", "2", "--image", key_path], "is not a ROMFS image"),
        (["--version", "2", "--image", str(big)], "bytes, the romfs partition 131072"),
    ):
        assert release.main(["build", "--key", folder, "--out", good] + argv) == 2, argv
        err = capsys.readouterr().err
        assert reason in err and err.count("\n") == 1, err
    argv = ["build", "--key", str(tmp_path / "none"), "--version", "2", "--out", good]
    assert release.main(argv) == 2
    assert "holds no release key" in capsys.readouterr().err
