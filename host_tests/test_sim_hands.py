"""tools/sim under real hands: keys that change nothing, the link switch, a second simulator
on the same state, bad state folders, kill -9, --help, and the heartbeat after a batch."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

from test_sim import ROOT, SALE, backend_report, sim, state_folder

LOGIN = "1 1 1 1 #"


def screens(output):
    """{token: [screen rows]} of a --keys run, in order, as a list of (token, rows)."""
    shown = []
    token = None
    for line in output.splitlines():
        if line.startswith("> "):
            token = line[2:]
            shown.append((token, []))
        elif line.startswith("|") and shown:
            shown[-1][1].append(line[1:-1].rstrip())
    return shown


def test_keys_that_change_nothing_are_answered_at_once():
    # Each of these left the screen as it was and froze the simulator for 30 s.
    keys = (
        "B * C D "  # PIN screen: nothing typed
        + LOGIN
        + " D 2 # 0 B 1 2 3 4 5 6 7 8 9 0 "  # one-page menu, amount 0.00, digits past the cap
        + "card:4111111111111111 card:4111111111111111 link:down link:down"
    )
    started = time.monotonic()
    result = sim(state_folder("still"), keys, "--offline", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 20
    shown = screens(result.stdout)
    assert [token for token, _ in shown] == keys.split()
    # Tea House's cap is 1,000.00: the digits that would pass it were refused as typed.
    assert "EUR       123.45" in shown[-1][1]


def test_the_link_switch_cuts_the_network_and_brings_it_back():
    state = state_folder("link")
    status_after = "A 5 # "  # the status screen, then back to the merchant menu
    keys = (
        "wait:1500 link:down "
        + LOGIN
        + " 2 # 1 2 3 4 # 4 # # wait:4000 "
        + status_after
        + "link:up wait:3000 "
        + status_after
    )
    result = sim(state, keys, "--drain")
    assert result.returncode == 0, result.stdout + result.stderr
    statuses = [
        [row.lower() for row in rows]
        for _, rows in screens(result.stdout)
        if rows[:1] == ["Status"]
    ]
    down, up = statuses
    assert "OFFLINE" in result.stdout  # sold while the link was down
    assert "link        down" in down and "unsent         1" in down  # nothing went out
    assert "link          up" in up and "unsent         0" in up
    assert backend_report(state)[2]["sales_total_minor"] == 1234


def test_the_link_starts_as_the_firmware_finds_it():
    state = state_folder("linkstart")
    result = sim(state, "wait:2500 " + LOGIN + " A 5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "|Link          up|" in result.stdout  # the back end is up: so is the link
    offline = sim(state, "link:up " + LOGIN + " 2 # 1 2 3 4 # 4 #", "--offline")
    assert offline.returncode == 0
    assert "|OFFLINE         |" in offline.stdout  # no back end: link:up cannot make one


def test_a_second_simulator_on_the_same_state_is_refused():
    state = state_folder("lock")
    assert sim(state, "1", "--offline").returncode == 0
    first = subprocess.Popen(
        [sys.executable, "-m", "tools.host.sim", "--state", state, "--offline", "--keys"]
        + ["wait:12000"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(3)
        with open(os.path.join(state, "flash.bin"), "rb") as image:
            before = image.read()
        second = sim(state, SALE, "--offline")
        assert second.returncode == 2
        assert second.stdout.strip().splitlines() == [
            "tools/sim: another tools/sim is running on %s: stop it first, or use another "
            "--state" % state
        ]
        with open(os.path.join(state, "flash.bin"), "rb") as image:
            assert image.read() == before
    finally:
        output = first.communicate(timeout=60)[0]
    assert first.returncode == 0, output
    assert sim(state, "1", "--offline").returncode == 0  # free again once it ended


def test_bad_state_folders_get_one_line_and_exit_2(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    noise = tmp_path / "noise"
    noise.mkdir()
    (noise / "flash.bin").write_bytes(os.urandom(0x400000))
    for state, says in (
        (a_file, "is a file, not a folder"),
        (noise, "is not a terminal's flash image"),
        ("/proc/onetill-sim", "cannot use /proc/onetill-sim as the state folder"),
        ("/sys/onetill-sim", "cannot use /sys/onetill-sim as the state folder"),
    ):
        before = sorted(os.listdir(noise))
        result = sim(state, "1", "--offline")
        assert result.returncode == 2, (state, result.stdout + result.stderr)
        lines = result.stdout.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], (state, result.stdout)
        assert "Traceback" not in result.stdout + result.stderr
        assert sorted(os.listdir(noise)) == before
    assert a_file.read_text() == "not a folder"


def test_help_lists_the_interactive_keys():
    shown = subprocess.run(
        [sys.executable, "-m", "tools.host.sim", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0
    for line in ("Backspace", "read the demo card", "switch the simulated network", "quit"):
        assert line in shown.stdout
    assert "link:up|down" in shown.stdout


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open("/proc/%d/stat" % pid) as stat:
        return stat.read().split(") ")[1][0] != "Z"


def test_kill_9_of_the_simulator_ends_its_back_end_too():
    state = state_folder("kill9")
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.host.sim", "--state", state, "--keys", "wait:30000"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,  # a pipe would stay open in an orphan and hang the test
        stderr=subprocess.DEVNULL,
    )
    children = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(children) < 2:
            time.sleep(0.5)
            with open("/proc/%d/task/%d/children" % (process.pid, process.pid)) as listing:
                children = [int(pid) for pid in listing.read().split()]
        assert len(children) == 2, "the back end and the firmware did not start"
        # The firmware has read uplink.json (tools/sim removes it once the firmware shows
        # its first screen): within seconds, however loaded the machine.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and os.path.exists(os.path.join(state, "uplink.json")):
            time.sleep(0.2)
        assert not os.path.exists(os.path.join(state, "uplink.json"))
        process.send_signal(signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(pid) for pid in children):
            time.sleep(0.2)
        assert not [pid for pid in children if _alive(pid)], "outlived the simulator"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)  # an orphan this test made


def test_the_heartbeat_tells_the_queue_after_its_batch():
    state = state_folder("beat")
    result = sim(state, LOGIN + " 2 # 1 2 3 4 # 4 #", "--drain")
    assert result.returncode == 0, result.stdout + result.stderr
    db = sqlite3.connect(os.path.join(state, "backend.db"))
    (status,) = db.execute("SELECT status FROM heartbeats").fetchone()
    db.close()
    assert status.startswith("depth=0;oldest_s=-1;"), status


def test_arrow_and_function_keys_are_not_typed_as_star_and_letters():
    from tools.host.sim import interactive_message, without_escape_sequences

    typed = "1\x1b[A2\x1bOP3\x1b[15~\x1b"  # 1, Up, 2, F1, 3, F5, a lone Esc
    messages = [interactive_message(char, True)[0] for char in without_escape_sequences(typed)]
    assert messages == ["key 1", "key 2", "key 3", "key *"]
