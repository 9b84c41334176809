"""tools/deploy against the MicroPython unix port behind a pty (socat), as a board would be:
only changed files are copied, and the deployed code runs there."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPREMOTE = os.path.join(ROOT, ".venv", "bin", "mpremote")


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


def deploy(port):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.host.deploy",
            "--port",
            port,
            "--target",
            "unix",
            "--resume",
            "--no-mip",
            "--no-reset",
        ],
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
