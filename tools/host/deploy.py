"""tools/deploy: put the OneTill code on a MicroPython board with mpremote.

    tools/deploy --port /dev/ttyUSB0              an ESP32: the core in the romfs partition
    tools/deploy --port ttyMP --target unix --resume --no-mip --no-reset
                                                  the unix port behind a pty (the tests)

Builds the .mpy bundle of lib/ (xtensawin for the ESP32). On the ESP32 (--code romfs, its
default) the bundle goes into the romfs partition as one ROMFS image (`mpremote romfs
deploy`), where the core runs in place from flash; it is written only when the board's
partition holds something else, and copies of the core left in /lib by a file deploy are
removed. With --code files (the default for --target unix) the .mpy files are copied to
lib/, only those whose SHA-256 differs. boot.py and main.py are copied when they changed.
Then the micropython-lib packages the board needs are installed into lib/ (`mpremote mip
install`, from micropython-lib's index on the internet, or --mip-index URL; --no-mip to
skip), and the board is reset (--no-reset to leave it running). --dry-run prints the
mpremote commands instead of running those that change the board. --resume is for the
unix port behind a pty: mpremote must not soft-reset it.
"""

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys

from tools.host import mpybuild, partitions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MPREMOTE = os.path.join(ROOT, ".venv", "bin", "mpremote")
MIP_PACKAGES = ("ssd1306",)  # as firmware/manifest.py requires
MIP_TARGET = "lib"  # where the deploy puts code on the board's filesystem (/lib on the ESP32)
ENTRY_POINTS = ("boot.py", "main.py")
ROMFS_PARTITION = "romfs"  # the label the ESP32 port looks for

# Run on the board: the SHA-256 of every file under FOLDERS (lib/, and tests/ for
# tools/test device) and of the entry points, as JSON.
_HASHES = """
import os, hashlib, binascii, json
def walk(path, out):
    for entry in os.ilistdir(path):
        name = path + "/" + entry[0]
        if entry[1] == 0x4000:
            walk(name, out)
        else:
            with open(name, "rb") as f:
                out[name] = binascii.hexlify(hashlib.sha256(f.read()).digest()).decode()
out = {}
for folder in FOLDERS:
    try:
        walk(folder, out)
    except OSError:
        pass
for name in ("boot.py", "main.py", "otaboot.py"):
    try:
        with open(name, "rb") as f:
            out[name] = binascii.hexlify(hashlib.sha256(f.read()).digest()).decode()
    except OSError:
        pass
print("HASHES" + json.dumps(out))
"""

# Run on the board: what its ROM segment 0 is, and the SHA-256 of its first LENGTH bytes,
# read through the partition object as mpremote writes it (4 KiB blocks on the ESP32).
_ROMFS = """
import vfs, hashlib, binascii
def romfs(length):
    if not hasattr(vfs, "rom_ioctl"):
        return "no-ioctl 0 -"
    if vfs.rom_ioctl(1) < 1:
        return "no-partition 0 -"
    dev = vfs.rom_ioctl(2, 0)
    if isinstance(dev, int):
        return "no-partition 0 -"
    digest = hashlib.sha256()
    if hasattr(dev, "readblocks"):
        block_size = dev.ioctl(5, 0)
        size = dev.ioctl(4, 0) * block_size
        buf = bytearray(block_size)
        block = 0
        while block * block_size < min(length, size):
            part = memoryview(buf)[: min(block_size, length - block * block_size)]
            dev.readblocks(block, part)
            digest.update(part)
            block += 1
    else:
        size = len(dev)
        digest.update(memoryview(dev)[: min(length, size)])
    return "ok %d %s" % (size, binascii.hexlify(digest.digest()).decode())
print("ROMFS " + romfs(LENGTH))
"""


class DeployError(Exception):
    """The board or the build refused; the message says why."""


class Deploy:
    """One deploy: what to put on which board, and how."""

    def __init__(
        self,
        port,
        target="esp32",
        code=None,
        resume=False,
        mip=True,
        mip_index=None,
        reset=True,
        dry_run=False,
        out=sys.stdout,
    ):
        self.port = port
        self.target = target
        self.code = code or ("romfs" if target == "esp32" else "files")
        self.resume = resume
        self.mip = mip
        self.mip_index = mip_index
        self.reset = reset
        self.dry_run = dry_run
        self.out = out

    def say(self, text):
        self.out.write(text + "\n")

    def command_line(self, commands, resume=None):
        """mpremote's argument list: the commands chained with '+' in one session."""
        resume = self.resume if resume is None else resume
        args = [MPREMOTE, "connect", self.port]
        for index, command in enumerate(commands):
            if index:
                args.append("+")
            if resume:
                args.append("resume")
            args += command
        return args

    def query(self, commands):
        """Run read-only commands (also in a dry run); their output."""
        return _run(self.command_line(commands))

    def change(self, commands, resume=None):
        """Run commands that change the board, or print them in a dry run."""
        if not commands:
            return ""
        args = self.command_line(commands, resume)
        if self.dry_run:
            self.say("would run: " + shlex.join(args))
            return ""
        return _run(args)


def _run(args):
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if result.returncode:
        raise DeployError("mpremote failed: %s%s" % (result.stdout[-500:], result.stderr[-500:]))
    return result.stdout


def bundle(target):
    """{path on the board: local file} for lib/ compiled for the target, and the folder it
    was built in (the root of the ROMFS image)."""
    if target == "esp32":
        built = mpybuild.build_bundle()
        base = os.path.join(ROOT, "build", "bundle")
    else:
        base = os.path.join(ROOT, "build", "deploy-unix")
        built = mpybuild.compile_tree("lib", os.path.join(base, "lib"))
    files = {}
    for relative, _ in built:
        path = os.path.join(ROOT, relative)
        files[os.path.relpath(path, base).replace(os.sep, "/")] = path
    return files, base


def entry_points():
    files = {name: os.path.join(ROOT, name) for name in ENTRY_POINTS}
    # The update's boot code, run by boot.py from the vfs: never from the romfs partition
    # that it rewrites (lib/pos/install.py).
    files["otaboot.py"] = os.path.join(ROOT, "lib", "pos", "install.py")
    return files


def sha256(path):
    with open(path, "rb") as source:
        return hashlib.sha256(source.read()).hexdigest()


def romfs_partition_size(csv_path=partitions.PARTITIONS_CSV):
    for name, _, _, _, size in partitions.read_csv(csv_path):
        if name == ROMFS_PARTITION:
            return size
    raise DeployError("%s has no %s partition" % (csv_path, ROMFS_PARTITION))


def build_romfs_image(base, target, capacity):
    """The ROMFS image of the bundle built in base (lib/pos, lib/board), checked to fit."""
    image = mpybuild.build_romfs(base, os.path.join(ROOT, "build", "onetill-%s.romfs" % target))
    size = os.path.getsize(image)
    if size > capacity:
        raise DeployError(
            "the ROMFS image is %d bytes, the romfs partition %d (firmware/partitions.csv)"
            % (size, capacity)
        )
    return image


def board_state(deploy, image_length=None, folders=("lib",)):
    """(hashes of the board's files, (romfs status, partition size, SHA-256) or None)."""
    script = _HASHES.replace("FOLDERS", repr(list(folders)))
    if image_length is not None:
        script += _ROMFS.replace("LENGTH", str(image_length))
    out = deploy.query([["exec", script]])
    hashes = romfs = None
    for line in out.splitlines():
        if line.startswith("HASHES"):
            hashes = json.loads(line[len("HASHES") :])
        elif line.startswith("ROMFS "):
            status, size, digest = line.split()[1:4]
            romfs = (status, int(size), digest)
    if hashes is None or (image_length is not None and romfs is None):
        raise DeployError("the board did not list its files: %s" % out[-300:])
    return hashes, romfs


def plan(files, hashes):
    """The files whose content on the board differs, sorted."""
    return sorted(path for path, local in files.items() if hashes.get(path) != sha256(local))


def copy_commands(files, changed, hashes):
    """mkdir for folders the board lacks, then one cp a file."""
    folders = sorted({os.path.dirname(p) for p in changed if os.path.dirname(p)})
    needed = []
    for folder in folders:
        parts = folder.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix not in needed and not any(h.startswith(prefix + "/") for h in hashes):
                needed.append(prefix)
    commands = [["fs", "mkdir", ":" + folder] for folder in needed]
    return commands + [["fs", "cp", files[path], ":" + path] for path in changed]


def romfs_commands(deploy, image, romfs, bundled, hashes):
    """Deploy the image unless the partition holds it; remove the core's files from lib/."""
    status, size, digest = romfs
    length = os.path.getsize(image)
    if status == "no-ioctl":
        raise DeployError(
            "the board's MicroPython has no ROMFS (vfs.rom_ioctl): flash MicroPython 1.25+"
            " built with ROMFS, or a custom image (firmware/README.md)"
        )
    if status != "ok":
        raise DeployError(
            "the board has no %s partition: write the OneTill partition table (tools/flash)"
            % ROMFS_PARTITION
        )
    if length > size:
        raise DeployError(
            "the ROMFS image (%d bytes) is larger than the board's partition "
            "(%d bytes)" % (length, size)
        )
    commands = []
    if digest == sha256(image):
        deploy.say("romfs: the partition already holds this image (%d bytes)" % length)
    else:
        deploy.say("romfs: %d bytes to write into the %d-byte partition" % (length, size))
        commands.append(["romfs", "deploy", image])
    # Copies of the core from a file deploy would take vfs space and could shadow /rom/lib.
    packages = sorted({"/".join(path.split("/")[:2]) for path in bundled})
    for package in packages:
        if any(path.startswith(package + "/") for path in hashes):
            deploy.say("  remove %s/ (the core runs from /rom)" % package)
            commands.append(["fs", "rm", "-r", ":" + package])
    return commands


def run(deploy):
    """Deploy; returns the paths copied as files (the ROMFS image counts as one entry)."""
    files = entry_points()
    bundled, base = bundle(deploy.target)
    image = None
    if deploy.code == "romfs":
        image = build_romfs_image(base, deploy.target, romfs_partition_size())
        hashes, romfs = board_state(deploy, os.path.getsize(image))
    else:
        files.update(bundled)
        hashes, romfs = board_state(deploy)
    changed = plan(files, hashes)
    deploy.say("%d of %d files to copy" % (len(changed), len(files)))
    for path in changed:
        deploy.say("  " + path)
    commands = []
    if image is not None:
        commands += romfs_commands(deploy, image, romfs, bundled, hashes)
    if changed:
        commands += copy_commands(files, changed, hashes)
    deploy.change(commands)
    if deploy.mip:
        options = ["--target", MIP_TARGET]
        if deploy.mip_index:
            options += ["--index", deploy.mip_index]
        deploy.change([["mip", "install"] + options + [name] for name in MIP_PACKAGES])
    if deploy.reset:
        deploy.change([["reset"]], resume=False)
    elif image is not None:
        deploy.say("romfs: mounted at /rom after the next reset")
    return changed


def main(argv):
    parser = argparse.ArgumentParser(prog="tools/deploy", description=__doc__.split("\n")[0])
    parser.add_argument("--port", required=True, help="serial port, or a pty for the unix port")
    parser.add_argument("--target", choices=("esp32", "unix"), default="esp32")
    parser.add_argument(
        "--code",
        choices=("romfs", "files"),
        help="the core as a ROMFS image (default for esp32) or as .mpy files in lib/ (unix)",
    )
    parser.add_argument("--resume", action="store_true", help="do not soft-reset (unix port)")
    parser.add_argument("--no-mip", action="store_true", help="skip micropython-lib packages")
    parser.add_argument("--mip-index", help="package index URL for mip (default: micropython-lib)")
    parser.add_argument("--no-reset", action="store_true", help="leave the board running")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    deploy = Deploy(
        args.port,
        target=args.target,
        code=args.code,
        resume=args.resume,
        mip=not args.no_mip,
        mip_index=args.mip_index,
        reset=not args.no_reset,
        dry_run=args.dry_run,
    )
    try:
        run(deploy)
    except (
        DeployError,
        mpybuild.BuildError,
        partitions.PartitionError,
        subprocess.TimeoutExpired,
    ) as exc:
        sys.stderr.write("tools/deploy: %s\n" % exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
