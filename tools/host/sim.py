"""tools/sim: runs the real firmware (pos.app) on the MicroPython unix port with a simulated
board, interactively in this terminal or from a script of keys.

The firmware runs as it does on the ESP32: the core from a ROMFS image of .mpy files and a
96 KiB heap, its flash in STATE/flash.bin (partition table, txq, LittleFS vfs). This side
prepares the state folder, starts the firmware and speaks its line protocol
(tools/emu/simboard.py): it sends keys and draws what the firmware shows.
"""

import argparse
import fcntl
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

from pos import derive  # noqa: E402  (after the path is set)
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
RESTART_EXIT = 4  # the firmware asks to be started again (tools/emu/simrom.py)
TOKEN_RE = re.compile(r"^(card|scan):(\d{1,24})$|^wait:(\d{1,7})$|^link:(up|down)$")


class SimError(Exception):
    """Something stopped the simulator; the message says what, for the person at the keys."""


class UsageError(SimError):
    """A mistake in how the simulator was started (a token, a flag, a state folder): nothing
    was changed, and tools/sim exits 2."""


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
                "auto_block_declines": 3,
                "auto_block_window_min": 10,
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


def _key_file(path):
    """The 16-byte key in a key file, made (random, 0600) when there is none."""
    try:
        with open(path) as source:
            key = bytes.fromhex(source.read().strip())
        if len(key) == 16:
            return key
    except (OSError, ValueError):
        pass
    key = secrets.token_bytes(16)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(hexlify(key).decode() + "\n")
    return key


def prepare_state(state, release_pub=None):
    """Make STATE/flash.bin and, the first time, the demo terminal's provisioning file and the
    back end's key file (and the release public key given, bytes, in its /config). Returns a
    line saying what was done."""
    os.makedirs(state, mode=0o700, exist_ok=True)
    os.chmod(state, 0o700)  # flash.bin holds the terminal's keys, backend/ the BDK
    image = os.path.join(state, "flash.bin")
    if os.path.exists(image):
        if os.path.getsize(image) != FLASH_SIZE:
            raise UsageError("%s is not a 4 MiB flash image" % image)
        try:
            table = partitions.read_image_table(image)
            if "txq" not in table:
                raise partitions.PartitionError("no txq partition")
        except partitions.PartitionError as exc:
            raise UsageError(
                "%s is not a terminal's flash image (%s): move it away or use another --state"
                % (image, exc)
            ) from None
        if "statelog" not in table:
            # Made before the state log had its partition: no migration for a pre-release
            # simulator state, a new terminal is made instead.
            raise UsageError("%s has an older partition table: remove %s" % (image, state))
        return "using %s" % image
    keys_dir = os.path.join(state, "backend")
    os.makedirs(keys_dir, mode=0o700, exist_ok=True)
    ik_id = secrets.token_bytes(4) + b"\x00\x00\x00\x01"
    terminal_id = "SIM" + hexlify(ik_id[:3]).decode().upper()
    # A BDK and card-token key already in STATE/backend/ (copied from another state folder)
    # make this a second terminal of the same operator: same keys, its own IK ID.
    bdk = _key_file(os.path.join(keys_dir, "bdk.key"))
    # The card-token key is the operator's, shared with the back end (tools/backend
    # blacklist add --token-key-file) so that it can block a card by its number.
    token_key = _key_file(os.path.join(keys_dir, "card_token.key"))
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
        "ik": hexlify(derive.derive_initial_key(bdk, ik_id)).decode(),
        "device_key": hexlify(secrets.token_bytes(16)).decode(),
        "downlink_key": hexlify(derive_downlink_key(bdk, ik_id)).decode(),
        "config": config,
    }
    if release_pub is not None:
        provision["release_pub"] = hexlify(release_pub).decode()
    with open(
        os.open(os.path.join(state, "provision.json"), os.O_WRONLY | os.O_CREAT, 0o600), "w"
    ) as out:
        json.dump(provision, out)
    with open(os.open(image, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        blank = b"\xff" * 65536
        for _ in range(FLASH_SIZE // len(blank)):
            out.write(blank)
        out.seek(TABLE_OFFSET)
        out.write(partitions.table_bytes(partitions.read_csv()))
    return "new terminal %s in %s" % (terminal_id, image)


def another_terminal(site, state):
    """Provision a new terminal in STATE for the operator whose keys are in SITE/backend/
    (the BDK, the card-token key, the CA: everything but the site's terminal list and its
    back-office logins), as the README's "a second terminal of the same operator" says.
    Returns (terminal ID, IK ID, merchants) for registering it in the site's back end."""
    import shutil

    keys = os.path.join(site, "backend")
    os.makedirs(os.path.join(state, "backend"), mode=0o700)
    for name in os.listdir(keys):
        if name != "terminals.json" and not name.startswith("logins"):
            shutil.copy(os.path.join(keys, name), os.path.join(state, "backend", name))
    prepare_state(state)
    with open(os.path.join(state, "backend", "terminals.json")) as source:
        ((tid, entry),) = json.load(source).items()
    return tid, bytes.fromhex(entry["ik_id"]), entry["merchants"]


# --- the firmware process ------------------------------------------------------------------


class StateLock:
    """The state folder, locked (fcntl.flock on the folder itself, no file left behind)
    while a simulator runs on it: two firmwares on one flash.bin would overwrite each
    other's writes. The kernel lets go when the process ends, however it ends, so a killed
    simulator never leaves a stale lock."""

    def __init__(self, state, wait_s=3):
        if os.path.exists(state) and not os.path.isdir(state):
            raise UsageError("--state %s is a file, not a folder" % state)
        try:
            os.makedirs(state, exist_ok=True)
            self.fd = os.open(state, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise UsageError(
                "cannot use %s as the state folder: %s" % (state, exc.strerror or exc)
            ) from None
        # A firmware whose simulator was killed holds the lock (it inherits it) until it
        # has read the end of its input and finished its last event: a moment, worth
        # waiting for.
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise UsageError(
                        "another tools/sim is running on %s: stop it first, or use another "
                        "--state" % state
                    ) from None
                time.sleep(0.1)
        if not os.access(state, os.W_OK):
            self.release()
            raise UsageError("cannot use %s as the state folder: it is read-only" % state)

    def release(self):
        os.close(self.fd)  # closing it lets go of the lock


def build_image():
    out_dir = mpybuild.build_for_unix_port()
    return mpybuild.build_romfs(out_dir)


def core_image():
    """The ROMFS image of the core exactly as tools/deploy writes it to an ESP32's romfs
    partition (bytecode only, so the unix port runs the same files)."""
    from tools.host import deploy

    files, base = deploy.bundle("esp32")
    image = os.path.join(ROOT, "build", "onetill-esp32.romfs")
    # The folders too: a module removed from lib/ changes its folder, not a file left.
    paths = set(files.values()) | {os.path.dirname(path) for path in files.values()}
    newest = max(os.path.getmtime(path) for path in paths)
    if os.path.exists(image) and os.path.getmtime(image) > newest:
        return image  # built from these very files: no mpremote run at every start
    return deploy.build_romfs_image(base, "esp32", deploy.romfs_partition_size())


def install_code(state):
    """Write the working tree's core into STATE/flash.bin's romfs partition, where the
    simulated terminal runs it from (as tools/deploy does to an ESP32): only the bytes that
    differ, the rest of the partition erased (0xFF). Returns True when it changed."""
    image_path = os.path.join(state, "flash.bin")
    offset, size = partitions.read_image_table(image_path)["romfs"]
    with open(core_image(), "rb") as source:
        wanted = source.read()
    wanted += b"\xff" * (size - len(wanted))
    with open(image_path, "r+b") as flash:
        flash.seek(offset)
        if flash.read(size) == wanted:
            return False
        flash.seek(offset)
        flash.write(wanted)
    return True


def parse_heap(text):
    match = re.fullmatch(r"(\d+)([kK]?)", text)
    if not match:
        raise UsageError("--heap takes a size like 96k or 98304")
    return int(match.group(1)) * (1024 if match.group(2) else 1)


class Backend:
    """tools/backend serving STATE/backend.db over TLS on a free loopback port, for the
    simulated terminal (its keys and certificates live in STATE/backend/)."""

    def __init__(self, state):
        from tools.host.backend import LedgerDB, Server, make_certs

        keys = os.path.join(state, "backend")
        if not os.path.exists(os.path.join(keys, "ca.der")):
            make_certs(keys)
        with open(os.path.join(keys, "terminals.json")) as source:
            terminals = json.load(source)
        db_path = os.path.join(state, "backend.db")
        db = LedgerDB(db_path)
        # The keyring: bdk.key (the original BDK) first, then any later one (bdk-2.key, ...:
        # a key rotation, tools/backend keys rotate).
        ring = [os.path.join(keys, "bdk.key")] + sorted(
            os.path.join(keys, name)
            for name in os.listdir(keys)
            if name.startswith("bdk") and name.endswith(".key") and name != "bdk.key"
        )
        try:
            for tid, entry in terminals.items():
                db.add_terminal(tid, bytes.fromhex(entry["ik_id"]), entry.get("merchants", []))
            self.logins = demo_logins(db, keys, terminals)
        finally:
            db.close()
        try:
            self.server = Server(
                db_path,
                ring,
                keys,
                token_key_file=os.path.join(keys, "card_token.key"),
            )
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


def demo_logins(db, keys, terminals):
    """The back office's demo accounts, made once per state folder: an operator and one
    per demo merchant, each with a random password kept in STATE/backend/logins.json
    (0600). Returns [(name, role, password)]."""
    from tools.host.backend.office.accounts import hash_password
    from tools.host.backend.office.store import OfficeStore

    path = os.path.join(keys, "logins.json")
    if os.path.exists(path):
        with open(path) as source:
            return [tuple(login) for login in json.load(source)]
    logins = [("operator", "operator", None, secrets.token_urlsafe(9))]
    for _, merchant_id, name in next(iter(terminals.values())).get("merchants", []):
        user = name.split()[0].lower()
        logins.append((user, "merchant", merchant_id, secrets.token_urlsafe(9)))
    store = OfficeStore(db)
    for user, role, merchant_id, password in logins:
        store.add_user(user, role, merchant_id, hash_password(password))
    out = [(user, role, password) for user, role, _, password in logins]
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as target:
        json.dump(out, target)
    return out


def use_backend(state, url):
    """Point the firmware at a back end that is already running."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or not parts.port:
        raise UsageError("--backend wants https://HOST:PORT, not %r" % url)
    keys = os.path.join(state, "backend")
    if not os.path.exists(os.path.join(keys, "ca.der")):
        raise UsageError("no CA in %s: start tools/sim once without --backend first" % keys)
    with open(os.path.join(keys, "terminals.json")) as source:
        tid = next(iter(json.load(source)))
    with open(os.path.join(state, "uplink.json"), "w") as out:
        json.dump({"host": parts.hostname, "port": parts.port, "tid": tid}, out)


class Firmware:
    """The MicroPython process and its line protocol."""

    def __init__(self, state, heap, lock, keep_code=False, tls_heap=0):
        if not keep_code:
            install_code(state)  # the working tree's core into the flash's romfs partition
        image = build_image()
        # The boot image (the board, the update's boot code) and the romfs partition's copy
        # sit in the process heap outside the app's budget, as both are flash on the ESP32.
        romfs = partitions.read_image_table(os.path.join(state, "flash.bin"))["romfs"][1]
        # tls_heap: mbedTLS's part, held apart from the app's (tools/emu/simboard.py's
        # TlsRoom; tools/bench heap). Without it the app may borrow what TLS leaves unused.
        heap += tls_heap
        process_heap = heap + os.path.getsize(image) + romfs + 32 * 1024
        env = dict(os.environ, MICROPYPATH=".frozen", ONETILL_SIM_TLS_HEAP=str(tls_heap))
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
        self._args, self._env, self._lock = args, env, lock
        self._stopping = False
        self._events_base = 0  # events handled by the firmware's processes before this one
        self.restarts = 0
        self._spawn()
        # A thread moves the firmware's output lines into a queue: select() on a buffered
        # pipe would miss lines that already sit in Python's buffer.
        self._lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.screen = [""] * 8
        self.events_shown = -1
        self.events_acked = 0
        self.link_up = None  # as the terminal shows it ("L" lines)
        self.printed = []  # slips printed since the last look
        self.faults = []
        self.beeps = []  # "ok" | "error", as the board's buzzer sounds them
        self.stray = []
        self.unsent = None

    def _spawn(self):
        # A session of its own: Ctrl-C in the terminal stops the simulator, which then
        # stops the firmware between events; if the simulator is killed, the firmware reads
        # the end of its input and stops by itself.
        self.process = subprocess.Popen(
            self._args,
            cwd=ROOT,
            env=self._env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,
            pass_fds=(self._lock.fd,),  # the state folder stays locked while it runs
        )

    def _pump(self):
        while True:
            for line in self.process.stdout:
                self._lines.put(line.rstrip("\n"))
            # The terminal restarted (an update; simrom's RESTART_EXIT): a reset is a new
            # process, on a whole heap, booted again from its flash.
            if self.process.wait() != RESTART_EXIT or self._stopping:
                break
            self.process.stderr.close()
            self.process.stdin.close()
            self._spawn()
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
        for _ in range(100):
            process = self.process
            try:
                process.stdin.write(line + "\n")
                process.stdin.flush()
                return
            except (BrokenPipeError, ValueError):  # ValueError: closed by a restart
                if process.wait() != RESTART_EXIT:
                    break
                time.sleep(0.1)  # the firmware restarts: to the next process
        raise SimError(self.crash_report())

    def read_message(self, timeout_s):
        """Read one message (a screen, a slip, a beep, a fault); False on timeout."""
        line = self._next_line(timeout_s)
        if line is False:
            return False
        if line.startswith("S "):
            self.events_shown = self._events_base + int(line[2:])
            self.screen = [self._row() for _ in range(8)]
        elif line == "P":  # a slip: its lines ("|text"), then "."
            slip = []
            row = self._next_line(10)
            while row is not False and row.startswith("|"):
                slip.append(row[1:])
                row = self._next_line(10)
            if row != ".":  # a traceback or a fault, most likely: kept for the report
                if row is not False:
                    self.stray.append(row)
                raise SimError(self.crash_report())
            self.printed.append(slip)
        elif line.startswith("F "):
            self.faults.append(line[2:])
        elif line.startswith("B "):
            self.beeps.append(line[2:])
        elif line.startswith("U "):
            self.unsent = int(line[2:])
        elif line.startswith("A "):
            self.events_acked = self._events_base + int(line[2:])
        elif line == "R":  # a restart: the next process counts its events from 0
            self._events_base = self.events_acked
            self.restarts += 1
        elif line.startswith("L "):
            self.link_up = line[2:] == "1"
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

    def _wait(self, done, timeout_s):
        deadline = time.monotonic() + timeout_s
        while not done():
            left = deadline - time.monotonic()
            if left <= 0 or self.read_message(left) is False:
                raise SimError("the firmware did not answer within %d s" % timeout_s)

    def wait_for_start(self, timeout_s=30):
        """Read messages until the firmware has shown its first screen."""
        self._wait(lambda: self.events_shown >= 0, timeout_s)
        while self.read_message(0.05):  # start-up faults and the link that follow at once
            pass

    def wait_for_events(self, count, timeout_s=30):
        """Read messages until the firmware has acknowledged `count` events: by then it has
        sent everything they showed, printed or beeped (tools/emu/simboard.py)."""
        self._wait(lambda: self.events_acked >= count, timeout_s)

    def refresh(self):
        self.send("frame")
        shown = self.events_shown
        self.events_shown = -1
        self._wait(lambda: self.events_shown >= shown, 30)

    def unsent_count(self, timeout_s=10):
        """Records the back end has not acknowledged yet (-1: the terminal cannot tell)."""
        self.unsent = None
        self.send("unsent")
        self._wait(lambda: self.unsent is not None, timeout_s)
        return self.unsent

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
        self._stopping = True
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


TOKENS_HELP = "0-9 # * A-D card:N scan:N wait:MS link:up|down"


def parse_keys(script):
    """The protocol lines (or ("wait", ms)) for a --keys script, every token checked before
    the first is sent: a typo at the end must not leave a sale booked and the run failed."""
    steps = []
    for token in script.split():
        match = TOKEN_RE.match(token)
        if token in KEY_TOKENS:
            line = "key " + token
        elif match and match.group(1):
            line = "%s %s" % (match.group(1), match.group(2))
        elif match and match.group(4):
            line = "link " + ("1" if match.group(4) == "up" else "0")
        elif match and match.group(3):
            line = ("wait", int(match.group(3)))
        else:
            raise UsageError("unknown key token %r (keys: %s)" % (token, TOKENS_HELP))
        steps.append((token, line))
    return steps


def run_keys(firmware, steps, out):
    events = 0
    for token, line in steps:
        if isinstance(line, tuple):
            time.sleep(line[1] / 1000)
            firmware.refresh()
        else:
            firmware.send(line)
            events += 1
            firmware.wait_for_events(events)
        out.write("> %s\n%s\n" % (token, frame_text(firmware.screen)))
        for slip in firmware.printed:
            out.write("printed:\n" + "\n".join("  " + text for text in slip) + "\n")
        firmware.printed.clear()
    out.flush()


KEYMAP = {"\r": "#", "\n": "#", "\x1b": "*", "\x7f": "B", "\x08": "B"}
INTERACTIVE_KEYS = """interactive keys:
  0-9          digits
  Enter or #   # (OK)
  Esc or *     * (back, cancel)
  Backspace    B (delete a digit)
  a b c d      A B C D (A: functions, C/D: pages)
  r            read the demo card 4111 1111 1111 1111
  s            scan the demo payment code 28761234567890
  l            switch the simulated network off or on (off: the firmware's connections
               fail, the terminal sells offline; on: the uplink sends what waits)
  q            quit (says how many records the back end has not acknowledged yet)
  Ctrl-C       quit at once"""
HELP = (
    "keys: 0-9, Enter=#, Esc=*, Backspace=B, a-d=A-D\n"
    "r: read demo card | s: scan demo QR | l: network off/on | q: quit"
)


def interactive_message(char, network):
    """The protocol line for one typed character, or None when it is not a key; the network
    switch's new state."""
    if char == "r":
        return "card " + DEMO_CARD, network
    if char == "s":
        return "scan " + DEMO_QR, network
    if char == "l":
        return "link " + ("0" if network else "1"), not network
    key = KEYMAP.get(char, char.upper())
    if key not in KEY_TOKENS:
        return None, network
    return "key " + key, network


ESCAPE_SEQUENCE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|O.)")


def without_escape_sequences(typed):
    """What was typed, less the terminal's escape sequences (arrows, F keys, Home...): a
    lone Esc is `*`, but an arrow key must not arrive as `*` and letters (Up would clear
    the amount and open the function menu)."""
    return ESCAPE_SEQUENCE.sub("", typed)


def interactive(firmware, state, out, header, network):
    import shutil
    import termios
    import tty

    if not sys.stdin.isatty():
        raise UsageError("interactive mode needs a terminal; use --keys for scripts")
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    last_slip = []
    try:
        tty.setcbreak(fd)
        dirty = True
        while True:
            while firmware.read_message(0):  # everything that came, then one drawing
                dirty = True
            if "error" in firmware.beeps:
                out.write("\a")  # the terminal's bell: a key was refused or ignored
            firmware.beeps.clear()
            if dirty:
                if firmware.printed:
                    last_slip = firmware.printed[-1]
                    firmware.printed.clear()
                link = {None: "?", True: "up", False: "down"}[firmware.link_up]
                lines = header + [frame_text(firmware.screen)]
                lines.append(
                    "link %s%s | receipts go to %s"
                    % (
                        link,
                        "" if network else " (network off: l turns it on)",
                        os.path.join(state, "printer.txt"),
                    )
                )
                lines.append(HELP)
                room = shutil.get_terminal_size().lines - len("\n".join(lines).split("\n")) - 2
                if last_slip and room > 2:
                    lines.append("last printed:")
                    lines.extend("  " + text for text in last_slip[-(room - 1) :])
                # Clear and draw from the top, the start-up lines first: they stay in view.
                out.write("\x1b[2J\x1b[H" + "\n".join(lines) + "\n")
                out.flush()
                dirty = False
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            # The raw fd, every byte of it: a buffered reader would keep a burst of keys in
            # its own buffer, where select() no longer sees them.
            typed = os.read(fd, 1024)
            if not typed:
                return network
            for char in without_escape_sequences(typed.decode("latin-1")):
                if char == "q":
                    return network
                message, network = interactive_message(char, network)
                if message is not None:
                    firmware.send(message)
            dirty = True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        out.write("\n")


def main(argv):
    parser = argparse.ArgumentParser(
        prog="tools/sim",
        description="Run the OneTill firmware on the MicroPython unix port with a simulated "
        "board (demo terminal: cashier PINs 1111 and 2222, supervisor 9999).",
        epilog=INTERACTIVE_KEYS
        + "\n\nscripted keys (--keys): "
        + TOKENS_HELP
        + "\n\nexit: 0 done, 1 the firmware stopped or did not answer, 2 a mistake in the "
        "command (token, flag, state folder, another tools/sim on it) or Ctrl-C",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    parser.add_argument(
        "--keep-code",
        action="store_true",
        help="run the core installed in STATE/flash.bin's romfs partition (an update over "
        "the air) instead of writing the working tree's there first",
    )
    args = parser.parse_args(argv)
    out = sys.stdout
    header = []  # the start-up lines, kept above the drawing in interactive mode

    def say(text):
        header.append("tools/sim: " + text)
        out.write(header[-1] + "\n")
        out.flush()

    lock = None
    try:
        heap = parse_heap(args.heap)
        steps = parse_keys(args.keys) if args.keys is not None else None
        if args.offline and args.drain:
            raise UsageError("--drain needs the back end: drop --offline")
        if args.offline and args.backend:
            raise UsageError("--offline and --backend contradict each other")
        if steps is None and not sys.stdin.isatty():
            raise UsageError("interactive mode needs a terminal; use --keys for scripts")
        lock = StateLock(args.state)
        try:
            say(prepare_state(args.state))
        except OSError as exc:
            raise UsageError(
                "cannot use %s as the state folder: %s" % (args.state, exc.strerror or exc)
            ) from None
        run(args, heap, steps, out, header, say, lock)
    except UsageError as exc:
        out.write("tools/sim: %s\n" % exc)
        return 2
    except SimError as exc:
        out.write("tools/sim: %s\n" % exc)
        return 1
    except KeyboardInterrupt:
        out.write("tools/sim: interrupted; the terminal keeps what it had stored\n")
        return 2
    finally:
        if lock is not None:
            lock.release()
    return 0


def run(args, heap, steps, out, header, say, lock):
    """Start the back end (unless --offline) and the firmware, then type the keys or hand
    the keypad to the person at the terminal."""
    backend = None
    uplink_file = os.path.join(args.state, "uplink.json")
    if os.path.exists(uplink_file):
        os.remove(uplink_file)  # left by a run that was killed while starting
    try:
        if args.backend:
            use_backend(args.state, args.backend)
            say("back end at %s" % args.backend)
        elif not args.offline:
            backend = Backend(args.state)
            say("back end on https://127.0.0.1:%d" % backend.port)
            say(
                "back office on https://127.0.0.1:%d/office/ (its certificate is from the "
                "test CA in %s/backend/); logins: %s"
                % (
                    backend.port,
                    args.state,
                    ", ".join(
                        "%s / %s (%s)" % (user, password, role)
                        for user, role, password in backend.logins
                    ),
                )
            )
        uplinked = backend is not None or bool(args.backend)
        if uplinked:
            say(
                "heap %d KiB for the app + %d KiB for mbedTLS (which the unix port takes "
                "from the same heap)" % (heap // 1024, TLS_ALLOWANCE // 1024)
            )
        say("building the code image and starting the firmware")
        firmware = Firmware(
            args.state, heap + (TLS_ALLOWANCE if uplinked else 0), lock, args.keep_code
        )
        try:
            firmware.wait_for_start()
            # The firmware has read it: gone now, so a killed run leaves nothing behind.
            if os.path.exists(uplink_file):
                os.remove(uplink_file)
            for fault in firmware.faults:
                say("firmware: %s" % fault)
            if steps is not None:
                run_keys(firmware, steps, out)
            else:
                interactive(firmware, args.state, out, header, uplinked)
                unsent = firmware.unsent_count()
                if unsent > 0:
                    out.write(
                        "tools/sim: %d record%s not yet acknowledged by the back end; they "
                        "go with the next run that has it\n" % (unsent, "s" * (unsent != 1))
                    )
                elif unsent == 0 and uplinked:
                    out.write("tools/sim: the back end has every record\n")
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
        if os.path.exists(uplink_file):
            os.remove(uplink_file)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
