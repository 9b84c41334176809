"""What the downlink brought and the app has yet to use: a pushed config to swap in and
commands to run, at an idle moment. Small on purpose: pos.app loads it for those moments
only (pos.downlink, which fetches, is larger and not needed then)."""

import struct

from pos.compat import const

_LOGIN = const(1)  # pos.terminal's states (not imported: the terminal is loaded already)
_MERCHANTS = const(2)


class Received:
    """What the downlink brought that the app has yet to use, and what it refused."""

    def __init__(self):
        # (merchants, cashiers, auto_block or None) installed, for the next idle moment
        self.config = None
        self.commands = []  # [(id, name)] fetched, run in order at idle moments
        self.keys = False  # a key rotation staged (pos.keyrot), installed at an idle moment
        self.upload_faults = False
        self.clock_command = False  # the back end's next time is taken whatever its offset
        self.refused = [0, 0, 0, 0]  # the config, blacklist, command, key versions refused
        self.refused_text = ""
        self.update = 0  # a release staged and checked (pos.update), installed when idle

    def waiting(self, terminal):
        """Something to do, and the terminal idle: no cashier logged in, or the merchant
        menu between sales (never mid-sale, never a terminal that cannot sell)."""
        if self.update and terminal.state == _LOGIN:
            return True  # nobody logged in: the restart into it interrupts no one
        if self.config is None and not self.commands and not self.keys:
            return False
        return terminal.config_error is None and (
            terminal.state == _LOGIN
            or (terminal.state == _MERCHANTS and not terminal.entry.length)
        )


def at_idle(app):
    """Swap in a pushed config and run queued commands (the terminal is idle)."""
    received = app.received
    if received.keys:
        received.keys = False
        from pos import keyrot
        from pos.compat import unload

        keyrot.install(app)
        keyrot = None
        unload("pos.keyrot")
        unload("pos.keywrap")
    if received.update and app.terminal.state == _LOGIN and not app.ledger.unsent_count():
        from pos import update  # the terminal restarts: nothing to unload

        update.install_now(app)
        return
    if received.config is not None:
        _swap_config(app)
    while received.commands and received.waiting(app.terminal):
        number, name = received.commands.pop(0)
        # Taken before it runs: a command runs at most once, even across a power cut (the
        # back end sees the id in the heartbeat and can queue it again).
        app.board.store.write("command.id", struct.pack(">I", number))
        app.command_done = number
        if name == "settle":
            _settle(app)
        elif name == "faultlog":
            received.upload_faults = True
        elif name == "clock":
            # The operator's word: the back end's time, the next one to come (the last is
            # stale by now), is taken however far it moves the clock (App.set_clock), once.
            received.clock_command = True
            app.board.uplink.server_time = 0
            app.wake_uplink()
            app.board.fault("command %d: the clock takes the back end's next time" % number)
        else:
            app.board.fault("command %d: unknown command %s" % (number, name))


def _swap_config(app):
    terminal = app.terminal
    merchants, cashiers, auto_block = app.received.config
    app.received.config = None
    terminal.merchants, terminal.cashiers = merchants, cashiers
    if auto_block is not None:
        settings = terminal.settings
        settings.auto_block_declines, settings.auto_block_window_min = auto_block
    cashier = terminal.cashier
    if cashier is not None:  # logged in: the same cashier and PIN stay, with the new rights
        same = None
        for candidate in cashiers:
            if candidate.number == cashier.number and candidate.pin_hash == cashier.pin_hash:
                same = candidate
        if same is None:
            terminal.logout(b"Config updated")
        else:
            terminal.cashier = same
            terminal.allowed = [m for m in merchants if same.may_use(m.number)]
            terminal.page = 0
    terminal.draw()
    app.board.fault("config %d in force" % app.config_version)


def _settle(app):
    """The back end's settle command: a Z for every merchant with sales or refunds since its
    last one, booked as the supervisor's Z is, with cashier 0 (the back end)."""
    from pos.record import REFUND, SALE

    terminal = app.terminal
    ledger = app.ledger
    totals = ledger.totals
    settled = 0
    for merchant in terminal.merchants:
        number = merchant.number
        if not totals.sum(number, SALE)[0] and not totals.sum(number, REFUND)[0]:
            continue
        record = totals.settlement(
            number,
            merchant.currency_numeric,
            cashier=0,
            time=terminal.now(),
            flags=terminal.flags(),
        )
        try:
            ledger.book(record)
        except Exception as exc:  # a full queue: the rest wait for the next settle
            app.board.fault("settle: merchant %d not settled: %r" % (number, exc))
            return
        settled += 1
    app.board.fault("settle: %d merchants settled" % settled)
    app.request_sync()
