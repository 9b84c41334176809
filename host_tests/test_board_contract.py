"""The board contract (lib/pos/board_contract.pyi) is checked, not just written down: mypy,
with the project's settings, fails for a board that lacks a member pos.app uses, for an app
that uses a member the contract lacks, and for an Esp32Board without the members it once
lacked (fault_log_path, reset_cause, rssi). The heartbeat carries what the board says."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MYPY = os.path.join(ROOT, ".venv", "bin", "mypy")

# Every member of the contract, as a board states it; each test leaves one out.
MEMBERS = {
    "bdev": "    bdev = None  # type: Any\n",
    "statelog": "    statelog = None  # type: Any\n",
    "store": "    store = FileStore('/state')\n",
    "config_folder": "    config_folder = '/config'\n",
    "blacklist_path": "    blacklist_path = None  # type: str | None\n",
    "fault_log_path": "    fault_log_path = '/state/faults.log'\n",
    "uplink": "    uplink = None  # type: Uplink | None\n",
    "reset_cause": "    reset_cause = 'power'\n",
    "next_event": "    async def next_event(self) -> Any:\n        return None\n",
    "show": "    def show(self, screen: Any) -> None:\n        pass\n",
    "print_lines": "    def print_lines(self, lines: Any) -> None:\n        pass\n",
    "beep": "    def beep(self, kind: str) -> None:\n        pass\n",
    "fault": "    def fault(self, text: str) -> None:\n        pass\n",
    "unix_time": "    def unix_time(self) -> int:\n        return 0\n",
    "set_time": "    def set_time(self, unix: int) -> None:\n        pass\n",
    "feed_watchdog": "    def feed_watchdog(self) -> None:\n        pass\n",
    "start": "    def start(self, app: Any) -> None:\n        pass\n",
    "restart": "    def restart(self) -> None:\n        pass\n",
    "rssi": "    def rssi(self) -> int:\n        return 0\n",
}


CACHE = []


@pytest.fixture(autouse=True, scope="module")
def mypy_cache(tmp_path_factory):
    """One cache for this module's runs (one after the other), not the project's."""
    CACHE.append(str(tmp_path_factory.mktemp("mypy_cache")))
    yield
    CACHE.pop()


def mypy(*args, cwd=ROOT):
    """mypy with the project's settings (pyproject.toml) on the given files. A copy of lib/
    gets a cache of its own: mypy knows a module by its name, and two copies edited to the
    same size within a second would pass for one another."""
    cache = CACHE[-1] if cwd == ROOT else os.path.join(cwd, ".mypy_cache")
    return subprocess.run(
        [MYPY, "--config-file", os.path.join(ROOT, "pyproject.toml"), "--cache-dir", cache]
        + list(args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def board_source(leave_out=None):
    body = "".join(text for name, text in MEMBERS.items() if name != leave_out)
    return (
        "from typing import Any\n\n"
        "from pos.app import App\n"
        "from pos.board_contract import Board\n"
        "from pos.store import FileStore\n"
        "from pos.uplink import Uplink\n\n\n"
        "class TestBoard:\n" + body + "\n\n"
        "def declared(board: TestBoard) -> Board:\n"
        "    return board\n\n\n"
        "App(declared(TestBoard()))\n"
    )


def test_a_board_with_every_member_passes(tmp_path):
    path = tmp_path / "good_board.py"
    path.write_text(board_source())
    checked = mypy(str(path))
    assert checked.returncode == 0, checked.stdout


@pytest.mark.parametrize("missing", ["fault_log_path", "reset_cause", "rssi", "set_time", "start"])
def test_a_board_lacking_a_member_the_app_uses_fails_the_type_check(tmp_path, missing):
    path = tmp_path / ("bad_board_without_%s.py" % missing)  # one module name each
    path.write_text(board_source(leave_out=missing))
    checked = mypy(str(path))
    assert checked.returncode == 1, checked.stdout
    assert 'Incompatible return value type (got "TestBoard", expected "Board")' in checked.stdout
    assert 'missing following "Board" protocol member' in checked.stdout
    assert "note:     %s\n" % missing in checked.stdout


def copy_of_lib(tmp_path):
    """lib/ copied into tmp_path, beside links to the stubs and tools/emu: the project's
    mypy settings (relative paths) then read the copy."""
    shutil.copytree(os.path.join(ROOT, "lib"), tmp_path / "lib")
    for name in ("typings", "tools"):
        os.symlink(os.path.join(ROOT, name), tmp_path / name)
    return tmp_path / "lib"


def test_the_app_may_use_only_what_the_contract_lists(tmp_path):
    """pos.app is checked against the contract: a contract without rssi fails on app.py."""
    contract = copy_of_lib(tmp_path) / "pos" / "board_contract.pyi"
    text = contract.read_text()
    contract.write_text(text[: text.index("    def rssi(self)")])  # rssi is the last member
    checked = mypy("lib/pos/app.py", cwd=str(tmp_path))
    assert checked.returncode == 1, checked.stdout
    assert 'error: "Board" has no attribute "rssi"' in checked.stdout


@pytest.mark.parametrize(
    "member, line, changed",
    [
        ("fault_log_path", "        self.fault_log_path = FAULT_LOG\n", ""),
        ("reset_cause", "        self.reset_cause = reset_word()\n", ""),
        ("rssi", "    def rssi(self):\n", "    def signal(self):\n"),
    ],
)
def test_an_esp32_board_without_its_members_fails_the_type_check(tmp_path, member, line, changed):
    """The defects the contract fixed: each one, put back, is a type error."""
    board = copy_of_lib(tmp_path) / "board" / "esp32board.py"
    text = board.read_text()
    assert text.count(line) == 1
    board.write_text(text.replace(line, changed))
    checked = mypy("lib/board/esp32board.py", cwd=str(tmp_path))
    assert checked.returncode == 1, checked.stdout
    assert 'missing following "Board" protocol member' in checked.stdout
    assert "note:     %s\n" % member in checked.stdout


def test_the_heartbeat_says_what_the_board_says():
    from appkit import Board, config_folder
    from pos.app import App

    board = Board(config_folder())
    board.reset_cause = "watchdog"
    board.rssi = lambda: -67
    app = App(board)
    app.start()
    beat = app.heartbeat()
    assert ";reset=watchdog;rssi=-67;" in beat, beat
