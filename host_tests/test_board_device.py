"""`tools/test device` against the MicroPython unix port behind a pty (socat), as the deploy
test drives it: the code deployed, the core tests run there with the runner of the
micropython stage, and the smoke test (the reference board's parts faked at the pins,
tools/emu/fakeparts.py) compared line by line, TLS to the real back end on loopback
included. Also: the comparison itself, the one-start safe mode, and that a plain
tools/test never runs the stage."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tools.host import devicetest, testrun
from tools.host.backend import LedgerDB, Server, make_certs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")
TESTS = ("test_money", "test_record")  # two quick modules: the whole list runs the same way
COUNT = sum(len(testrun.core_tests(module)) for module in TESTS)  # every one runs


@pytest.fixture()
def board(tmp_path):
    socat = shutil.which("socat")
    assert socat, "socat is missing: tools/test installs it (apt-get install socat)"
    folder = tmp_path / "board"
    folder.mkdir()
    port = str(tmp_path / "ttyMP")
    process = subprocess.Popen(
        [
            socat,
            "pty,link=%s,raw,echo=0" % port,
            'EXEC:"%s -X heapsize=256k",pty,raw,echo=0,stderr,setsid,ctty' % MICROPYTHON,
        ],
        cwd=str(folder),  # the board's files land here
        start_new_session=True,
    )
    for _ in range(50):
        if os.path.exists(port):
            break
        time.sleep(0.1)
    yield port, folder
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=10)


@pytest.fixture()
def backend(tmp_path):
    """The real back end over TLS on loopback, and the board's config pointing at it."""
    certs = str(tmp_path / "certs")
    make_certs(certs)
    (tmp_path / "bdk.key").write_text("00" * 16)
    LedgerDB(str(tmp_path / "ledger.db")).close()  # serve needs a ledger; this makes one
    server = Server(str(tmp_path / "ledger.db"), str(tmp_path / "bdk.key"), certs)
    yield server, certs
    server.stop()


def configure(folder, server, certs):
    config = folder / "config"
    config.mkdir()
    doc = {"host": "127.0.0.1", "port": server.port, "tid": "T0001"}
    (config / "uplink.json").write_text(json.dumps(doc))
    shutil.copy(os.path.join(certs, "ca.der"), config / "ca.der")


def device_stage(port, *extra):
    return subprocess.run(
        [sys.executable, "-m", "tools.host.testrun", "device", "--port", port]
        + ["--target", "unix", "--resume", "--no-mip", "--keys-s", "2", "--tests", *TESTS]
        + list(extra),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_device_stage_deploys_runs_the_core_tests_and_the_smoke_test(board, backend, tmp_path):
    port, folder = board
    # Without config/uplink.json the smoke test's TLS line says SKIP: the stage fails on it.
    refused = device_stage(port)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "summary: device FAIL %d passed 0 failed, smoke FAIL" % COUNT in refused.stdout
    assert (
        "smoke: smoke line 13: 'tls: SKIP no config/uplink.json or config/ca.der', "
        "expected /tls: up to" in refused.stdout
    ), refused.stdout
    # Deployed as tools/deploy does it, the tests beside it, run with the same runner.
    assert (folder / "lib" / "pos" / "app.mpy").exists() and (folder / "main.py").exists()
    assert (folder / "tests" / "testrunner.mpy").exists()
    assert "PASS test_money.test_format_two_decimals" in refused.stdout
    for module in TESTS:  # each module's runner line: all of its tests passed
        assert "RESULT %d 0" % len(testrun.core_tests(module)) in refused.stdout

    configure(folder, *backend)
    passed = device_stage(port)
    out = passed.stdout + passed.stderr
    assert passed.returncode == 0, out
    summary = re.search(
        (
            r"^summary: device ok %d passed 0 failed, smoke ok, heap (\d+) / (\d+) bytes free "
            r"\(app, with TLS\)$"
        )
        % COUNT,
        passed.stdout,
        re.M,
    )
    assert summary, out
    assert int(summary.group(1)) > int(summary.group(2)) > 0  # TLS takes heap
    # Nothing changed since the first run: nothing copied.
    assert re.search(r"^0 of \d+ files to copy$", passed.stdout, re.M)
    assert re.search(r"^tests: 0 of \d+ files to copy$", passed.stdout, re.M)
    # Every key the fake keypad pressed came back, in order, through the real driver.
    assert re.findall(r"^key (\S)$", passed.stdout, re.M) == ["1", "#", "D"]
    assert "printer: status 0x12, test slip sent" in passed.stdout
    assert "tls: up to 127.0.0.1:%d" % backend[0].port in passed.stdout

    # A core test that fails on the board fails the stage.
    broken = tmp_path / "core"
    shutil.copytree(devicetest.CORE_TESTS, broken)
    with open(broken / "test_money.py", "a") as source:
        source.write("\n\ndef test_that_fails():\n    assert 1 + 1 == 3\n")
    # Inside the repository: mpybuild keeps only the .mpy files it finds under ROOT.
    build = os.path.join(ROOT, "build", "device-test-%d" % os.getpid())
    try:
        failed = run_broken(port, broken, build)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert re.search(r"^tests: 1 of \d+ files to copy$", failed.stdout, re.M)
    assert "FAIL test_money.test_that_fails" in failed.stdout
    assert "summary: device FAIL 14 passed 1 failed" in failed.stdout


def run_broken(port, broken, build):
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tools.host import devicetest, testrun; "
            "devicetest.CORE_TESTS = %r; devicetest.BUILD = %r; "
            "sys.exit(testrun.main(sys.argv[1:]))" % (str(broken), build),
            "device",
            "--port",
            port,
            "--target",
            "unix",
            "--resume",
            "--no-mip",
            "--keys-s",
            "1",
            "--tests",
            "test_money",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


GOOD = [
    "smoke: OneTill board smoke test on esp32",
    "board: reset cause power",
    "display: test pattern on 8 rows",
    "printer: status 0x12, test slip sent",
    "buzzer: ok and error beeps",
    "keys: press keys for 10 s",
    "key 5",
    "key #",
    "keys: 2 pressed",
    "heap: 120000 bytes free with pos.app from /rom/lib/pos/app.mpy",
    "wifi: up, rssi -61 dBm",
    "tls: up to 192.0.2.1:8443, 80000 bytes free",
    "smoke: done",
]


def test_the_comparison_wants_every_line_in_order():
    assert devicetest.compare(GOOD, "esp32") is None
    no_keys = [line for line in GOOD if not line.startswith("key ")]
    assert "smoke line 7: 'keys: 2 pressed', expected /key [0-9A-D*#]/" in devicetest.compare(
        no_keys, "esp32"
    )
    from_files = [line.replace("/rom/lib", "lib") for line in GOOD]
    assert "smoke line 10" in devicetest.compare(from_files, "esp32")  # not from the ROMFS
    silent = [line.replace("status 0x12", "no status answer (check RX, GPIO 16)") for line in GOOD]
    assert "smoke line 4" in devicetest.compare(silent, "esp32")
    assert "expected no more lines" in devicetest.compare(GOOD + ["Traceback"], "esp32")
    assert "(no more lines)" in devicetest.compare(GOOD[:-1], "esp32")


def test_a_plain_tools_test_never_runs_the_device_stage(capsys):
    default = [name for name, _ in testrun.STAGES if name not in testrun.ON_REQUEST]
    assert "device" in dict(testrun.STAGES) and "device" not in default
    assert testrun.main(["lint", "--port", "/dev/ttyUSB0"]) == 2
    assert "for the device stage only" in capsys.readouterr().out


def test_safe_mode_for_one_start(tmp_path):
    """boot.py's check: the file tools/test device writes gives one start in safe mode."""
    (tmp_path / "safemode.once").write_text("")
    started = subprocess.run(
        [
            MICROPYTHON,
            "-c",
            "import sys; sys.path.insert(0, %r); from board import safemode; "
            "print(safemode.check(), safemode.ACTIVE)" % os.path.join(ROOT, "lib"),
        ],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.stdout.strip() == "True True", started.stdout + started.stderr
    assert not (tmp_path / "safemode.once").exists()  # the next start is a normal one
