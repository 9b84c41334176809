"""tools/provision: make a terminal's identity and the LittleFS image of its vfs partition.

    tools/provision --config DIR --bdk-file KEY --terminal-id T0001 --out OUT
                    [--register BACKEND.db] [--flash-image] [--dry-run]

DIR holds terminal.json, merchants.json and cashiers.json (checked with the terminal's own
parser first: a malformed file stops here, not on the device), and optionally wifi.json,
uplink.json and ca.der. The tool draws a fresh IK ID and device storage key, derives the
initial key from the BDK (the BDK itself never goes on the terminal), and writes:
    OUT/vfs.img        LittleFS with /config/* and /state/device.key, /state/downlink.key
                       (the key of the back end's documents, from the BDK and the IK ID:
                       the back end recomputes it, nothing to register), in the geometry
                       MicroPython uses for the ESP32 vfs (4 KiB blocks, 32-byte read/prog)
    OUT/statelog.img   the statelog partition (lib/pos/statelog.py): the DUKPT registers,
                       sealed with the device key, and an empty ledger (tools/flash
                       --statelog writes it)
    OUT/identity.json  terminal ID and IK ID (no keys)
    OUT/flash.bin      with --flash-image: a whole 4 MiB image (partition table, statelog
                       and vfs), which the simulator runs and tools/recover reads
and with --register adds the terminal and its merchants to the back end's database.
"""

import argparse
import json
import os
import secrets
import sys
from binascii import hexlify, unhexlify

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "lib"), os.path.join(ROOT, "tools", "emu")]

from pos.derive import derive_initial_key  # noqa: E402
from pos.downlink import derive_downlink_key  # noqa: E402  (after the path is set)
from pos.journal import Journal  # noqa: E402
from tools.host import partitions  # noqa: E402

FLASH_SIZE = 0x400000
BLOCK = 4096
REQUIRED = ("terminal.json", "merchants.json", "cashiers.json")
OPTIONAL = ("wifi.json", "uplink.json", "ca.der")


class ProvisionError(Exception):
    """The config, keys or output cannot be used; the message says why."""


class _FsStore:
    """pos.store's interface over a littlefs-python filesystem."""

    def __init__(self, fs, folder):
        self._fs = fs
        self._folder = folder
        fs.makedirs(folder, exist_ok=True)

    def write(self, name, data):
        with self._fs.open(self._folder + "/" + name, "wb") as out:
            out.write(bytes(data))


def private(path, mode):
    """Open a file for writing that only its owner can read (0600, whatever the umask and
    whatever mode an earlier file of that name had): the vfs and flash images hold the
    device key, the DUKPT registers and the link key."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    return open(descriptor, mode)


def vfs_geometry():
    """(offset, size) of the vfs: from the end of the last partition to the end of flash."""
    end = max(offset + size for _, _, _, offset, size in partitions.read_csv())
    return end, FLASH_SIZE - end


def statelog_geometry():
    """(offset, size) of the statelog partition."""
    for name, _, _, offset, size in partitions.read_csv():
        if name == "statelog":
            return offset, size
    raise ProvisionError("partitions.csv has no statelog partition")


def statelog_image(device_key, initial_key, ik_id):
    """The statelog partition's bytes for a new terminal."""
    from norflash import NorFlash

    _, size = statelog_geometry()
    chip = NorFlash(size // BLOCK)
    Journal.provision(chip, device_key, initial_key, ik_id)
    return bytes(chip._ram)


def provision(config_dir, bdk, terminal_id, out_dir=None, flash_image=False, release_pub=None):
    """Build everything in memory, then write it to out_dir (None: a dry run). release_pub:
    the release public key file (tools/release keygen's release.pub) for /config/release.pub,
    which the terminal checks updates with (pos.update) and no downlink document can change."""
    from littlefs import LittleFS

    from pos import config

    missing = [name for name in REQUIRED if not os.path.isfile(os.path.join(config_dir, name))]
    if missing:
        raise ProvisionError("%s lacks %s" % (config_dir, ", ".join(missing)))
    try:
        settings, merchants, _ = config.load(config_dir)
    except config.ConfigError as exc:
        raise ProvisionError("config refused: %s" % exc) from None
    if settings.terminal_id != terminal_id:
        raise ProvisionError(
            "terminal.json names %s, not %s" % (settings.terminal_id, terminal_id)
        )
    if len(bdk) != 16:
        raise ProvisionError("the BDK must be 16 bytes")
    public_key = None
    if release_pub is not None:
        try:
            with open(release_pub, "rb") as source:
                public_key = source.read()
        except OSError as exc:
            raise ProvisionError("cannot read the release public key: %s" % exc) from None
        if len(public_key) != 60 or public_key[:4] != b"\x00\x00\x00\x01":
            raise ProvisionError("%s is not a release public key (release.pub)" % release_pub)
    ik_id = secrets.token_bytes(8)
    device_key = secrets.token_bytes(16)
    _, vfs_size = vfs_geometry()
    fs = LittleFS(
        block_size=BLOCK,
        block_count=vfs_size // BLOCK,
        read_size=32,
        prog_size=32,
        lookahead_size=32,
        name_max=255,
    )
    fs.makedirs("/config", exist_ok=True)
    for name in REQUIRED + OPTIONAL:
        path = os.path.join(config_dir, name)
        if os.path.isfile(path):
            with open(path, "rb") as source, fs.open("/config/" + name, "wb") as out:
                out.write(source.read())
    if public_key is not None:
        with fs.open("/config/release.pub", "wb") as out:
            out.write(public_key)
    store = _FsStore(fs, "/state")
    store.write("device.key", device_key)
    store.write("downlink.key", derive_downlink_key(bdk, ik_id))
    identity = {"terminal_id": terminal_id, "ik_id": hexlify(ik_id).decode()}
    result = {
        "identity": identity,
        "merchants": [(m.number, m.merchant_id, m.name) for m in merchants],
        "vfs": bytes(fs.context.buffer),
        "statelog": statelog_image(device_key, derive_initial_key(bdk, ik_id), ik_id),
    }
    if out_dir is not None:
        os.makedirs(out_dir, mode=0o700, exist_ok=True)
        with private(os.path.join(out_dir, "vfs.img"), "wb") as out:
            out.write(result["vfs"])
        with private(os.path.join(out_dir, "statelog.img"), "wb") as out:
            out.write(result["statelog"])
        with private(os.path.join(out_dir, "identity.json"), "w") as out:
            json.dump(identity, out, indent=1)
        if flash_image:
            write_flash_image(
                os.path.join(out_dir, "flash.bin"), result["vfs"], result["statelog"]
            )
    return result


def write_flash_image(path, vfs, statelog):
    offset, size = vfs_geometry()
    if len(vfs) != size:
        raise ProvisionError("the vfs image is %d bytes, the partition %d" % (len(vfs), size))
    with private(path, "wb") as out:
        out.write(b"\xff" * FLASH_SIZE)
        out.seek(partitions.TABLE_OFFSET)
        out.write(partitions.table_bytes(partitions.read_csv()))
        out.seek(statelog_geometry()[0])
        out.write(statelog)
        out.seek(offset)
        out.write(vfs)


def main(argv):
    parser = argparse.ArgumentParser(prog="tools/provision", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="folder with the terminal's config")
    parser.add_argument("--bdk-file", required=True, help="the BDK, 32 hex digits")
    parser.add_argument("--terminal-id", required=True)
    parser.add_argument("--out", help="output folder (not needed with --dry-run)")
    parser.add_argument("--register", metavar="DB", help="add the terminal to this back end")
    parser.add_argument("--flash-image", action="store_true", help="also write OUT/flash.bin")
    parser.add_argument(
        "--replace",
        action="store_true",
        help="with --register: the ID is registered with another IK ID; start it afresh",
    )
    parser.add_argument(
        "--release-pub",
        metavar="FILE",
        help="the release public key (tools/release keygen's release.pub): the terminal "
        "installs only updates signed with its private key",
    )
    parser.add_argument("--dry-run", action="store_true", help="check and build, write nothing")
    args = parser.parse_args(argv)
    if not args.dry_run and not args.out:
        parser.error("--out is needed unless --dry-run")
    try:
        with open(args.bdk_file) as source:
            bdk = unhexlify(source.read().strip())
    except (OSError, ValueError) as exc:
        sys.stderr.write("tools/provision: cannot read the BDK: %s\n" % exc)
        return 2
    try:
        result = provision(
            args.config,
            bdk,
            args.terminal_id,
            None if args.dry_run else args.out,
            args.flash_image,
            args.release_pub,
        )
    except ProvisionError as exc:
        sys.stderr.write("tools/provision: %s\n" % exc)
        return 2
    identity = result["identity"]
    if args.register and not args.dry_run:
        from tools.host.backend import LedgerDB, RegistrationError

        db = LedgerDB(args.register)
        try:
            db.add_terminal(
                identity["terminal_id"],
                unhexlify(identity["ik_id"]),
                result["merchants"],
                replace=args.replace,
            )
        except RegistrationError as exc:
            sys.stderr.write(
                "tools/provision: wrote %s, but not registered: %s\n" % (args.out, exc)
            )
            return 2
        finally:
            db.close()
    print(
        "%s terminal %s, IK ID %s, %d merchants, vfs image %d bytes%s"
        % (
            "would provision" if args.dry_run else "provisioned",
            identity["terminal_id"],
            identity["ik_id"],
            len(result["merchants"]),
            len(result["vfs"]),
            ", registered" if args.register and not args.dry_run else "",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
