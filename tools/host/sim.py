"""tools/sim: runs the real firmware (pos.app) on the MicroPython unix port with a simulated
board, interactively in this terminal or from a script of keys.

The firmware runs as it does on the ESP32: the core from a ROMFS image of .mpy files and a
96 KiB heap, its flash in STATE/flash.bin (partition table, txq, LittleFS vfs). This side
prepares the state folder, starts the firmware and speaks its line protocol
(tools/emu/simboard.py): it sends keys and draws what the firmware shows.
"""

import argparse
import json
import os
import queue
import re
import secrets
import select
import subprocess
import sys
import threading
import time
from binascii import hexlify

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "lib"))

from pos import dukpt  # noqa: E402  (after the path is set)
from pos.config import pin_hash_hex  # noqa: E402
from pos.downlink import derive_downlink_key  # noqa: E402
from tools.host import mpybuild, partitions  # noqa: E402

FLASH_SIZE = 0x400000
TABLE_OFFSET = partitions.TABLE_OFFSET
DEMO_CARD = "4111111111111111"
DEMO_QR = "28761234567890"
KEY_TOKENS = set("0123456789#*ABCD")
# On the unix port mbedTLS allocates from the MicroPython heap; on the ESP32 it has ESP-IDF's
# own. So with the back end the firmware gets its app heap plus this much for TLS.
TLS_ALLOWANCE = 32 * 1024
TOKEN_RE = re.compile(r"^(card|scan):(\d{1,24})$|^wait:(\d{1,7})$|^link:(up|down)$")


class SimError(Exception):
    """Something stopped the simulator; the message says what, for the person at the keys."""


# --- the state folder ---------------------------------------------------------------------


def demo_config(terminal_id, token_key, salt):
    rounds = 2000

    def cashier(number, name, role, merchants, pin):
        return {
            "number": number,
            "name": name,
            "role": role,
            "merchants": merchants,
            "pin_hash": pin_hash_hex(pin, salt, rounds),
        }

    def merchant(number, name):
        return {
            "number": number,
            "merchant_id": "8000000000000%02d" % number,
            "name": name,
            "currency": "EUR",
            "limits": {
                "max_sale_minor": 100000,
                "max_offline_sale_minor": 25000,
                "max_day_count": 2000,
                "max_day_minor": 5000000,
                "max_refund_day_minor": 100000,
                "max_offline_count": 200,
                "max_offline_total_minor": 500000,
                "max_offline_age_s": 86400,
                "anomaly_factor": 10,
            },
        }

    return {
        "terminal.json": json.dumps(
            {
                "terminal_id": terminal_id,
                "card_token_key": hexlify(token_key).decode(),
                "velocity_max_uses": 3,
                "velocity_window_min": 10,
            }
        ),
        "merchants.json": json.dumps(
            {
                "version": 1,
                "merchants": [
                    merchant(1, "Noodle Bar"),
                    merchant(2, "Tea House"),
                    merchant(3, "Dumpling House"),
                ],
            }
        ),
        "cashiers.json": json.dumps(
            {
                "version": 1,
                "pin_salt": hexlify(salt).decode(),
                "pin_rounds": rounds,
                "cashiers": [
                    cashier(1, "Ana", "cashier", "all", "1111"),
                    cashier(2, "Ben", "cashier", [1], "2222"),
                    cashier(9, "Sue", "supervisor", "all", "9999"),
                ],
            }
        ),
    }


def prepare_state(state):
    """Make STATE/flash.bin and, the first time, the demo terminal's provisioning file and the
    back end's key file. Returns a line saying what was done."""
    os.makedirs(state, exist_ok=True)
    image = os.path.join(state, "flash.bin")
    if os.path.exists(image):
        if os.path.getsize(image) != FLASH_SIZE:
            raise SimError("%s is not a 4 MiB flash image" % image)
        if "statelog" not in partitions.read_image_table(image):
            # Made before the state log had its partition: no migration for a pre-release
            # simulator state, a new terminal is made instead.
            raise SimError("%s has an older partition table: remove %s" % (image, state))
        return "using %s" % image
    keys_dir = os.path.join(state, "backend")
    os.makedirs(keys_dir, mode=0o700, exist_ok=True)
    bdk = secrets.token_bytes(16)
    ik_id = secrets.token_bytes(4) + b"\x00\x00\x00\x01"
    terminal_id = "SIM" + hexlify(ik_id[:3]).decode().upper()
    with open(
        os.open(os.path.join(keys_dir, "bdk.key"), os.O_WRONLY | os.O_CREAT, 0o600), "w"
    ) as out:
        out.write(hexlify(bdk).decode() + "\n")
    # The card-token key is the operator's, shared with the back end (tools/backend
    # blacklist add --token-key-file) so that it can block a card by its number.
    token_key = secrets.token_bytes(16)
    with open(
        os.open(os.path.join(keys_dir, "card_token.key"), os.O_WRONLY | os.O_CREAT, 0o600), "w"
    ) as out:
        out.write(hexlify(token_key).decode() + "\n")
    config = demo_config(terminal_id, token_key, secrets.token_bytes(12))
    merchants = [
        [m["number"], m["merchant_id"], m["name"]]
        for m in json.loads(config["merchants.json"])["merchants"]
    ]
    with open(os.path.join(keys_dir, "terminals.json"), "w") as out:
        json.dump({terminal_id: {"ik_id": hexlify(ik_id).decode(), "merchants": merchants}}, out)
    provision = {
        "terminal_id": terminal_id,
        "ik_id": hexlify(ik_id).decode(),
        "ik": hexlify(dukpt.derive_initial_key(bdk, ik_id)).decode(),
        "device_key": hexlify(secrets.token_bytes(16)).decode(),
        "downlink_key": hexlify(derive_downlink_key(bdk, ik_id)).decode(),
        "config": config,
    }
    with open(
        os.open(os.path.join(state, "provision.json"), os.O_WRONLY | os.O_CREAT, 0o600), "w"
    ) as out:
        json.dump(provision, out)
    with open(image, "wb") as out:
        blank = b"\xff" * 65536
        for _ in range(FLASH_SIZE // len(blank)):
            out.write(blank)
        out.seek(TABLE_OFFSET)
        out.write(partitions.table_bytes(partitions.read_csv()))
    return "new terminal %s in %s" % (terminal_id, image)


# --- the firmware process ------------------------------------------------------------------


def build_image():
    out_dir = mpybuild.build_for_unix_port()
    return mpybuild.build_romfs(out_dir)


def parse_heap(text):
    match = re.fullmatch(r"(\d+)([kK]?)", text)
    if not match:
        raise SimError("--heap takes a size like 96k or 98304")
    return int(match.group(1)) * (1024 if match.group(2) else 1)


class Backend:
    """tools/backend serving STATE/backend.db over TLS on a free loopback port, for the
    simulated terminal (its keys and certificates live in STATE/backend/)."""

    def __init__(self, state):
        from tools.host.backend import Server, make_certs
        from tools.host.ledgerdb import LedgerDB

        keys = os.path.join(state, "backend")
        if not os.path.exists(os.path.join(keys, "ca.der")):
            make_certs(keys)
        with open(os.path.join(keys, "terminals.json")) as source:
            terminals = json.load(source)
        db_path = os.path.join(state, "backend.db")
        db = LedgerDB(db_path)
        for tid, entry in terminals.items():
            db.add_terminal(tid, bytes.fromhex(entry["ik_id"]), entry.get("merchants", []))
        db.close()
        try:
            self.server = Server(db_path, os.path.join(keys, "bdk.key"), keys)
        except OSError as exc:
            raise SimError(str(exc)) from None
        self.port = self.server.port
        self.uplink_file = os.path.join(state, "uplink.json")
        with open(self.uplink_file, "w") as out:
            json.dump({"host": "127.0.0.1", "port": self.port, "tid": next(iter(terminals))}, out)

    def stop(self):
        self.server.stop()
        if os.path.exists(self.uplink_file):
            os.remove(self.uplink_file)


def use_backend(state, url):
    """Point the firmware at a back end that is already running."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or not parts.port:
        raise SimError("--backend wants https://HOST:PORT, not %r" % url)
    keys = os.path.join(state, "backend")
    if not os.path.exists(os.path.join(keys, "ca.der")):
        raise SimError("no CA in %s: start tools/sim once without --backend first" % keys)
    with open(os.path.join(keys, "terminals.json")) as source:
        tid = next(iter(json.load(source)))
    with open(os.path.join(state, "uplink.json"), "w") as out:
        json.dump({"host": parts.hostname, "port": parts.port, "tid": tid}, out)


class Firmware:
    """The MicroPython process and its line protocol."""

    def __init__(self, state, heap):
        image = build_image()
        process_heap = heap + os.path.getsize(image) + 32 * 1024
        env = dict(os.environ, MICROPYPATH=".frozen")
        # Paths relative to ROOT (the process runs there) where they can be: the firmware
        # then lays out its heap the same wherever the repository was cloned.
        state_path = os.path.abspath(state)
        if state_path.startswith(ROOT + os.sep):
            state_path = os.path.relpath(state_path, ROOT)
        args = [
            ".venv/bin/micropython",
            "-X",
            "heapsize=%d" % process_heap,
            "tools/host/mp_boot.py",
            os.path.relpath(image, ROOT),
            str(heap),
            "simboard",
            state_path,
        ]
        if os.path.exists(os.path.join(state, "provision.json")):
            # Provisioning is its own run, as a tool does it before a terminal's first boot.
            done = subprocess.run(
                args + ["provision"], cwd=ROOT, env=env, text=True, capture_output=True
            )
            if done.returncode or os.path.exists(os.path.join(state, "provision.json")):
                raise SimError("provisioning failed:\n" + done.stdout + done.stderr)
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        # A thread moves the firmware's output lines into a queue: select() on a buffered
        # pipe would miss lines that already sit in Python's buffer.
        self._lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.screen = [""] * 8
        self.events_shown = -1
        self.printed = []  # slips printed since the last look
        self.faults = []
        self.stray = []
        self.unsent = None

    def _pump(self):
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)  # the firmware has stopped

    def _next_line(self, timeout_s):
        """The next output line; False on timeout; SimError when the firmware stopped."""
        try:
            line = (
                self._lines.get(timeout=timeout_s) if timeout_s > 0 else self._lines.get_nowait()
            )
        except queue.Empty:
            return False
        if line is None:
            self._lines.put(None)
            raise SimError(self.crash_report())
        return line

    def send(self, line):
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise SimError(self.crash_report()) from None

    def read_message(self, timeout_s):
        """Read one message (a screen, a slip, a beep, a fault); False on timeout."""
        line = self._next_line(timeout_s)
        if line is False:
            return False
        if line.startswith("S "):
            self.events_shown = int(line[2:])
            self.screen = [self._row() for _ in range(8)]
        elif line.startswith("P "):
            self.printed.append([self._row() for _ in range(int(line[2:]))])
        elif line.startswith("F "):
            self.faults.append(line[2:])
        elif line.startswith("B "):
            pass  # a beep: the simulator is silent
        elif line.startswith("U "):
            self.unsent = int(line[2:])
        elif line == "Q":
            return "quit"
        else:
            self.stray.append(line)  # a traceback, most likely: kept for the crash report
            del self.stray[:-40]
        return True

    def _row(self):
        line = self._next_line(10)
        if line is False:
            raise SimError("the firmware stopped in the middle of a message")
        return line[1:] if line.startswith("|") else line

    def wait_for_events(self, count, timeout_s=30):
        """Read messages until the screen shows the effect of `count` events."""
        deadline = time.monotonic() + timeout_s
        while self.events_shown < count:
            left = deadline - time.monotonic()
            if left <= 0 or self.read_message(left) is False:
                raise SimError("the firmware did not answer within %d s" % timeout_s)
        # Whatever followed at once (receipts, beeps) belongs to this step too.
        while self.read_message(0.05):
            pass

    def refresh(self):
        self.send("frame")
        shown = self.events_shown
        self.events_shown = -1
        self.wait_for_events(shown)

    def drain(self, timeout_s=60):
        """Wait until the back end has acked every record; False if it has not in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.unsent = None
            self.send("unsent")
            while self.unsent is None and time.monotonic() < deadline:
                self.read_message(0.5)
            if self.unsent == 0:
                return True
            time.sleep(0.5)
        return False

    def stop(self):
        if self.process.poll() is None:
            try:
                self.send("quit")
                self.process.wait(timeout=10)
            except (SimError, subprocess.TimeoutExpired):
                self.process.kill()
        return self.process.wait()

    def crash_report(self):
        self.process.wait(timeout=5)
        # MicroPython prints an uncaught exception on stdout: the pump has queued it.
        lines = list(self.stray)
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                break
            lines.append(line)
        error = "\n".join(lines[-40:] + [self.process.stderr.read()]).strip()
        return "the firmware stopped (exit %s)%s" % (
            self.process.returncode,
            ":\n" + error if error else "",
        )


# --- scripted and interactive use ------------------------------------------------------------


def frame_text(screen):
    top = "+" + "-" * 16 + "+"
    return "\n".join([top] + ["|%-16s|" % row for row in screen] + [top])


def run_keys(firmware, script, out):
    events = 0
    for token in script.split():
        match = TOKEN_RE.match(token)
        if token in KEY_TOKENS:
            firmware.send("key " + token)
        elif match and match.group(1):
            firmware.send("%s %s" % (match.group(1), match.group(2)))
        elif match and match.group(4):
            firmware.send("link " + ("1" if match.group(4) == "up" else "0"))
        elif match and match.group(3):
            time.sleep(int(match.group(3)) / 1000)
            firmware.refresh()
            out.write("> %s\n%s\n" % (token, frame_text(firmware.screen)))
            continue
        else:
            raise SimError(
                "unknown key token %r (keys: 0-9 # * A-D card:N scan:N wait:MS)" % token
            )
        events += 1
        firmware.wait_for_events(events)
        out.write("> %s\n%s\n" % (token, frame_text(firmware.screen)))
        for slip in firmware.printed:
            out.write("printed:\n" + "\n".join("  " + line for line in slip) + "\n")
        firmware.printed.clear()
    out.flush()


KEYMAP = {"\r": "#", "\n": "#", "\x1b": "*", "\x7f": "B", "\x08": "B"}
HELP = (
    "keys: 0-9, Enter=#, Esc=*, Backspace=B, a-d=A-D | r: read demo card | "
    "s: scan demo QR | l: link up/down | q: quit"
)


def interactive(firmware, state, out):
    import termios
    import tty

    if not sys.stdin.isatty():
        raise SimError("interactive mode needs a terminal; use --keys for scripts")
    saved = termios.tcgetattr(sys.stdin)
    link_up = False
    last_slip = []
    try:
        tty.setcbreak(sys.stdin.fileno())
        events = 0
        dirty = True
        while True:
            if dirty:
                out.write("\x1b[2J\x1b[H" + frame_text(firmware.screen) + "\n")
                out.write(
                    "link %s | receipts go to %s\n%s\n"
                    % ("up" if link_up else "down", os.path.join(state, "printer.txt"), HELP)
                )
                if last_slip:
                    out.write("last printed:\n")
                    out.write("\n".join("  " + text for text in last_slip[-16:]) + "\n")
                out.flush()
                dirty = False
            if firmware.read_message(0):
                if firmware.printed:
                    last_slip = firmware.printed[-1]
                    firmware.printed.clear()
                dirty = True
                continue
            ready, _, _ = select.select([sys.stdin], [], [], 0.2)
            if not ready:
                continue
            char = sys.stdin.read(1)
            if char == "q":
                return
            if char == "r":
                message = "card " + DEMO_CARD
            elif char == "s":
                message = "scan " + DEMO_QR
            elif char == "l":
                link_up = not link_up
                message = "link " + ("1" if link_up else "0")
            else:
                key = KEYMAP.get(char, char.upper())
                if key not in KEY_TOKENS:
                    continue
                message = "key " + key
            firmware.send(message)
            events += 1
            firmware.wait_for_events(events)
            if firmware.printed:
                last_slip = firmware.printed[-1]
                firmware.printed.clear()
            dirty = True
    finally:
        termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)
        out.write("\n")


def main(argv):
    parser = argparse.ArgumentParser(
        prog="tools/sim",
        description="Run the OneTill firmware on the MicroPython unix port with a simulated "
        "board (demo terminal: cashier PINs 1111 and 2222, supervisor 9999).",
    )
    parser.add_argument(
        "--state", default=os.path.join(ROOT, ".sim"), help="state folder (default .sim/)"
    )
    parser.add_argument(
        "--keys",
        help='scripted keys, e.g. "1 1 1 1 # 2 # 1 2 3 4 # 4 #"; '
        "also card:N scan:N wait:MS link:up|down",
    )
    parser.add_argument("--heap", default="96k", help="the firmware's heap (default 96k)")
    parser.add_argument(
        "--drain",
        action="store_true",
        help="after the keys, wait (at most 60 s) until the back end has every record",
    )
    parser.add_argument(
        "--offline", action="store_true", help="run without the back end (no uplink)"
    )
    parser.add_argument(
        "--backend",
        metavar="URL",
        help="use this back end (https://HOST:PORT) instead of starting one; its certificate "
        "must come from the CA in STATE/backend/ (e.g. another tools/backend serve given "
        "those certificates)",
    )
    args = parser.parse_args(argv)
    out = sys.stdout
    try:
        heap = parse_heap(args.heap)
        out.write("tools/sim: %s\n" % prepare_state(args.state))
        if args.offline and args.drain:
            raise SimError("--drain needs the back end: drop --offline")
        if args.offline and args.backend:
            raise SimError("--offline and --backend contradict each other")
        backend = None
        uplink_file = os.path.join(args.state, "uplink.json")
        if os.path.exists(uplink_file):
            os.remove(uplink_file)  # left by a run that was killed
        try:
            if args.backend:
                use_backend(args.state, args.backend)
                out.write("tools/sim: back end at %s\n" % args.backend)
            elif not args.offline:
                backend = Backend(args.state)
                out.write("tools/sim: back end on https://127.0.0.1:%d\n" % backend.port)
            if backend is not None or args.backend:
                out.write(
                    "tools/sim: heap %d KiB for the app + %d KiB for mbedTLS (which the unix "
                    "port takes from the same heap)\n" % (heap // 1024, TLS_ALLOWANCE // 1024)
                )
            uplinked = backend is not None or bool(args.backend)
            firmware = Firmware(args.state, heap + (TLS_ALLOWANCE if uplinked else 0))
            try:
                firmware.wait_for_events(0)
                for fault in firmware.faults:
                    out.write("firmware: %s\n" % fault)
                if args.keys is not None:
                    run_keys(firmware, args.keys, out)
                else:
                    interactive(firmware, args.state, out)
                if args.drain and not firmware.drain():
                    raise SimError("the back end has not acked every record within 60 s")
                if args.drain:
                    out.write("tools/sim: drained: the back end has every record\n")
            finally:
                code = firmware.stop()
            if code != 0:
                raise SimError(firmware.crash_report())
        finally:
            if backend is not None:
                backend.stop()
    except SimError as exc:
        out.write("tools/sim: %s\n" % exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
