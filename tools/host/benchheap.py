"""tools/bench heap: the heap margin of the real firmware over a scripted busy day.

The day runs in the simulator (tools/sim's firmware process: the core from ROMFS on the
MicroPython unix port, the app heap pinned) on freshly provisioned terminals: a login, 40
sales over the three demo merchants with every method (cash, credit and debit cards read,
mobile codes scanned), the status screen during the day, then a logout, another cashier's
login, a sale, a void, a refund, an X report, a Z, the status screen, a sync and a logout,
and a last login and sale. It runs offline and with the back end (whose TLS gets the
simulator's own allowance on top of the app heap).

A day passes when every step shows the screen it should (no "Low memory" anywhere, the
status screen opens), the firmware reports no memory fault, and it exits cleanly; with the
back end, the back end also gets every record, at mid-day and at the end. With the back
end the firmware gets, on top of its app heap, what TLS itself takes, measured at the
start of the run (tls_heap: the terminal's TLS context and the room one exchange needs,
tools/emu/tlsneed.py), and the simulator keeps that room apart from the app's heap
(tools/emu/simboard.py, TlsRoom): on the ESP32 mbedTLS allocates from ESP-IDF's heap, not
the app's, and any more, or a room the app could borrow, would lend the app heap it does
not have on the device. The
lowest app heap at which the day passes on every one of the terminals is found by
bisection (a day takes a few seconds); the margin is the default 96 KiB minus it.

The terminals are provisioned once per run and copied for every try, so each try starts
from the same fresh flash; their state folders have paths of one length, as the firmware's
heap layout depends on the length of the path it is given.
"""

import os
import re
import shutil
import subprocess
import sys
import time

from tools.host import sim

ROOT = sim.ROOT
DEFAULT_HEAP_K = 96
SALES = 40
MERCHANTS = ("Noodle Bar", "Tea House", "Dumpling House")


def line(name, value, unit):
    print("%s: %s %s" % (name, value, unit), flush=True)


class DayFailed(Exception):
    """The day did not go as a cashier would expect; the message says at which step."""


def _luhn_completed(prefix):
    """prefix plus the Luhn check digit."""
    total = 0
    for position, char in enumerate(reversed(prefix)):
        value = int(char)
        if position % 2 == 0:  # doubled: the check digit will be to its right
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return prefix + str((10 - total % 10) % 10)


def _card(number):
    """A distinct valid card number per sale: one card may pay only 3 times in 10 minutes."""
    return _luhn_completed("411111111%06d" % number)


def day_script():
    """The busy day as (token, check) steps; check is (row, text) that the row must start
    with after the token, or None."""
    steps = []

    def keys(text, check=None):
        tokens = text.split()
        for token in tokens[:-1]:
            steps.append((token, None))
        steps.append((tokens[-1], check))

    def login(pin):
        keys(" ".join(pin) + " #", (0, "Merchant?"))

    def sale(merchant, amount_minor, method, number):
        name = MERCHANTS[merchant - 1]
        keys("%d #" % merchant, (0, name))
        keys(" ".join(str(amount_minor)) + " #", (2, "1 Credit 2 Debit"))
        if method in (1, 2):
            keys(str(method))
            keys("card:" + _card(number), (1, "Confirm sale"))
        elif method == 3:
            keys("3")
            keys("scan:2876%010d" % number, (1, "Confirm sale"))
        else:
            keys("4", (1, "Confirm sale"))
        keys("#", (1, "APPROVED"))
        keys("#", (0, "Merchant?"))

    def status():
        keys("A", (0, "Functions"))
        keys("5", (0, "Status"))
        steps[-1] = ("5", (5, "Free mem"))
        keys("#", (0, "Merchant?"))

    login("1111")
    for number in range(1, SALES + 1):
        sale((number - 1) % 3 + 1, 500 + 37 * (number % 11), (number - 1) % 4 + 1, number)
        if number == SALES // 2:
            status()
            steps.append(("drain", None))  # with the back end: a sync on a worn heap
    keys("A", (0, "Functions"))
    keys("7", (2, "Cashier PIN"))
    login("2222")  # Noodle Bar only
    sale(1, 980, 1, SALES + 1)
    keys("A", (0, "Functions"))
    keys("1", (1, "Void no. "))
    keys("#", (1, "VOIDED"))
    keys("#", (0, "Merchant?"))
    keys("A", (0, "Functions"))
    keys("2", (2, "Supervisor PIN"))
    keys("9 9 9 9 #", (2, "Orig. receipt no"))
    # The last sale of the first cashier's day: Noodle Bar, within the recent-sales ring.
    keys(" ".join(str(SALES)) + " #", (2, "Refund amount"))
    keys("1 0 0 #", (1, "Refund "))
    keys("#", (1, "REFUNDED"))
    keys("#", (0, "Merchant?"))
    keys("A", (0, "Functions"))
    keys("3", (0, "X report"))
    keys("1 #", (0, "X Noodle Bar"))
    keys("#", (0, "Merchant?"))
    keys("A", (0, "Functions"))
    keys("4", (2, "Supervisor PIN"))
    keys("9 9 9 9 #", (0, "Z settle"))
    keys("1 #", (1, "Settle batch"))
    keys("#", (1, "Z BATCH"))
    keys("#", (0, "Merchant?"))
    status()
    keys("A", (0, "Functions"))
    keys("6", (6, "Sync started"))
    keys("7", (2, "Cashier PIN"))
    login("1111")
    sale(2, 1250, 4, SALES + 2)
    steps.append(("drain", None))
    return steps


class Day:
    """One scripted day on a copy of a provisioned terminal, at one app heap. With the
    back end, tls_heap bytes more for TLS (tls_heap(); the simulator's own allowance if
    not given)."""

    def __init__(self, template, workdir, heap_k, backend, tls_heap=None):
        self.template = template
        self.state = workdir
        self.heap_k = heap_k
        self.with_backend = backend
        self.tls_heap = sim.TLS_ALLOWANCE if tls_heap is None else tls_heap
        self.where = "start"
        self.faults = []  # what the firmware reported (F lines), once the day is over

    def run(self, steps):
        """None if the day passed, else what went wrong (one line)."""
        if os.path.exists(self.state):
            shutil.rmtree(self.state)
        shutil.copytree(self.template, self.state)
        backend = None
        firmware = None
        failure = None
        lock = sim.StateLock(self.state)
        try:
            if self.with_backend:
                backend = sim.Backend(self.state)
            tls = self.tls_heap if self.with_backend else 0
            firmware = sim.Firmware(self.state, self.heap_k * 1024, lock, tls_heap=tls)
            firmware.wait_for_start()
            failure = self._play(firmware, steps)
        except sim.SimError as exc:
            failure = "%s: %s" % (self.where, _last_line(str(exc)))
        finally:
            code = firmware.stop() if firmware is not None else 0
            if firmware is not None:
                try:  # its last words too (read until it is gone)
                    while firmware.read_message(1) is not False:
                        pass
                except sim.SimError:
                    pass
                self.faults = list(firmware.faults)
            if backend is not None:
                backend.stop()
            lock.release()
        if code:
            report = firmware.crash_report()
            if os.getenv("BENCH_HEAP_VERBOSE"):
                sys.stderr.write(report + "\n")
            failure = "%s: exit %d: %s" % (self.where, code, _last_line(report))
        return failure

    def _play(self, firmware, steps):
        events = 0
        for index, (token, check) in enumerate(steps):
            if token == "drain":
                # With the back end, wait until it has every record: the day's syncs (TLS
                # and all) then really happened, on the heap as the day has left it.
                if self.with_backend and not firmware.drain(timeout_s=30):
                    last = firmware.faults[-1] if firmware.faults else "no fault"
                    return "step %d (drain): the back end lacks records (%s)" % (index, last)
                if self.with_backend:
                    failure = _memory_fault(firmware, "step %d (drain)" % index)
                    if failure:
                        return failure
                continue
            match = sim.TOKEN_RE.match(token)
            if token in sim.KEY_TOKENS:
                firmware.send("key " + token)
            else:
                firmware.send("%s %s" % (match.group(1), match.group(2)))
            events += 1
            self.where = where = "step %d (%s)" % (index, token)
            _wait(firmware, events)
            firmware.printed.clear()
            screen = firmware.screen
            if any("Low memory" in row for row in screen):
                return "%s: Low memory" % where
            failure = _memory_fault(firmware, where)
            if failure:
                return failure
            if check is not None and not screen[check[0]].startswith(check[1]):
                return "%s: row %d is %r, not %r" % (where, check[0], screen[check[0]], check[1])
        return None


def _memory_fault(firmware, where):
    for fault in firmware.faults:
        # MemoryError, "memory allocation failed"; the app kept part of TLS's room.
        if "emory" in fault or fault.startswith("TLS room not free"):
            return "%s: fault %s" % (where, fault)
    return None


def _wait(firmware, count, timeout_s=20):
    """Read messages until the firmware has acknowledged `count` events: its screen,
    receipts and beeps for them came before the acknowledgement (tools/emu/simboard.py)."""
    firmware.wait_for_events(count, timeout_s)


def _last_line(text):
    lines = [text for text in text.strip().splitlines() if text.strip()]
    return lines[-1] if lines else text


def provision(folder, count):
    """count freshly provisioned terminals (state folders) under folder."""
    templates = []
    for number in range(count):
        template = os.path.join(folder, "fresh%d" % number)
        sim.prepare_state(template)
        # Provisioning is the firmware's own first run, as tools/sim does it.
        lock = sim.StateLock(template)
        try:
            sim.Firmware(template, DEFAULT_HEAP_K * 1024, lock).stop()
        finally:
            lock.release()
        templates.append(template)
    return templates


def tls_heap(template, high=16 * 1024):
    """The bytes of heap TLS takes on the unix port: what the terminal's TLS context holds
    plus the lowest room (to 64 bytes, by bisection) in which one TLS exchange with the
    back end passes when nothing else in the heap is free (tools/emu/tlsneed.py)."""
    state = os.path.join(os.path.dirname(template), "tls")
    if os.path.exists(state):
        shutil.rmtree(state)
    shutil.copytree(template, state)
    image = sim.build_image()
    backend = sim.Backend(state)
    try:

        def exchange(room):
            """(passed, bytes the context holds)"""
            heap = 64 * 1024
            args = [
                ".venv/bin/micropython",
                "-X",
                "heapsize=%d" % (heap + os.path.getsize(image) + 32 * 1024),
                "tools/host/mp_boot.py",
                os.path.relpath(image, ROOT),
                str(heap),
                "tlsneed",
                os.path.relpath(state, ROOT),
                str(backend.port),
                str(room),
            ]
            done = subprocess.run(
                args,
                cwd=ROOT,
                env=dict(os.environ, MICROPYPATH=".frozen"),
                capture_output=True,
                text=True,
                timeout=60,
            )
            context = re.search(r"^CONTEXT (\d+)$", done.stdout, re.M)
            passed = done.returncode == 0 and "OK" in done.stdout.split()
            return passed, int(context.group(1)) if context else None

        passed, context = exchange(high)
        if not passed or context is None:
            raise sim.SimError("no TLS exchange with the back end even in %d bytes" % high)

        fails, holds = 0, high
        while holds - fails > 64:
            middle = (fails + holds) // 2
            if exchange(middle)[0]:
                holds = middle
            else:
                fails = middle
        return context + holds
    finally:
        backend.stop()
        shutil.rmtree(state, ignore_errors=True)


def passes(templates, heap_k, backend, steps, log, tls=None):
    """True if the day passes at heap_k on every terminal (stops at the first failure)."""
    work = os.path.join(os.path.dirname(templates[0]), "day")
    for number, template in enumerate(templates):
        started = time.monotonic()
        failure = Day(template, work, heap_k, backend, tls).run(steps)
        log(
            "heap %d KiB%s terminal %d: %s (%.1f s)"
            % (
                heap_k,
                " with back end" if backend else " offline",
                number,
                failure or "ok",
                time.monotonic() - started,
            )
        )
        if failure:
            return False
    return True


def lowest_heap_k(templates, backend, steps, log, low=48, high=160, tls=None):
    """The lowest heap (KiB) at which the day passes on every terminal, by bisection
    between low (assumed to fail) and high (checked)."""
    if not passes(templates, high, backend, steps, log, tls):
        return None
    while high - low > 1:
        middle = (low + high) // 2
        if passes(templates, middle, backend, steps, log, tls):
            high = middle
        else:
            low = middle
    return high


def run(terminals=5, modes=("offline", "backend"), quiet=False):
    """Print the heap figures; returns {mode: lowest heap in KiB or None}."""

    def log(text):
        if not quiet:
            sys.stderr.write("bench heap: %s\n" % text)

    folder = os.path.join(ROOT, "build", "benchheap")
    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    sim.build_image()  # once, before the clock starts
    templates = provision(folder, terminals)
    steps = day_script()
    tls = None
    if "backend" in modes:
        tls = tls_heap(templates[0])
        line("tls_heap", tls, "bytes")
    results = {}
    margins = []
    for mode in modes:
        started = time.monotonic()
        lowest = lowest_heap_k(templates, mode == "backend", steps, log, tls=tls)
        results[mode] = lowest
        line(mode + "_terminals", terminals, "terminals")
        if lowest is None:
            line(mode + "_lowest_heap_k", "none", "KiB")
            margins.append(-999)
            continue
        line(mode + "_lowest_heap_k", lowest, "KiB")
        line(mode + "_margin_k", DEFAULT_HEAP_K - lowest, "KiB")
        line(mode + "_bench_s", "%.0f" % (time.monotonic() - started), "s")
        margins.append(DEFAULT_HEAP_K - lowest)
    finite = [results[m] for m in modes if results[m] is not None]
    if finite:
        line("lowest_heap_k", max(finite), "KiB")
    line("margin_k", min(margins), "KiB")
    shutil.rmtree(folder, ignore_errors=True)
    return results
