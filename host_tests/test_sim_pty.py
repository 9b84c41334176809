"""tools/sim in interactive mode, under a pseudo-terminal as a person types: keys in a burst,
the start-up lines, q and Ctrl-C."""

import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time

from test_sim import ROOT, state_folder


class Session:
    """tools/sim --offline on a pty; everything it writes is kept in self.output."""

    def __init__(self, state):
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 100, 0, 0))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tools.host.sim", "--state", state, "--offline"],
            cwd=ROOT,
            stdin=slave,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)
        self.output = ""
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # the other side closed
                return
            if not data:
                return
            with self._lock:
                self.output += data.decode("utf-8", "replace")

    def last_drawing(self):
        with self._lock:
            return self.output.rsplit("\x1b[2J", 1)[-1]

    def wait_for(self, text, timeout_s=30):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.last_drawing():
                return
            time.sleep(0.05)
        raise AssertionError("never shown: %r; last drawing:\n%s" % (text, self.last_drawing()))

    def type(self, keys):
        os.write(self.master, keys.encode())  # one write, as a burst of keys arrives

    def end(self, timeout_s=30):
        code = self.process.wait(timeout=timeout_s)
        time.sleep(0.2)  # the reader takes the last bytes
        os.close(self.master)
        return code


def test_keys_typed_in_a_burst_all_arrive_in_order():
    session = Session(state_folder("burst"))
    try:
        session.wait_for("|Cashier PIN     |")
        # The start-up lines stay above the drawing.
        assert "tools/sim: new terminal SIM" in session.last_drawing()
        session.type("1111\r2\r1234")
        session.wait_for("|EUR        12.34|")
        session.type("\x7f5\r4\r")  # Backspace, 5: 12.35, then cash
        session.wait_for("|APPROVED        |")
        assert "|EUR        12.35|" in session.last_drawing()
        session.type("q")
        assert session.end() == 0
    finally:
        if session.process.poll() is None:
            session.process.kill()
    assert "tools/sim: 1 record not yet acknowledged by the back end" in session.output
    assert "Traceback" not in session.output


def test_ctrl_c_gives_one_line_and_exit_2():
    state = state_folder("ctrlc")
    session = Session(state)
    try:
        session.wait_for("|Cashier PIN     |")
        time.sleep(0.5)
        with open(os.path.join(state, "flash.bin"), "rb") as image:
            before = image.read()
        session.process.send_signal(signal.SIGINT)  # what Ctrl-C sends the simulator
        assert session.end() == 2
    finally:
        if session.process.poll() is None:
            session.process.kill()
    after_drawing = session.output.rsplit("+----------------+", 1)[-1]
    assert "tools/sim: interrupted" in after_drawing
    assert "Traceback" not in session.output
    with open(os.path.join(state, "flash.bin"), "rb") as image:
        assert image.read() == before
