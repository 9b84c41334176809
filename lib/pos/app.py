"""The terminal's main loop, shared by the ESP32 (main.py) and the simulator (tools/sim).

It builds the terminal from what the board provides, then runs two asyncio tasks: one takes
the board's events (keys, card reads, scans, link changes) and one ticks the clock, feeds
the watchdog and collects garbage when idle. After every event the screen goes to the
display, but only when it changed.

A board is any object with:
    bdev            the txq partition (readblocks/writeblocks/ioctl)
    store           a pos.store.FileStore for /state (journal state, device key)
    config_folder   where terminal.json, merchants.json and cashiers.json live
    async next_event()  -> an event tuple for the terminal, or None when input has ended
    show(screen), print_lines(lines), beep(kind), fault(text)
    unix_time()     -> seconds since 1970 UTC, or 0 while the clock is not set
    feed_watchdog()
    upload()        optional: start sending unsent records (the uplink); None when absent
"""

import asyncio
import gc

from pos.card import Tokenizer
from pos.compat import sleep_ms, ticks_ms, unload
from pos.journal import JournalError
from pos.ledger import Ledger
from pos.risk import Risk
from pos.runner import Runner
from pos.terminal import Settings, Terminal
from pos.txq import QueueError, TxQueue

TICK_MS = 250
DEVICE_KEY = "device.key"
# Entry points (main.py, the simulator) hold a block this big from their first line, before
# the app's code is imported, and let it go just before start(): the long-lived buffers
# (queue, journal state, ledger) then find one contiguous region instead of the holes that
# importing code leaves behind.
EARLY_RESERVE_BYTES = 10 * 1024


class App:
    def __init__(self, board):
        self.board = board
        self._shown = bytearray(128)
        self.terminal = None
        self.runner = None
        self.ledger = None

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
            self.ledger = Ledger(TxQueue(board.bdev), board.store, key)
        except (JournalError, QueueError, ValueError) as exc:
            fault = exc
            board.fault("start: %r" % (exc,))
        settings = merchants = cashiers = None
        if fault is None:  # a terminal without its keys cannot sell, whatever its config
            try:
                from pos import config  # unloaded below: parsing is needed only now

                settings, merchants, cashiers = config.load(board.config_folder)
            except ValueError as exc:  # ConfigError, or a value the parser could not take
                fault, title = exc, b"CONFIG ERROR"
                board.fault("config: %s" % (exc,))
            config = None
            unload("pos.config")
        if settings is None:
            settings = Settings()
        tokenizer = Tokenizer(settings.card_token_key) if fault is None else None
        self.terminal = Terminal(
            settings, merchants, cashiers, self.ledger, tokenizer, Risk(), fault, title
        )
        upload = getattr(board, "upload", None)
        self.runner = Runner(
            self.terminal, self.ledger, board.print_lines, board.beep, upload, board.fault
        )
        gc.collect()
        self.feed(("tick", ticks_ms(), board.unix_time()))

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
            gc.collect()  # between events, so a sale never waits for a collection

    async def main(self):
        clock = asyncio.create_task(self.clock())
        await self.events()
        clock.cancel()


def run(board):
    app = App(board)
    app.start()
    asyncio.run(app.main())
    return app
