"""Carries out the terminal's effects: books records in the ledger, prints, beeps, and asks
for uploads, feeding each outcome back to the terminal as an event.

The device's app and the tests drive the terminal through the same Runner, so what a
test sees is what a cashier sees.

An ignored input (a key, card read or scan after which the screen is unchanged and nothing
else happened: Backspace on an empty field, a tenth amount digit, a card off the card
screen) beeps "error", as a terminal does, so the cashier knows the key was not lost.
"""

from pos.compat import unload
from pos.reports import TotalsFull
from pos.txq import QueueError, QueueFull


def failure_text(exc):
    """A short reason for the RESULT screen (16 columns)."""
    if isinstance(exc, QueueFull):
        return "Queue full"
    if isinstance(exc, TotalsFull):
        return "Run Z first"
    if isinstance(exc, QueueError):
        return "Storage fault"
    return "Not stored"


class Runner:
    def __init__(self, terminal, ledger, printer=None, beeper=None, uploader=None, faults=None):
        self.terminal = terminal
        self.ledger = ledger
        self.printer = printer  # callable(lines)
        self.beeper = beeper  # callable("ok" | "error")
        self.uploader = uploader  # callable(): start an upload; its result comes as "synced"
        self.faults = faults  # callable(text): the fault log
        # The screen as it was last given out (made once, no heap per event): the display
        # is updated only when it changed, and an input that left it unchanged was ignored.
        self.shown = bytearray(len(terminal.screen.buf))
        self.changed = False  # by the last feed(): the display needs the screen again

    def feed(self, event):
        """Give the terminal one event and carry out everything that follows from it."""
        terminal = self.terminal
        terminal.handle(event)
        effects = terminal.effects
        kind = event[0]
        if (
            not effects
            and (kind == "key" or kind == "card" or kind == "scan")
            and terminal.screen.buf == self.shown
        ):
            self.changed = False
            if self.beeper is not None:
                self.beeper("error")
            return terminal.screen
        index = 0
        while index < len(effects):
            effect = effects[index]
            index += 1
            kind = effect[0]
            if kind == "book":
                record = effect[1]
                try:
                    follow = ("booked", self.ledger.book(record))
                except (QueueError, TotalsFull, ValueError, OSError) as exc:
                    if self.faults is not None:
                        self.faults("book failed: %r" % (exc,))
                    follow = ("unbooked", failure_text(exc))
                else:
                    # A decline (4) of the fraud kind counts towards an automatic block
                    # (pos.autoblock): 0x888 has one bit per pos.risk reason code,
                    # CARD_BLOCKED (3), TOO_MANY_USES (7), UNUSUAL_AMOUNT (11). Numbers, not
                    # names: each imported name would be heap on the sale path.
                    if (
                        record.kind == 4
                        and 0x888 >> record.reason & 1
                        and terminal.settings.auto_block_declines
                    ):
                        # Its code is loaded for this moment only (no heap on the sale path).
                        try:
                            from pos import autoblock

                            autoblock.after_decline(self, record)
                        except MemoryError:  # the decline stands; it is not counted
                            pass
                        autoblock = None
                        unload("autoblock")
                # The terminal emits "book" last: its outcome starts a fresh effect list.
                terminal.handle(follow)
                effects = terminal.effects
                index = 0
            elif kind == "print":
                if self.printer is not None:
                    self.printer(effect[1])
            elif kind == "beep":
                if self.beeper is not None:
                    self.beeper(effect[1])
            elif kind == "upload":
                if self.uploader is not None:
                    self.uploader()
        buf = terminal.screen.buf
        self.changed = buf != self.shown
        if self.changed:
            self.shown[:] = buf
        return terminal.screen
