"""The simulated ESP32 board for tools/sim: runs on the MicroPython unix port.

STATE/flash.bin is a 4 MiB image laid out like the device: the ESP-IDF partition table at
0x8000, the txq and statelog partitions on the NOR-flash model, and the vfs (LittleFS,
mounted at /flash) from the end of the last partition to the end of flash, as MicroPython
makes it on an ESP32.
Before the first boot, tools/sim runs it once with "provision", as a real terminal is
provisioned by a tool before it sells: STATE/provision.json becomes /flash/config and
/flash/state, and is deleted.

It talks to tools/sim over stdin/stdout, one line a message:
  in:   key K | card NUMBER | scan CODE | link 0|1 | frame | unsent | quit
  out:  S <events> then 8 lines "|row"   the screen after that many events (sent only when
                                         it changed, or when asked with "frame")
        P then lines "|text", then "."   a receipt or report that printed
        B ok|error                       a beep
        F text                           a fault
        U n                              records not yet acked by the back end
        A <events>                       every event so far is handled: sent once per input
                                         line, after what it showed, printed or beeped, so
                                         tools/sim never waits for a screen that will not
                                         change
        L 0|1                            the link as the terminal shows it, on every change

"link 0|1" is the simulated Wi-Fi: while it is off, every connection the firmware opens
fails with OSError, as it would on a device without a network, and the terminal is told the
link is down; when it comes back the uplink tries again at once.
"""

import gc
import json
import os
import struct
import sys

# The app's modules are imported inside main(), after the long-lived blocks are made (the
# early reserve and the TLS context): see pos.app.

FLASH_SIZE = 0x400000
TABLE_OFFSET = 0x8000
SECTOR = 4096
MOUNT = "/flash"
_POLL_MS = 2  # stdin's poll while there is no input


_NETWORK_DOWN = "network down (the simulator's link switch)"
# The part of the firmware's heap that is mbedTLS's (tools/host/sim.py passes it): on the
# ESP32 mbedTLS allocates from ESP-IDF's heap, not the app's.
TLS_HEAP = int(os.getenv("ONETILL_SIM_TLS_HEAP") or 0)


class _Connection:
    """A connection to the back end that fails once the simulated network goes down, as one
    would when Wi-Fi drops: the step under way fails, and so does its end (wait_closed), so
    an exchange that began before the switch never reports the link up after it. Its end
    gives mbedTLS's room back to it (TlsRoom)."""

    def __init__(self, board, stream):
        self._board = board
        self._stream = stream

    # Each step as a plain method that hands back the Link's own (a coroutine to await):
    # no object of the simulator's is made during the connection (a looked-up bound method
    # or a coroutine of its own would be, and the device has no such wrapper).
    def _up(self):
        if not self._board.network:
            raise OSError(_NETWORK_DOWN)
        return self._stream

    def write(self, data):
        self._up().write(data)

    def drain(self):
        return self._up().drain()

    def read(self, n):
        return self._up().read(n)

    def readexactly(self, n):
        return self._up().readexactly(n)

    def readline(self):
        return self._up().readline()

    def close(self):
        self._stream.close()

    async def wait_closed(self):
        try:
            await self._stream.wait_closed()
        finally:
            self._stream = None
            self._board.tls_room.take()
        if not self._board.network:
            raise OSError(_NETWORK_DOWN)


class TlsRoom:
    """The heap mbedTLS has to itself, as it has on the ESP32 (ESP-IDF's heap, not the
    app's). On the unix port mbedTLS allocates from the MicroPython heap, so the simulator
    gives the firmware its app heap plus a TLS allowance; left to itself, a connection would
    look for its blocks in the app's worn heap and the app would borrow what TLS leaves
    unused. So what the allowance holds beyond the TLS context is held here, at the top of
    the heap, from the start: let go just before a connection opens (its TLS blocks, too
    large for the app's holes, go there) and taken again once it has closed (first fit: where
    it was, unless the app kept a block there, which is a fault). How often it was let go and
    taken back is said when the firmware ends."""

    def __init__(self, size):
        self.size = size
        self._room = None
        self.let_go = self.taken_back = 0
        if size <= 0:
            return
        # At the top of the heap: first fit puts the app's objects below it, and a
        # connection's large blocks, which fit nowhere below, in it. So the heap is filled
        # (a chain of pairs: a list's growing buffer would land anywhere), then given back
        # from its top, the pieces taken last, until the room fits there.
        below = None  # type: object
        gc.collect()
        try:
            while True:
                below = (below, bytearray(256))
        except MemoryError:
            pass
        while below is not None and self._room is None:
            try:
                self._room = bytearray(size)
            except MemoryError:
                below = below[0]  # type: ignore[index]
        del below
        gc.collect()
        if self._room is None:
            self.size = 0
            print("F TLS room: no %d-byte block at start (memory)" % size)
            return
        print("F TLS room: %d bytes held for mbedTLS's connections" % size)

    def release(self):
        if self._room is not None:
            self._room = None
            self.let_go += 1
            gc.collect()

    def take(self):
        if self.size > 0 and self._room is None:
            gc.collect()
            try:
                self._room = bytearray(self.size)
                self.taken_back += 1
            except MemoryError:
                # The app kept a block in it: it borrowed heap it would not have on the
                # device. A fault (tools/bench heap fails such a day); the next close tries
                # again.
                self._room = None
                print("F TLS room not free after the connection: the app holds memory in it")


async def _readable(poller):
    """Wait until stdin has input, the other tasks running meanwhile (once at least, so
    they run between two lines)."""
    from pos.compat import sleep_ms  # the app's scheduler (romfs_partition has no core)

    await sleep_ms(0)
    while True:
        for _ in poller.ipoll(0):  # ipoll: no list made while there is nothing
            return
        await sleep_ms(_POLL_MS)


def read_partitions(path):
    """{label: (offset, size)} from the ESP-IDF partition table of a flash image, read one
    32-byte entry at a time."""
    partitions = {}
    entry = bytearray(32)
    with open(path, "rb") as image:
        image.seek(TABLE_OFFSET)
        while image.readinto(entry) == 32:
            magic, _, _, offset, size, label, _ = struct.unpack("<HBBII16sI", entry)
            if magic != 0x50AA:
                break
            partitions[label.rstrip(b"\x00").decode()] = (offset, size)
    return partitions


class SimBoard:
    def __init__(self, state_dir, uplink=None, provision_only=False):
        import simrom

        from pos.store import FileStore

        self.state_dir = state_dir
        # The partitions, on the NOR-flash model, made before the budget (simrom): every
        # write flushed (a killed simulator loses nothing a chip would keep), no per-sector
        # erase counters.
        chips = simrom.chips
        if "txq" not in chips:
            raise OSError("flash.bin has no txq partition")
        self.bdev = chips["txq"]
        if "statelog" not in chips:
            raise OSError(
                "flash.bin has no statelog partition: delete the sim state for a new one"
            )
        self.statelog = chips["statelog"]
        self._vfs_flash = chips["vfs"]
        self._mount()
        self.config_folder = MOUNT + "/config"
        self.store = FileStore(MOUNT + "/state")
        self.blacklist_path = MOUNT + "/state/blacklist"
        self.fault_log_path = MOUNT + "/state/faults.log"
        self.reset_cause = "power"  # every start of the simulator is a power-on
        self.restarting = False
        if provision_only:
            self._provision()
            return
        # stdin polled, not an asyncio stream: asyncio.stream's code (about 1.9 KiB of the
        # app's heap) is the uplink's on the device, and a keypad needs none of it.
        import select

        self._stdin = select.poll()
        self._stdin.register(sys.stdin, select.POLLIN)
        self.events = 0
        self._acked = 0
        self._link_shown = None
        self.uplink = uplink
        # The simulated Wi-Fi: on from the start when there is a back end to reach.
        self.network = uplink is not None
        if uplink is not None:
            connect = uplink.connect

            async def connect_if_network(timeout_s=0):
                if not self.network:
                    raise OSError(_NETWORK_DOWN)
                self.tls_room.release()
                try:
                    stream = _Connection(self, (await connect(timeout_s))[1])
                except BaseException:
                    self.tls_room.take()
                    raise
                return stream, stream

            uplink.connect = connect_if_network  # the seam pos.uplink and pos.downlink use
        self.tls_room = TlsRoom(0)
        self.app = None

    def _mount(self):
        try:
            os.mount(os.VfsLfs2(self._vfs_flash), MOUNT)  # type: ignore[attr-defined]  # unix port
        except OSError:
            # A blank vfs: format it, as MicroPython does on a new ESP32.
            os.VfsLfs2.mkfs(self._vfs_flash)  # type: ignore[attr-defined]
            os.mount(os.VfsLfs2(self._vfs_flash), MOUNT)  # type: ignore[attr-defined]

    def _provision(self):
        path = self.state_dir + "/provision.json"
        try:
            with open(path) as source:
                doc = json.load(source)
        except OSError:
            return
        from binascii import unhexlify

        from pos.journal import Journal

        try:
            os.mkdir(self.config_folder)
        except OSError:
            pass
        for name, text in doc["config"].items():
            with open(self.config_folder + "/" + name, "w") as out:
                out.write(text)
        if "release_pub" in doc:  # the release public key, as tools/provision writes it
            with open(self.config_folder + "/release.pub", "wb") as out:
                out.write(unhexlify(doc["release_pub"]))
        device_key = unhexlify(doc["device_key"])
        self.store.write("device.key", device_key)
        if "downlink_key" in doc:
            self.store.write("downlink.key", unhexlify(doc["downlink_key"]))
        Journal.provision(self.statelog, device_key, unhexlify(doc["ik"]), unhexlify(doc["ik_id"]))
        os.remove(path)
        self.fault("provisioned terminal " + doc["terminal_id"])

    def connect(self, queue):
        """Give the uplink (made early, see main) the queue it sends from."""
        if self.uplink is not None:
            self.uplink.queue = queue

    # --- the board interface of pos.app ------------------------------------------------------

    def _acknowledge(self):
        """Tell tools/sim the events so far are handled (and the link, if it changed)."""
        self._report_link()
        if self._acked != self.events:
            self._acked = self.events
            print("A %d" % self.events)

    def _report_link(self):
        terminal = self.app.terminal if self.app is not None else None
        if terminal is not None and terminal.link_up != self._link_shown:
            self._link_shown = terminal.link_up
            print("L %d" % terminal.link_up)

    async def next_event(self):
        while True:
            self._acknowledge()
            await _readable(self._stdin)
            line = sys.stdin.readline()
            if not line:
                return None
            words = line.split()
            if not words:
                continue
            verb = words[0]
            if verb == "quit":
                return None
            if verb == "frame":
                self._send_frame()
                continue
            if verb == "unsent":
                ledger = self.app.ledger if self.app else None
                print("U %d" % (ledger.unsent_count() if ledger else -1))
                continue
            if verb == "link":
                self.network = words[1] == "1"
                self.events += 1
                if self.network and self.app is not None:
                    self.app.wake_uplink()  # as Wi-Fi coming back does on the device
                # Up only with a back end to reach (--offline has none).
                return ("link", self.network and self.uplink is not None)
            if verb in ("key", "card", "scan") and len(words) == 2:
                self.events += 1
                return (verb, words[1])
            self.fault("unknown input " + verb)

    def show(self, screen):
        self._screen = screen
        self._send_frame()

    def _send_frame(self):
        # Piece by piece: a display driver writes rows, it builds no text of the whole
        # screen (one would be a block the app's worn heap must find).
        write = sys.stdout.write
        write("S %d\n" % self.events)
        for row in self._screen.text():
            write("|")
            write(row)
            write("\n")

    def print_lines(self, lines):
        # One pass over the lines, as the device's printer takes them: each is made as it
        # is taken (pos.receipt), so the slip is never whole in the heap.
        write = sys.stdout.write
        write("P\n")
        with open(self.state_dir + "/printer.txt", "a") as paper:
            for text in lines:
                paper.write(text)
                paper.write("\n")
                write("|")
                write(text)
                write("\n")
            paper.write("\n")
        write(".\n")

    def beep(self, kind):
        print("B " + kind)

    def fault(self, text):
        print("F " + text)
        try:  # kept on the vfs as the device keeps it, for the faultlog command
            with open(self.fault_log_path, "a") as log:
                log.write(text + "\n")
        except OSError:
            pass

    def unix_time(self):
        import time

        return int(time.time())  # the unix port's epoch is 1970, as records want

    def feed_watchdog(self):
        self._report_link()  # every tick: the uplink changes the link between inputs

    def set_time(self, unix):
        pass  # the simulator's clock is the PC's, already right

    def start(self, app):
        pass  # no tasks of its own: stdin is read by next_event

    def rssi(self):
        return 0  # no radio

    def restart(self):
        """As machine.reset(): the app ends here, and tools/sim starts the firmware again
        (simrom: pos.install first)."""
        self.restarting = True
        raise SystemExit  # out of every task (as no `except Exception` catches it), to simrom


TYPE_CHECKING = False
if TYPE_CHECKING:  # SimBoard declared against the board contract (pos/board_contract.pyi)
    from pos.board_contract import Board

    def _implements_the_contract(board: SimBoard) -> Board:
        return board


def early_uplink(state_dir):
    """The uplink to the back end tools/sim started (STATE/uplink.json, the CA in
    STATE/backend/ca.der), or None (--offline). Made before the app's code is imported:
    its TLS context and batch buffer live as long as the terminal."""
    try:
        with open(state_dir + "/uplink.json") as source:
            doc = json.load(source)
        with open(state_dir + "/backend/ca.der", "rb") as source:
            ca_der = source.read()
    except OSError:
        return None, TlsRoom(0)
    import pos.link  # noqa: F401  # the app's code (tls_context loads it): not in the measure
    from pos.uplink import Uplink, tls_context

    gc.collect()
    free = gc.mem_free()
    context = tls_context(ca_der)
    gc.collect()
    # What the TLS allowance holds beyond the context is mbedTLS's room for connections.
    room = TlsRoom(TLS_HEAP - (free - gc.mem_free()))
    return Uplink(None, doc["host"], doc["port"], doc["tid"], context), room


_room = []  # type: list[TlsRoom]  # the running terminal's, for its last word


def main(argv):
    if argv[1:] == ["provision"]:
        SimBoard(argv[0], provision_only=True)
        return
    import simrom  # loaded by mp_boot before the budget, as the device's resets are not code

    simrom.run_terminal(argv[0], start)
    if _room and _room[0].size:
        room = _room[0]
        print("F TLS room: let go %d times, taken back %d" % (room.let_go, room.taken_back))
    print("Q")


def start(state_dir):
    """The terminal, booted (simrom runs it, and ends the process for a restart); its
    board."""
    # Long-lived blocks first, while the heap is whole: the early reserve (released just
    # before the app's buffers are made) and the TLS context; then the app's code.
    early_reserve = bytearray(16 * 1024)
    uplink, room = early_uplink(state_dir)
    _room[:] = [room]
    from pos.app import App

    board = SimBoard(state_dir, uplink)
    board.tls_room = room
    app = board.app = App(board)
    del early_reserve
    gc.collect()
    app.start()
    if app.ledger is not None:
        board.connect(app.ledger.queue)
    else:
        board.uplink = None  # a terminal that cannot sell has nothing to send
    app.feed(("link", False))
    return board
