"""tools/test device: the core tests and a smoke test on a board attached by USB serial.

    tools/test device --port /dev/ttyUSB0 [--keys-s 10] [--tests test_txq ...]
                      [--mip-index URL | --no-mip]
    tools/test device --port ttyMP --target unix --resume [--keys-s 2]
                      (the MicroPython unix port behind a pty: how the tests run it)

1. Deploys the code as tools/deploy does (tools/host/deploy.py: on an ESP32 the core into
   the romfs partition, boot.py, main.py, micropython-lib's ssd1306), without the reset.
2. Copies the core tests (host_tests/core) and the runner (tools/emu/testrunner.py, with
   norflash.py and smoke.py) as .mpy files to tests/ on the board, only those that changed.
3. Runs every core test module on the board with that runner, one `mpremote exec` a
   module (on an ESP32 each starts after a soft reset, on a whole heap).
4. Runs tools/emu/smoke.py there and compares its lines with the expected ones (EXPECTED):
   display pattern, printer status and test slip, beeps, the keys pressed in --keys-s
   seconds (at least one), the free heap with pos.app imported, Wi-Fi, and TLS to the back
   end of config/uplink.json.

On an ESP32 the app's 8 s watchdog, once started, cannot be stopped, so before step 1 and
again before step 3 (which also mounts the new ROMFS image at /rom) the board is restarted
into safe mode for one start (board.safemode.ONCE). It is left in safe mode at the end: a
reset (or power cycle) starts the app.
"""

import argparse
import os
import re
import subprocess
import sys
import time

from tools.host import deploy as deploy_tool
from tools.host import mpybuild

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORE_TESTS = os.path.join(ROOT, "host_tests", "core")
BUILD = os.path.join(ROOT, "build")  # the .mpy files go to BUILD/device-<target>
BOARD_TESTS = "tests"  # the folder on the board (relative: / on an ESP32)
EMU_FILES = ("testrunner", "norflash", "smoke")
UNIX_EMU_FILES = ("fakeparts",)  # the parts faked at the pins, for the unix port only
BOOT_WAIT_S = 4  # after a hard reset, before mpremote connects again
MODULE_TIMEOUT_S = 600

# Run on the board for one core test module: the runner of tools/test's micropython stage.
_RUN_MODULE = """
import sys, gc
sys.path[:0] = [%(tests)r, %(lib)r]
_before = set(sys.modules)
import testrunner
_passed, _failed = testrunner.run_module(%(module)r)
print("RESULT %%d %%d" %% (_passed, _failed))
for _name in list(sys.modules):
    if _name not in _before:
        del sys.modules[_name]
gc.collect()
"""

_RUN_SMOKE = """
import sys
sys.path[:0] = [%(tests)r, %(lib)r]
import smoke
smoke.main(%(target)r, %(keys_s)d)
"""

# The smoke test's lines, in order: (regular expression, how many: 1 or "+" for one or more).
# A value that differs between targets is a dict {target: expression}.
EXPECTED = (
    (r"smoke: OneTill board smoke test on (esp32|unix)", 1),
    (r"board: reset cause (power|watchdog|soft|hard|deepsleep|-)", 1),
    (r"display: test pattern on 8 rows", 1),
    (r"printer: status 0x[0-9a-f]{2}, test slip sent", 1),
    (r"buzzer: ok and error beeps", 1),
    (r"keys: press keys for \d+ s", 1),
    (r"key [0-9A-D*#]", "+"),
    (r"keys: [1-9]\d* pressed", 1),
    (
        {
            "esp32": r"heap: \d+ bytes free with pos\.app from /rom/lib/pos/app\.mpy",
            "unix": r"heap: \d+ bytes free with pos\.app from lib/pos/app\.mpy",
        },
        1,
    ),
    (
        {
            "esp32": r"wifi: up, rssi -\d+ dBm",
            "unix": r"wifi: SKIP no network module",
        },
        1,
    ),
    (r"tls: up to \S+:\d+, \d+ bytes free", 1),
    (r"smoke: done", 1),
)


class DeviceTestError(Exception):
    """The board failed a step; the message says which (the summary figure)."""


def compare(lines, target):
    """The first difference between the smoke test's lines and EXPECTED, or None."""
    index = 0
    for pattern, count in EXPECTED:
        if isinstance(pattern, dict):
            pattern = pattern[target]
        matched = 0
        while index < len(lines) and re.fullmatch(pattern, lines[index]):
            matched += 1
            index += 1
            if count == 1:
                break
        if not matched:
            got = lines[index] if index < len(lines) else "(no more lines)"
            return "smoke line %d: %r, expected /%s/" % (index + 1, got, pattern)
    if index < len(lines):
        return "smoke line %d: %r, expected no more lines" % (index + 1, lines[index])
    return None


def build_tests(target):
    """{path on the board: local .mpy} for the core tests and the runner's files."""
    march = "xtensawin" if target == "esp32" else None
    base = os.path.join(BUILD, "device-" + target)
    files = {}
    for source, sub, wanted in (
        (CORE_TESTS, "tests", None),
        (os.path.join(ROOT, "tools", "emu"), "emu", EMU_FILES + UNIX_EMU_FILES),
    ):
        built = mpybuild.compile_tree(source, os.path.join(base, sub), march=march)
        for relative, _ in built:
            name = os.path.basename(relative)[:-4]
            if wanted is None or name in wanted:
                if target != "unix" and name in UNIX_EMU_FILES:
                    continue
                local = os.path.join(base, sub, name + ".mpy")
                files[BOARD_TESTS + "/" + name + ".mpy"] = local
    return files


class DeviceTest:
    def __init__(self, args, out=sys.stdout):
        self.args = args
        self.out = out
        self.deploy = deploy_tool.Deploy(
            args.port,
            target=args.target,
            resume=args.resume,
            mip=not args.no_mip,
            mip_index=args.mip_index,
            reset=False,
            out=out,
        )
        # The core: /rom/lib on an ESP32 (the romfs partition), lib/ for a file deploy.
        self.lib = "/rom/lib" if self.deploy.code == "romfs" else "lib"

    def say(self, text):
        self.out.write(text + "\n")
        self.out.flush()

    def mpremote(self, commands, timeout=MODULE_TIMEOUT_S):
        """Run commands on the board; (exit code, stdout + stderr)."""
        args = self.deploy.command_line(commands)
        try:
            result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return 124, "timed out after %d s" % timeout
        return result.returncode, result.stdout + result.stderr

    def restart_in_safe_mode(self):
        """Hard reset into safe mode for one start (the app and its watchdog not running)."""
        if self.args.target != "esp32":
            return
        self.say("board: restarting in safe mode for one start")
        code, output = self.mpremote(
            [["exec", "open(%r, 'w').close()" % "safemode.once"], ["reset"]], timeout=60
        )
        if code:
            raise DeviceTestError("could not restart the board in safe mode: " + output[-300:])
        time.sleep(BOOT_WAIT_S)

    def copy_tests(self):
        files = build_tests(self.args.target)
        hashes, _ = deploy_tool.board_state(self.deploy, folders=(BOARD_TESTS,))
        changed = deploy_tool.plan(files, hashes)
        self.say("tests: %d of %d files to copy" % (len(changed), len(files)))
        if changed:
            deploy_tool._run(
                self.deploy.command_line(deploy_tool.copy_commands(files, changed, hashes))
            )

    def run_tests(self, modules):
        passed = failed = 0
        for module in modules:
            code, output = self.mpremote(
                [["exec", _RUN_MODULE % {"tests": BOARD_TESTS, "lib": self.lib, "module": module}]]
            )
            self.say("== device " + module)
            self.out.write(output)
            found = re.search(r"^RESULT (\d+) (\d+)\s*$", output, re.M)
            if found:
                passed += int(found.group(1))
                failed += int(found.group(2))
            if (code or not found) and not (found and int(found.group(2))):
                failed += 1  # a crash, a timeout or an import failure
        return passed, failed

    def smoke(self):
        self.say("smoke: running on the board (press keys when asked)")
        code, output = self.mpremote(
            [
                [
                    "exec",
                    _RUN_SMOKE
                    % {
                        "tests": BOARD_TESTS,
                        "lib": self.lib,
                        "target": self.args.target,
                        "keys_s": self.args.keys_s,
                    },
                ]
            ],
            timeout=self.args.keys_s + 120,
        )
        self.out.write(output)
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        difference = compare(lines, self.args.target)
        if code and difference is None:
            difference = "the smoke test ended with exit code %d" % code
        return lines, difference

    def run(self):
        self.restart_in_safe_mode()
        try:
            deploy_tool.run(self.deploy)
        except (deploy_tool.DeployError, mpybuild.BuildError) as exc:
            raise DeviceTestError("deploy: %s" % exc) from exc
        self.copy_tests()
        self.restart_in_safe_mode()
        modules = self.args.tests or core_test_modules()
        passed, failed = self.run_tests(modules)
        lines, difference = self.smoke()
        figure = "%d passed %d failed" % (passed, failed)
        if difference:
            self.say("smoke: " + difference)
            raise DeviceTestError(figure + ", smoke FAIL")
        if failed or not passed:
            raise DeviceTestError(figure)
        heap = [int(n) for line in lines for n in re.findall(r"(\d+) bytes free", line)]
        return "%s, smoke ok, heap %s bytes free (app, with TLS)" % (
            figure,
            " / ".join(str(n) for n in heap),
        )


def core_test_modules():
    return sorted(
        name[:-3]
        for name in os.listdir(CORE_TESTS)
        if name.startswith("test_") and name.endswith(".py")
    )


def parse(argv):
    parser = argparse.ArgumentParser(prog="tools/test device", description=__doc__.split("\n")[0])
    parser.add_argument("--port", required=True, help="the board's serial port, or a pty")
    parser.add_argument("--target", choices=("esp32", "unix"), default="esp32")
    parser.add_argument("--resume", action="store_true", help="no soft reset (the unix port)")
    parser.add_argument("--no-mip", action="store_true", help="skip micropython-lib packages")
    parser.add_argument("--mip-index", help="package index URL for mip")
    parser.add_argument("--keys-s", type=int, default=10, help="how long keys are echoed")
    parser.add_argument("--tests", nargs="+", help="core test modules (default: all)")
    return parser.parse_args(argv)


def stage(argv):
    """The device stage of tools/test: its summary figure, or DeviceTestError."""
    return DeviceTest(parse(argv)).run()
