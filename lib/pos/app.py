"""The terminal's main loop, shared by the ESP32 (main.py) and the simulator (tools/sim).

It builds the terminal from what the board provides, then runs two asyncio tasks: one takes
the board's events (keys, card reads, scans, link changes) and one ticks the clock, feeds
the watchdog and collects garbage when idle. After every event the screen goes to the
display, but only when it changed.

A board is any object with:
    bdev            the txq partition (readblocks/writeblocks/ioctl)
    statelog        the statelog partition (the same protocol): DUKPT registers, ledger
    store           a pos.store.FileStore for /state (device key, downlink key, ...)
    config_folder   where terminal.json, merchants.json and cashiers.json live
    async next_event()  -> an event tuple for the terminal, or None when input has ended
    show(screen), print_lines(lines), beep(kind), fault(text)
    unix_time()     -> seconds since 1970 UTC, or 0 while the clock is not set
    feed_watchdog()
    uplink          a pos.uplink.Uplink, or None for a terminal without a back end
    set_time(unix)  optional: set the clock from the back end's time when it is not set
    start(app)      optional: start the board's own tasks (Wi-Fi) once the loop runs
    blacklist_path  optional: the card blacklist file (pos.blacklist)
    fault_log_path  optional: the fault log, sent to the back end when it asks (faultlog)

The downlink (pos.downlink, loaded only while it fetches): every reply of the back end says
which config, blacklist and command versions it holds; the uplink task fetches what is newer
(authenticated with /state/downlink.key), a blacklist delta is in force at once, a new config
and commands wait for an idle moment (nobody logged in, or the merchant menu between sales).
"""

import asyncio
import gc

from pos.card import Tokenizer
from pos.compat import sleep_ms, ticks_diff, ticks_ms, unload
from pos.journal import JournalError
from pos.ledger import Ledger
from pos.risk import Risk
from pos.runner import Runner
from pos.terminal import Settings, Terminal
from pos.txq import QueueError, TxQueue

FIRMWARE_VERSION = "0.1.0"
TICK_MS = 250
SYNC_EVERY_MS = 2000  # while records wait; backoff doubles from here after a failure
SYNC_BACKOFF_MAX_MS = 60000
CLOCK_DRIFT_S = 60  # the back end's time replaces a clock this far off (or unset)
POLL_EVERY_MS = 60000  # asks the back end for news (and sends a heartbeat) when idle this long
DEVICE_KEY = "device.key"
# The entry points (main.py, the simulator's board) hold a 16 KiB block from their first
# line, before this code is imported, and let it go just before start(): the long-lived
# buffers start() makes (queue, journal state, ledger, config) then find one contiguous
# region instead of the holes that importing code leaves behind.


class App:
    def __init__(self, board):
        self.board = board
        self._shown = bytearray(128)
        self.terminal = None
        self.runner = None
        self.ledger = None
        self._sync_now = False
        self.syncs_failed = 0
        self.blacklist = None
        self.config_version = 0  # of the pushed config in force; 0: the provisioned files
        self.command_done = 0  # the last command id taken (kept in the state store)
        self.received = None  # pos.downlink.Received: what waits for an idle moment
        self._handled = None  # the back end's versions last dealt with
        self._contact_ms = None

    def start(self):
        """Load keys and config; on any fault the terminal shows it and sells nothing.

        The ledger comes first: its buffers (a flash sector, the sealed state) live as long
        as the terminal, so they take the heap before the config parser, which is loaded,
        used and unloaded, leaves its holes.
        """
        board = self.board
        fault = None
        title = b"TERMINAL FAULT"
        try:
            key = board.store.read(DEVICE_KEY)
            if key is None or len(key) != 16:
                raise JournalError("no device key: provision this terminal")
            self.ledger = Ledger(TxQueue(board.bdev), board.statelog, key)
        except (JournalError, QueueError, ValueError) as exc:
            fault = exc
            board.fault("start: %r" % (exc,))
        # The terminal first, with the heap still whole (parsing JSON leaves holes all over
        # it); it is configured once the config is read.
        settings = Settings()
        self.terminal = Terminal(settings, None, None, self.ledger, None, None, "starting")
        merchants = cashiers = None
        if fault is None:  # a terminal without its keys cannot sell, whatever its config
            try:
                from pos import config  # unloaded below: parsing is needed only now

                settings, merchants, cashiers = config.load(board.config_folder)
            except ValueError as exc:  # ConfigError, or a value the parser could not take
                fault, title = exc, b"CONFIG ERROR"
                board.fault("config: %s" % (exc,))
            try:
                pushed = config.load_pushed(board.config_folder) if fault is None else None
                if pushed is not None:
                    self.config_version, merchants, cashiers = pushed
            except ValueError as exc:  # checked before it was installed: flash damage
                board.fault("pushed config unusable, provisioned one in force: %s" % (exc,))
            pushed = None
            config = None
            unload("pos.config")
        tokenizer = Tokenizer(settings.card_token_key) if fault is None else None
        self.terminal.configure(
            settings, merchants, cashiers, tokenizer, self._risk(), fault, title
        )
        self.runner = Runner(
            self.terminal,
            self.ledger,
            board.print_lines,
            board.beep,
            self._request_sync,
            board.fault,
        )
        done = board.store.read("command.id")
        if done and len(done) == 4:
            self.command_done = int.from_bytes(done, "big")
        gc.collect()
        self.feed(("tick", ticks_ms(), board.unix_time()))

    def _risk(self):
        """Risk rules with the blacklist file the board names (none: nothing blocked)."""
        path = getattr(self.board, "blacklist_path", None)
        if path is None:
            return Risk()
        from pos.blacklist import Blacklist, BlacklistError

        try:
            self.blacklist = Blacklist(path)
        except BlacklistError as exc:
            # Start again from an empty list: the back end then sends the whole of it.
            self.board.fault("blacklist: %s; fetching it again" % (exc,))
            import os

            os.remove(path)
            self.blacklist = Blacklist(path)
        return Risk(self.blacklist)

    def feed(self, event):
        self.runner.feed(event)
        buf = self.terminal.screen.buf
        if buf != self._shown:
            self._shown[:] = buf
            self.board.show(self.terminal.screen)

    async def events(self):
        while True:
            event = await self.board.next_event()
            if event is None:
                return
            self.feed(event)

    async def clock(self):
        while True:
            await sleep_ms(TICK_MS)
            self.feed(("tick", ticks_ms(), self.board.unix_time()))
            self.board.feed_watchdog()
            if self.received is not None and self.received.waiting(self.terminal):
                from pos import received

                received.at_idle(self)
                received = None
                unload("pos.received")
            gc.collect()  # between events, so a sale never waits for a collection

    def _request_sync(self):
        self._sync_now = True

    def _correct_clock(self, server_time):
        """Set the clock from the back end's when it is unset or off by CLOCK_DRIFT_S."""
        set_time = getattr(self.board, "set_time", None)
        if not server_time or set_time is None:
            return
        now = self.board.unix_time()
        if not now or abs(now - server_time) > CLOCK_DRIFT_S:
            set_time(server_time)
            self.board.fault("clock set from the back end: %d (was %d)" % (server_time, now))

    def heartbeat(self):
        """The terminal's state for the back end, sent with every batch."""
        from pos.compat import mem_free

        ledger = self.ledger
        board = self.board
        oldest = ledger.oldest_unsent_time()
        now = board.unix_time()
        return (
            "depth=%d;oldest_s=%d;counter=%d;heap=%d;reset=%s;rssi=%d;fw=%s;cfg=%d;bl=%d;cmd=%d%s"
            % (
                ledger.unsent_count(),
                max(0, now - oldest) if oldest and now else -1,
                ledger.journal.next_counter,
                mem_free(),
                getattr(board, "reset_cause", "-"),
                board.rssi() if hasattr(board, "rssi") else 0,
                FIRMWARE_VERSION,
                self.config_version,
                self.blacklist.version if self.blacklist is not None else 0,
                self.command_done,
                self.received.refused_text if self.received is not None else "",
            )
        )

    async def uplink(self):
        """Send what waits, now and then; back off (with jitter) while the link is down."""
        from os import urandom

        uplink = self.board.uplink
        uplink.status = self.heartbeat
        wait_ms = SYNC_EVERY_MS
        while True:
            asked = self._sync_now
            self._sync_now = False
            sending = asked or (self.ledger is not None and self.ledger.unsent_count())
            polling = (
                self._contact_ms is None
                or ticks_diff(ticks_ms(), self._contact_ms) >= POLL_EVERY_MS
            )
            received = self.received
            if sending or polling or (received is not None and received.upload_faults):
                try:
                    if sending:
                        await uplink.sync()
                    else:
                        await uplink.poll()
                    self._contact_ms = ticks_ms()
                    wait_ms = SYNC_EVERY_MS
                    self.feed(("link", True))
                    self._correct_clock(uplink.server_time)
                    if asked:
                        self.feed(("synced", True))
                    if uplink.versions != self._handled or (
                        received is not None and received.upload_faults
                    ):
                        await self._with_downlink().catch_up(self)
                        unload("pos.downlink")
                except Exception as exc:  # UplinkError, MemoryError: never the app's end
                    self.syncs_failed += 1
                    self.board.fault("sync: %s" % (exc,))
                    wait_ms = min(wait_ms * 2, SYNC_BACKOFF_MAX_MS)
                    self.feed(("link", False))
                    if asked:
                        self.feed(("synced", False))
            # Jitter, so terminals that lost the link together do not all return together.
            jitter = urandom(1)[0] * wait_ms // 1024
            waited = 0
            while waited < wait_ms + jitter and not self._sync_now:
                await sleep_ms(TICK_MS)
                waited += TICK_MS

    def _with_downlink(self):
        """pos.downlink, loaded for the moment: the caller unloads it when done."""
        from pos import downlink

        return downlink

    async def main(self):
        start = getattr(self.board, "start", None)
        if start is not None:
            start(self)
        clock = asyncio.create_task(self.clock())
        uplink = None
        if self.ledger is not None and getattr(self.board, "uplink", None) is not None:
            uplink = asyncio.create_task(self.uplink())
        await self.events()
        clock.cancel()
        if uplink is not None:
            uplink.cancel()


def run(board):
    app = App(board)
    app.start()
    asyncio.run(app.main())
    return app
