"""The board contract: everything pos.app (and pos.downlink, pos.received) use of a board.

A stub the type checker reads (`tools/test types`), never loaded on a device: it costs no
heap, where a base class with defaults in the core would cost about 200 bytes resident and,
worse, would answer for a board that forgot a member (a missing fault_log_path or rssi
read as "none" is how the ESP32 board lost them). Every board states every member:
lib/board/esp32board.py's Esp32Board, tools/emu/simboard.py's SimBoard, and the tests'
board at the edge (host_tests/core/appkit.py). main.py's and simboard.py's `App(board)`
check their board against this Protocol; pos.app reads `self.board` through it.
"""

from collections.abc import Iterable
from typing import Any, Protocol

from pos.app import App
from pos.screen import Screen
from pos.store import FileStore
from pos.uplink import Uplink

class BlockDevice(Protocol):
    """The txq or statelog partition: MicroPython's block-device protocol (esp32.Partition on
    a board)."""

    def readblocks(self, block: int, buf: Any, offset: int = ...) -> Any: ...
    def writeblocks(self, block: int, buf: Any, offset: int = ...) -> Any: ...
    def ioctl(self, op: int, arg: int) -> Any: ...

class Board(Protocol):
    # Read-only members (properties here): a board may keep a plain attribute of a narrower
    # type, such as a str where str | None is allowed.
    @property
    def bdev(self) -> BlockDevice:
        """The txq partition (pos.txq)."""
    @property
    def statelog(self) -> BlockDevice:
        """The statelog partition (pos.statelog): DUKPT registers and the ledger's log."""
    @property
    def store(self) -> FileStore:
        """/state: device key, downlink key, command id."""
    @property
    def config_folder(self) -> str:
        """Where terminal.json, merchants.json, cashiers.json (and pushed.json) live."""
    @property
    def blacklist_path(self) -> str | None:
        """The card blacklist file (pos.blacklist); None: no blacklist, nothing blocked."""
    @property
    def fault_log_path(self) -> str | None:
        """The fault log fault() appends to, sent when the back end asks (faultlog); None: none
        kept."""
    @property
    def uplink(self) -> Uplink | None:
        """The link to the back end; None for a terminal without one."""
    @property
    def reset_cause(self) -> str:
        """Why the board last started, one short word for the heartbeat (power, watchdog,
        soft, hard, deepsleep), "-" when the board cannot tell."""

    async def next_event(self) -> tuple[Any, ...] | None:
        """The next event for the terminal (key, card, scan, link), or None when input has
        ended."""
    def show(self, screen: Screen) -> None: ...
    def print_lines(self, lines: Iterable[str]) -> None:
        """Print one slip. lines is an iterable, taken once and whole before this returns:
        the core makes each line as it is taken (a generator, so a slip is never whole in
        the heap) from a record it reuses for the next sale, so a line taken later could be
        another sale's. An error while a line is made goes up from here."""
    def beep(self, kind: str) -> None: ...
    def fault(self, text: str) -> None:
        """Log a fault line (to fault_log_path when the board keeps one)."""
    def unix_time(self) -> int:
        """Seconds since 1970 UTC, or 0 while the clock is not set."""
    def set_time(self, unix: int) -> None:
        """Set the clock as the app decided (pos.app.App.set_clock: the only caller, also
        for the board's own NTP answer); a board whose clock is right ignores it."""
    def feed_watchdog(self) -> None: ...
    def start(self, app: App) -> None:
        """Start the board's own tasks (Wi-Fi), with pos.compat.spawn: called by the app's
        main task, under pos.compat.run."""
    def restart(self) -> None:
        """Restart the terminal (an update installs at the start: pos.install). On the ESP32
        it does not return (machine.reset()); the simulator raises SystemExit."""
    def rssi(self) -> int:
        """The Wi-Fi signal in dBm for the heartbeat, 0 without a radio link."""
