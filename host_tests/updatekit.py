"""Releases for the update tests: a release key, and ROMFS images of the core with one change
(a firmware version, or a core that raises at import), signed with tools/release."""

import os
import shutil

from tools.host import mpybuild
from tools.host import release as release_tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def key(folder):
    """A small (height 5) release key in folder, made once."""
    if not os.path.exists(os.path.join(folder, "release.pub")):
        release_tool.keygen(folder, height=5, say=lambda text: None)
    with open(os.path.join(folder, "release.pub"), "rb") as source:
        return source.read()


def image(work, name, app_edit=None):
    """A ROMFS image of lib/ (as tools/deploy builds it), pos/app.py changed by app_edit.
    work: a folder under the repository (mpybuild keeps paths relative to it)."""
    work = os.path.abspath(work)
    source = os.path.join(work, name, "src")
    shutil.rmtree(os.path.join(work, name), ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "lib"), source)
    if app_edit is not None:
        path = os.path.join(source, "pos", "app.py")
        with open(path) as text:
            code = text.read()
        with open(path, "w") as out:
            out.write(app_edit(code))
    base = os.path.join(work, name, "mpy")
    mpybuild.compile_tree(source, os.path.join(base, "lib"), march="xtensawin")
    return mpybuild.build_romfs(base, os.path.join(work, name, "core.romfs"))


def versioned(code, firmware):
    return code.replace('FIRMWARE_VERSION = "0.1.0"', 'FIRMWARE_VERSION = "%s"' % firmware)


def broken(code):
    return 'raise ImportError("this release is broken")\n' + code


def build(key_folder, version, image_path, out, min_version=0):
    release_tool.build(
        key_folder, version, out, min_version, image_path=image_path, say=lambda text: None
    )
    with open(out, "rb") as source:
        return source.read()
