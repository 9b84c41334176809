"""tools/deploy: put the OneTill code on a MicroPython board with mpremote.

    tools/deploy --port /dev/ttyUSB0              an ESP32: .mpy for xtensawin
    tools/deploy --port ttyMP --target unix --resume --no-mip --no-reset
                                                  the unix port behind a pty (the tests)

Builds the .mpy bundle of lib/, asks the board for the SHA-256 of what it already has,
copies only what changed (and boot.py, main.py) in one mpremote session, installs the
micropython-lib packages the board needs (`mpremote mip install`, which needs the internet;
--no-mip to skip), and resets the board (--no-reset to leave it running). --dry-run prints
the plan. --resume is for the unix port behind a pty: mpremote must not soft-reset it.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys

from tools.host import mpybuild

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MPREMOTE = os.path.join(ROOT, ".venv", "bin", "mpremote")
MIP_PACKAGES = ("ssd1306",)  # as firmware/manifest.py requires
ENTRY_POINTS = ("boot.py", "main.py")

# Run on the board: the SHA-256 of every file under lib/ and of the entry points, as JSON.
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
try:
    walk("lib", out)
except OSError:
    pass
for name in ("boot.py", "main.py"):
    try:
        with open(name, "rb") as f:
            out[name] = binascii.hexlify(hashlib.sha256(f.read()).digest()).decode()
    except OSError:
        pass
print("HASHES" + json.dumps(out))
"""


class DeployError(Exception):
    """The board or the build refused; the message says why."""


def local_files(target):
    """{path on the board: local file} for the bundle and the entry points."""
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
    for name in ENTRY_POINTS:
        files[name] = os.path.join(ROOT, name)
    return files


def sha256(path):
    with open(path, "rb") as source:
        return hashlib.sha256(source.read()).hexdigest()


def mpremote(port, resume, *commands):
    """Run mpremote commands (lists) chained with '+' in one session."""
    args = [MPREMOTE, "connect", port]
    for index, command in enumerate(commands):
        if index:
            args.append("+")
        if resume:
            args.append("resume")
        args += command
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if result.returncode:
        raise DeployError("mpremote failed: %s%s" % (result.stdout[-500:], result.stderr[-500:]))
    return result.stdout


def board_hashes(port, resume):
    out = mpremote(port, resume, ["exec", _HASHES])
    for line in out.splitlines():
        if line.startswith("HASHES"):
            return json.loads(line[len("HASHES") :])
    raise DeployError("the board did not list its files: %s" % out[-300:])


def plan(files, hashes):
    """The files whose content on the board differs, sorted."""
    return sorted(path for path, local in files.items() if hashes.get(path) != sha256(local))


def deploy(port, target, resume, mip, reset, dry_run, out):
    files = local_files(target)
    hashes = board_hashes(port, resume)
    changed = plan(files, hashes)
    out.write("%d of %d files to copy\n" % (len(changed), len(files)))
    for path in changed:
        out.write("  " + path + "\n")
    if dry_run:
        return changed
    if changed:
        folders = sorted({os.path.dirname(p) for p in changed if os.path.dirname(p)})
        needed = []
        for folder in folders:
            parts = folder.split("/")
            for depth in range(1, len(parts) + 1):
                prefix = "/".join(parts[:depth])
                if prefix not in needed and not any(h.startswith(prefix + "/") for h in hashes):
                    needed.append(prefix)
        commands = [["fs", "mkdir", ":" + folder] for folder in needed]
        commands += [["fs", "cp", files[path], ":" + path] for path in changed]
        mpremote(port, resume, *commands)
    if mip:
        mpremote(port, resume, *[["mip", "install", name] for name in MIP_PACKAGES])
    if reset:
        mpremote(port, False, ["reset"])
    return changed


def main(argv):
    parser = argparse.ArgumentParser(prog="tools/deploy", description=__doc__.split("\n")[0])
    parser.add_argument("--port", required=True, help="serial port, or a pty for the unix port")
    parser.add_argument("--target", choices=("esp32", "unix"), default="esp32")
    parser.add_argument("--resume", action="store_true", help="do not soft-reset (unix port)")
    parser.add_argument("--no-mip", action="store_true", help="skip micropython-lib packages")
    parser.add_argument("--no-reset", action="store_true", help="leave the board running")
    parser.add_argument("--dry-run", action="store_true", help="print the plan only")
    args = parser.parse_args(argv)
    try:
        deploy(
            args.port,
            args.target,
            args.resume,
            not args.no_mip,
            not args.no_reset,
            args.dry_run,
            sys.stdout,
        )
    except (DeployError, mpybuild.BuildError, subprocess.TimeoutExpired) as exc:
        sys.stderr.write("tools/deploy: %s\n" % exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
