"""The back end's refusals: each message says why, in one line."""


class IngestError(Exception):
    """A request that is refused whole (unknown terminal, too large); the message says why."""


class DownlinkError(Exception):
    """A config, blacklist entry or command the back end refuses; the message says why."""


class LedgerError(Exception):
    """A ledger that cannot be opened as asked (no such file, not a ledger) or read, or a
    report of a merchant it does not have; the message says why, in one line."""


class RegistrationError(ValueError):
    """A terminal ID registered already with another IK ID (and no --replace)."""


class CommandError(Exception):
    """A user's mistake on the command line; the message says what, in one line."""
