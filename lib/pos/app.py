"""The terminal's main loop, shared by the ESP32 (main.py) and the simulator (tools/sim).

It builds the terminal from what the board provides, then runs two tasks (pos.compat.run,
the app's own scheduler on MicroPython): one takes the board's events (keys, card reads,
scans, link changes) and one ticks the clock, feeds the watchdog and collects garbage when
idle; with a back end, a third sends and polls (App.uplink). After every event the screen
goes to the display, but only when it changed; an input that changed nothing beeps
(pos.runner).

The board is described, member by member, in pos/board_contract.pyi: a Protocol the type
checker reads (tools/test types), so a board that lacks a member the app uses fails the check.

The downlink (pos.downlink, loaded only while it fetches): every reply of the back end says
which config, blacklist and command versions it holds; the uplink task fetches what is newer
(authenticated with /state/downlink.key), a blacklist delta is in force at once, a new config
and commands wait for an idle moment (nobody logged in, or the merchant menu between sales).
"""

import gc

from pos.card import Tokenizer
from pos.compat import collect_every, sleep_ms, spawn, ticks_diff, ticks_ms, unload, why
from pos.journal import JournalError
from pos.ledger import Ledger
from pos.risk import Risk
from pos.runner import Runner
from pos.terminal import Settings, Terminal
from pos.txq import QueueError, TxQueue

TYPE_CHECKING = False
if TYPE_CHECKING:  # read by the type checker only: the contract costs no heap
    from pos.board_contract import Board  # noqa: F401 (a type comment uses it)

FIRMWARE_VERSION = "0.1.0"
TICK_MS = 250
SYNC_EVERY_MS = 2000  # while records wait; backoff doubles from here after a failure
SYNC_BACKOFF_MAX_MS = 60000
CLOCK_DRIFT_S = 60  # the back end's time replaces a clock this far off (or unset)
CLOCK_BACK_MAX_S = 300  # how far the back end's time may put the clock back
POLL_EVERY_MS = 60000  # asks the back end for news (and sends a heartbeat) when idle this long
DEVICE_KEY = "device.key"

# The messages, "|" between them, in one bytes constant (pos.compat.why): each str literal
# longer than about 10 characters would be a heap object of its own for the module's life.
_WHY = (
    b"no device key: provision this terminal|"  # 0
    b"pushed config unusable, provisioned one in force: %s|"  # 1
    b"blacklist: %s; fetching it again|"  # 2
    b"lockout not stored: %r|"  # 3
    b"clock %s: %d (now %d, floor %d)"  # 4
)
# The entry points (main.py, the simulator's board) hold a 16 KiB block from their first
# line, before this code is imported, and let it go just before start(): the long-lived
# buffers start() makes (queue, journal state, ledger, config) then find one contiguous
# region instead of the holes that importing code leaves behind.


# A collection after every GC_EVERY_BYTES allocated, not only when the heap is exhausted:
# garbage is then taken back while it is young, so what is made next fills the holes it
# left instead of spreading the heap's objects ever wider. Made before start(), it also
# packs the long-lived objects start() makes between the config parser's garbage. The busy
# day of tools/bench heap (README "Memory") needs 93 KiB at 1 or 2 KiB, 94 at 4 KiB and 98
# with no threshold; each collection of the 96 KiB heap takes about 0.3 ms on the unix port.
GC_EVERY_BYTES = 2048


class App:
    def __init__(self, board):
        collect_every(GC_EVERY_BYTES)
        self.board = board  # type: Board
        self.terminal = None
        self.runner = None
        self.ledger = None
        self._sync_now = False
        self.syncs_failed = 0
        self.blacklist = None
        self.config_version = 0  # of the pushed config in force; 0: the provisioned files
        self.command_done = 0  # the last command id taken (kept in the state store)
        self.key_generation = 0  # of the keys in force (pos.keyrot; kept in the state store)
        self.received = None  # pos.downlink.Received: what waits for an idle moment
        self._handled = None  # the back end's versions last dealt with
        self._contact_ms = None
        self._wake = False  # the network came back: try now, not after the backoff
        self._batch_in_flight = False  # the heartbeat goes with a batch (not a poll)
        # update.txt (pos.install: the version and its phase), read when first asked for and
        # kept; pos.update sets None when it writes the file. Opening a file makes one block
        # of about 300 bytes (LittleFS's file object and its cache), which every contact's
        # heartbeat asked of a worn heap (README "Memory").
        self.update_text = None

    def start(self):
        """Load keys and config; on any fault the terminal shows it and sells nothing.

        The ledger comes first: its buffers (a flash sector, the sealed state) live as long
        as the terminal, so they take the heap before the config parser, which is loaded,
        used and unloaded, leaves its holes.
        """
        board = self.board
        fault = None
        config_fault = False  # the fault screen's title: TERMINAL FAULT
        try:
            key = board.store.read(DEVICE_KEY)
            if key is None or len(key) != 16:
                raise JournalError(why(_WHY, 0))
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
                fault, config_fault = exc, True
                board.fault("config: %s" % (exc,))
            try:
                pushed = config.load_pushed(board.config_folder) if fault is None else None
                if pushed is not None:
                    self.config_version, merchants, cashiers, auto_block = pushed
                    if auto_block is not None:
                        settings.auto_block_declines, settings.auto_block_window_min = auto_block
            except ValueError as exc:  # checked before it was installed: flash damage
                board.fault(why(_WHY, 1) % (exc,))
            pushed = None
            config = None
            unload("pos.config")
        tokenizer = Tokenizer(settings.card_token_key) if fault is None else None
        self.terminal.configure(
            settings, merchants, cashiers, tokenizer, self._risk(), fault, config_fault
        )
        self.runner = Runner(
            self.terminal,
            self.ledger,
            board.print_lines,
            board.beep,
            self.request_sync,
            board.fault,
        )
        if fault is None:
            # The PIN lockout as it stood before the restart (pos.lockout, unloaded after).
            from pos import lockout

            self.terminal.keep_lockout = self.keep_lockout
            unusable = lockout.restore(board.store, key, self.terminal, ticks_ms())
            lockout = None
            unload("lockout")
            if unusable is not None:
                board.fault(unusable)
        done = board.store.read("command.id")
        if done and len(done) == 4:
            self.command_done = int.from_bytes(done, "big")
        done = board.store.read("keygen")
        if done and len(done) == 4:
            self.key_generation = int.from_bytes(done, "big")
        if self.ledger is not None and board.store.size("keys.new") is not None:
            # A key install a power cut interrupted (or one staged and not yet installed):
            # finished before the first sale, so no record is sealed under the old keys.
            from pos import keyrot

            keyrot.install(self)
            keyrot = None
            unload("pos.keyrot")
            unload("keywrap")
        gc.collect()
        self.feed(("tick", ticks_ms(), board.unix_time()))

    def _risk(self):
        """Risk rules with the blacklist file the board names (none: nothing blocked)."""
        path = self.board.blacklist_path
        if path is None:
            return Risk(None, self.board.store)
        from pos.blacklist import Blacklist, BlacklistError

        try:
            self.blacklist = Blacklist(path)
        except BlacklistError as exc:
            # Start again from an empty list: the back end then sends the whole of it.
            self.board.fault(why(_WHY, 2) % (exc,))
            import os

            os.remove(path)
            self.blacklist = Blacklist(path)
        return Risk(self.blacklist, self.board.store)

    def feed(self, event):
        runner = self.runner
        runner.feed(event)
        if runner.changed:  # the display only when the screen changed (the Runner tells)
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
                unload("received")
            gc.collect()  # between events, so a sale never waits for a collection

    def keep_lockout(self, terminal):
        """The terminal's PIN count or lock changed: on flash before it goes on. False when
        the heap had no room even after a collection (a PIN is then not checked; a lock or
        a reset not written only leaves the terminal stricter after a restart)."""
        for _ in range(2):
            stored = False
            try:
                from pos import lockout

                store = self.board.store
                lockout.save(store, store.read(DEVICE_KEY), terminal)
                stored = True
            except MemoryError:
                pass
            except OSError as exc:  # a full or failing flash: the terminal goes on, and says so
                self.board.fault(why(_WHY, 3) % (exc,))
                stored = True
            lockout = None
            unload("lockout")  # collects: a second try has the whole heap
            if stored:
                return True
        return False

    def request_sync(self):
        """Send what waits now (a settle booked its Z records, a cashier asked)."""
        self._sync_now = True

    def handled(self, versions):
        """The back end's versions are dealt with: fetched, or refused and reported."""
        self._handled = versions

    def wanted(self):
        """Which of config, blacklist, commands, keys the back end has newer (and not
        refused); the blacklist also when the back end asks for it whole (its digest of ours
        did not match); keys only when no rotation is staged already. The release offered
        (index 4) is release_due's."""
        config, listed, command, whole, _, keys = self.board.uplink.versions
        received = self.received
        refused = received.refused if received is not None else (0, 0, 0, 0)
        last = received.commands[-1][0] if received is not None and received.commands else 0
        blacklist = self.blacklist
        return (
            config > self.config_version and config != refused[0],
            blacklist is not None
            and (listed > blacklist.version or whole)
            and listed != refused[1],
            command > max(last, self.command_done) and command != refused[2],
            keys > self.key_generation
            and keys != refused[3]
            and not (received is not None and received.keys),
        )

    def release_due(self, offered):
        """A release offered newer than the one installed, or the one installed on trial:
        pos.update has something to do."""
        text = self._update_text() or b"sw=0;"
        try:
            return offered > int(text[3 : text.find(b";")]) or b"trial" in text
        except ValueError:  # damaged: pos.update says so (a fault), as it always has
            return True

    def _update_text(self):
        text = self.update_text
        if text is None:
            text = self.update_text = self.board.store.read("update.txt") or b""
        return text

    def wake_uplink(self):
        """The network is back (the board's Wi-Fi): contact the back end now, whatever the
        backoff said; a poll if nothing waits, so the link shown is the link found."""
        self._contact_ms = None
        self._wake = True

    def set_clock(self, unix, trusted=True):
        """The one rule for a time the terminal is told (the board only sets it). The floor
        is the newest sale's time (the ledger's recent ring, in the state log's checkpoint
        and rebuilt from the records after it, so known from the first moment after a
        restart). The back end's time (trusted: its
        reply is authenticated) sets a clock unset or CLOCK_DRIFT_S off, forward freely,
        back CLOCK_BACK_MAX_S at most and not below the floor. NTP's (not authenticated)
        sets only an unset clock, only at or after the floor. The operator's clock command
        (pos.received) lets the back end's next time move it any distance, once, still not
        below the floor. Anything else is a fault."""
        if not unix:
            return
        board = self.board
        now = board.unix_time()
        sale = self.ledger.recent.last_sale() if self.ledger else None
        floor = sale[2] if sale else 0
        back = CLOCK_BACK_MAX_S if trusted else 0
        received = self.received
        if trusted and received is not None and received.clock_command:
            received.clock_command = False  # the operator's word, once: any distance
            unix = max(unix, floor)
            board.set_time(unix)
            verb = "set"
        elif unix < floor - back or now and (not trusted or unix < now - back):
            verb = "refused"
        elif abs(now - max(unix, floor)) > CLOCK_DRIFT_S:  # an unset clock (0) is that far
            unix = max(unix, floor)
            board.set_time(unix)
            verb = "set"
        else:
            return
        board.fault(why(_WHY, 4) % (verb, unix, now, floor))

    def heartbeat(self):
        """The terminal's state for the back end, sent with every batch."""
        from pos.compat import mem_free

        ledger = self.ledger
        board = self.board
        depth, oldest = self._queue_after_batch()
        now = board.unix_time()
        update = self._update_text()
        return (
            "depth=%d;oldest_s=%d;counter=%d;heap=%d;reset=%s;rssi=%d;fw=%s;cfg=%d;bl=%d;bld=%s;"
            "cmd=%d;kg=%d%s;%s"
            % (
                depth,
                max(0, now - oldest) if oldest and now else -1,
                ledger.journal.next_counter,
                mem_free(),
                board.reset_cause,
                board.rssi(),
                FIRMWARE_VERSION,
                self.config_version,
                self.blacklist.version if self.blacklist is not None else 0,
                self.blacklist.digest if self.blacklist is not None else "-",
                self.command_done,
                self.key_generation,
                self.received.refused_text if self.received is not None else "",
                update.decode() if update else "sw=0",
            )
        )

    def _queue_after_batch(self):
        """(unsent count, time of the oldest unsent sale or 0) as the queue will stand once
        the batch this heartbeat travels with is acked: the back end stores the heartbeat
        with that batch, so counting the batch would show it unsent for ever. The batch is
        the oldest frames that fit pos.uplink's BATCH_BYTES, as pos.contact.measure takes them."""
        ledger = self.ledger
        if not self._batch_in_flight:
            return ledger.unsent_count(), ledger.oldest_unsent_time()
        from pos.uplink import BATCH_BYTES

        in_batch = size = 0
        oldest = 0
        looked = 0
        for counter, frame in ledger.queue.unsent():
            if looked == 0 and size + len(frame) <= BATCH_BYTES:
                size += len(frame)
                in_batch += 1
                continue
            # The first few after the batch, as Ledger.oldest_unsent_time looks at them.
            time = ledger.recent.time_of(counter)
            looked += 1
            if time is not None:
                oldest = time
            if oldest or looked >= 4:
                break
        return ledger.unsent_count() - in_batch, oldest

    async def uplink(self):
        """Send what waits, now and then; back off (with jitter) while the link is down."""
        from os import urandom

        uplink = self.board.uplink
        uplink.status = self.heartbeat
        # Requests signed, replies checked, with keys from the link key (pos.uplink).
        self._authenticate(uplink)
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
                        self._batch_in_flight = True
                        try:
                            await self._contact(uplink, True)
                        finally:
                            self._batch_in_flight = False
                    else:
                        await self._contact(uplink, False)
                    self._contact_ms = ticks_ms()
                    wait_ms = SYNC_EVERY_MS
                    self.feed(("link", True))
                    self.set_clock(uplink.server_time)
                    if asked:
                        self.feed(("synced", True))
                    faults = received is not None and received.upload_faults
                    if uplink.versions != self._handled or faults:
                        if faults or True in self.wanted() or self.release_due(uplink.versions[4]):
                            try:
                                await self._with_downlink().catch_up(self)
                            finally:  # a MemoryError too: the code must not stay resident
                                unload("downlink")
                                unload("received")  # its Received keeps its class
                        else:  # nothing new: pos.downlink (4.5 KiB of code) not loaded
                            self._handled = uplink.versions
                except Exception as exc:  # UplinkError, MemoryError: never the app's end
                    self.syncs_failed += 1
                    self.board.fault("sync: %s" % (exc,))
                    wait_ms = min(wait_ms * 2, SYNC_BACKOFF_MAX_MS)
                    self.feed(("link", False))
                    if asked:
                        self.feed(("synced", False))
                # The protocol's code (pos.contact, 1.7 KiB of heap) and pos.link's (1.1 KiB),
                # loaded for the contact (_contact, pos.contact.head): between contacts the
                # sales have that heap.
                unload("contact")
                unload("link")
            # Jitter, so terminals that lost the link together do not all return together.
            jitter = urandom(1)[0] * wait_ms // 1024
            waited = 0
            while waited < wait_ms + jitter and not self._sync_now and not self._wake:
                await sleep_ms(TICK_MS)
                waited += TICK_MS
            if self._wake:
                self._wake = False
                wait_ms = SYNC_EVERY_MS

    def _authenticate(self, uplink):
        """Give the uplink its keys, from the link key (pos.contact: nothing of it is kept
        by the uplink task's frame, so the unload after a contact lets it go)."""
        from pos import contact

        store = self.board.store
        contact.authenticate(uplink, store.read("downlink.key"), store)

    def _contact(self, uplink, sending):
        """A contact's coroutine, from pos.contact (loaded for it; the caller unloads it):
        a batch sent (sending), or the back end's versions asked for."""
        from pos import contact

        if sending:
            return contact.sync(uplink)
        return contact.request(uplink, "GET", "versions", b"")

    def _with_downlink(self):
        """pos.downlink, loaded for the moment: the caller unloads it when done."""
        from pos import downlink

        return downlink

    async def main(self):
        self.board.start(self)
        spawn(self.clock())
        if self.ledger is not None and self.board.uplink is not None:
            spawn(self.uplink())
        await self.events()  # the other tasks end with it (run)
