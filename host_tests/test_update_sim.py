"""An update over the air, end to end, in the simulator on MicroPython at the default heap:
release 2 (its code says firmware 0.2.0) is built, signed, added to the back end and offered;
the terminal downloads it over a link that drops, checks it, installs it at an idle moment,
restarts into it (the romfs partition of its flash holds the new code) and the back end's
report shows version 2 confirmed. Then release 3, whose core raises at import, fails its
trial and is rolled back to 2 automatically, and the report says so."""

import os
import time

import updatekit
from test_sim import state_folder

from tools.host import sim
from tools.host.backend import LedgerDB


class Terminal:
    def __init__(self, work, release_pub):
        self.state = os.path.join(work, "state")
        os.makedirs(self.state)
        self.lock = sim.StateLock(self.state)
        sim.prepare_state(self.state, release_pub)
        self.backend = sim.Backend(self.state)
        self.firmware = sim.Firmware(self.state, 96 * 1024 + sim.TLS_ALLOWANCE, self.lock)
        self.firmware.wait_for_start()
        self.db = LedgerDB(os.path.join(self.state, "backend.db"), mode="write")

    def tid(self):
        import json

        with open(os.path.join(self.state, "backend", "terminals.json")) as source:
            return next(iter(json.load(source)))

    def keys(self, script):
        sim.run_keys(self.firmware, sim.parse_keys(script), open(os.devnull, "w"))

    def status(self):
        beats = self.db.heartbeats()
        return next(iter(beats.values()))["status"] if beats else {}

    def wait_for(self, done, timeout_s=90, nudge=None):
        deadline = time.monotonic() + timeout_s
        nudged = time.monotonic()
        while time.monotonic() < deadline:
            self.firmware.read_message(0.5)
            if done(self.status()):
                return self.status()
            if nudge is not None and time.monotonic() - nudged > 6:
                nudge()  # not more often: each one cuts a download short
                nudged = time.monotonic()
        raise AssertionError(
            "not within %d s: %r; faults %r" % (timeout_s, self.status(), self.firmware.faults)
        )

    def poll_now(self):
        """The link switched off and on: the terminal contacts the back end at once."""
        self.keys("link:down link:up")

    def close(self):
        self.db.close()
        code = self.firmware.stop()
        self.backend.stop()
        self.lock.release()
        return code


def test_update_installs_reports_and_a_broken_release_rolls_back():
    work = state_folder("update")
    key = os.path.join(work, "key")
    pub = updatekit.key(key)
    release2 = updatekit.build(
        key,
        2,
        updatekit.image(work, "v2", lambda code: updatekit.versioned(code, "0.2.0")),
        os.path.join(work, "2.release"),
    )
    release3 = updatekit.build(
        key, 3, updatekit.image(work, "v3", updatekit.broken), os.path.join(work, "3.release")
    )
    terminal = Terminal(work, pub)
    try:
        assert terminal.status().get("fw") in (None, "0.1.0")
        terminal.db.add_release(release2, pub, terminals=[terminal.tid()])
        # The link drops twice while it downloads: it resumes from the staged bytes.
        terminal.poll_now()
        terminal.firmware.read_message(0.3)
        terminal.keys("link:down")
        time.sleep(0.5)
        terminal.keys("link:up link:down wait:300 link:up")
        status = terminal.wait_for(lambda s: s.get("fw") == "0.2.0", nudge=terminal.poll_now)
        assert status["sw"] == "2"
        status = terminal.wait_for(lambda s: s.get("ota") == "ok", nudge=terminal.poll_now)
        report = terminal.db.report()["downlink"]
        entry = next(iter(report.values()))["release"]
        assert entry == {"offered": 2, "running": 2, "state": "ok", "state_version": None}
        faults = terminal.firmware.faults
        assert "update: version 2 confirmed" in faults
        # Release 3 does not import: three trial boots, then version 2 again, reported.
        terminal.db.add_release(release3, pub)
        terminal.poll_now()
        status = terminal.wait_for(
            lambda s: s.get("ota") == "rolledback:3", timeout_s=120, nudge=terminal.poll_now
        )
        assert status["sw"] == "2" and status["fw"] == "0.2.0"
        entry = next(iter(terminal.db.report()["downlink"].values()))["release"]
        assert entry["state"] == "rolledback" and entry["state_version"] == 3
        crashes = [f for f in terminal.firmware.faults if f.startswith("crash:")]
        assert len(crashes) == 3, crashes
    finally:
        assert terminal.close() == 0
