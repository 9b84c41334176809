"""The ESP32 board: hands pos.app the txq and statelog partitions, the /state store, the
keypad, the display, the printer, the buzzer, the clock and the watchdog. It implements the
board contract (lib/pos/board_contract.pyi; main.py declares it so and the type check holds it
to it), and makes every Pin, bus, UART and PWM the drivers take from lib/board/pins.py."""

import time

import esp32
import machine
from machine import I2C, PWM, RTC, UART, WDT, Pin
from micropython import const

from board import pins
from board.buzzer import Buzzer
from board.keypad import SCAN_MS, Keypad
from board.printer import Printer
from pos.compat import sleep_ms, spawn
from pos.store import FileStore

# The ESP32's time module counts from 2000-01-01; records count from 1970.
_EPOCH_2000 = const(946684800)
_CLOCK_SET_YEAR = const(2024)  # an RTC before this year has not been set
FAULT_LOG = "/state/faults.log"
_FAULT_LOG_BYTES = const(8192)
WATCHDOG_MS = const(8000)


def reset_word():
    """machine.reset_cause() as one word for the heartbeat. On the ESP32 "soft" is also a
    restart by machine.reset() after a crash (see the fault log) and a panic; "power"
    includes a brown-out."""
    cause = machine.reset_cause()
    for value, word in (
        (machine.PWRON_RESET, "power"),
        (machine.WDT_RESET, "watchdog"),
        (machine.SOFT_RESET, "soft"),
        (machine.HARD_RESET, "hard"),
        (machine.DEEPSLEEP_RESET, "deepsleep"),
    ):
        if cause == value:
            return word
    return "-"


def find_partition(label):
    found = esp32.Partition.find(esp32.Partition.TYPE_DATA, label=label)
    if not found:
        raise OSError("no %s partition: flash the OneTill partition table (tools/flash)" % label)
    return found[0]


def make_display(i2c, lcd):
    """The 20x4 LCD when fitted, else the 128x64 OLED."""
    from board.displays import Lcd2004, Oled

    return Lcd2004(i2c) if lcd else Oled(i2c)


def make_parts(lcd=False):
    """(keypad, display, printer, buzzer) of the reference board, each driver given the Pin,
    bus, UART or PWM it drives, made from lib/board/pins.py (also used by the device smoke
    test, tools/emu/smoke.py, which must not start the watchdog a board would)."""
    i2c = I2C(pins.I2C_ID, sda=Pin(pins.I2C_SDA), scl=Pin(pins.I2C_SCL), freq=pins.I2C_FREQ_HZ)
    uart = UART(
        pins.PRINTER_UART_ID,
        baudrate=pins.PRINTER_BAUD,
        tx=pins.PRINTER_TX,
        rx=pins.PRINTER_RX,
        timeout=pins.PRINTER_TIMEOUT_MS,
    )
    return (
        Keypad(*pins.keypad_pins()),
        make_display(i2c, lcd),
        Printer(uart),
        Buzzer(PWM(Pin(pins.BUZZER), freq=pins.BUZZER_HZ, duty_u16=0)),
    )


class Esp32Board:
    def __init__(self, lcd=False):
        self.keypad, self.display, self.printer, self.buzzer = make_parts(lcd)
        self.bdev = find_partition("txq")
        self.statelog = find_partition("statelog")
        self.store = FileStore("/state")
        self.blacklist_path = "/state/blacklist"
        self.fault_log_path = FAULT_LOG
        self.config_folder = "/config"
        self.reset_cause = reset_word()
        self._rtc = RTC()
        self._watchdog = WDT(timeout=WATCHDOG_MS)
        self.uplink = None
        self.wifi = None

    def connect(self, queue):
        """The uplink, from /config/uplink.json ({"host", "port", "tid"}) and the back
        end's CA in /config/ca.der; none (an offline terminal) when they are absent."""
        import json

        try:
            with open("/config/uplink.json") as source:
                doc = json.load(source)
            with open("/config/ca.der", "rb") as source:
                ca_der = source.read()
        except (OSError, ValueError):
            return
        from pos.uplink import Uplink, tls_context

        self.uplink = Uplink(queue, doc["host"], doc["port"], doc["tid"], tls_context(ca_der))

    def start(self, app):
        """Board tasks beside the app's: Wi-Fi, whose link changes go to the terminal."""
        from board.wifi import Wifi, load_networks

        networks = load_networks()
        if networks:
            self.wifi = Wifi(networks)
            spawn(self.wifi.run(lambda up: self._link(app, up)))

    def restart(self):
        machine.reset()  # boot.py then runs the update's boot code (pos.install)

    def rssi(self):
        """The Wi-Fi signal in dBm, 0 without Wi-Fi (no wifi.json) or while not joined."""
        return self.wifi.rssi() if self.wifi is not None else 0

    def _link(self, app, up):
        if up and not self.unix_time():
            self._ask_ntp(app)
        app.feed(("link", up))

    def _ask_ntp(self, app):
        """NTP's time when the link comes up and the clock is not set, offered to the app,
        which decides (pos.app.App.set_clock: NTP is not authenticated, so it may set only
        an unset clock, never before the newest sale); the back end's time sets it too."""
        import ntptime

        try:
            unix = ntptime.time() + _EPOCH_2000  # the port's epoch (2000) to Unix seconds
        except OSError as exc:
            log_fault("ntp: %r" % (exc,))
            return
        app.set_clock(unix, False)

    def set_time(self, unix):
        """Set the RTC (Unix seconds, UTC) as the app decided (pos.app.App.set_clock)."""
        year, month, day, hour, minute, second, weekday, _ = time.gmtime(unix - _EPOCH_2000)
        self._rtc.datetime((year, month, day, weekday, hour, minute, second, 0))

    async def next_event(self):
        keypad = self.keypad
        while True:
            keypad.scan()
            key = keypad.pop()
            if key is not None:
                return ("key", key)
            await sleep_ms(SCAN_MS)

    def show(self, screen):
        self.display.show(screen)

    def print_lines(self, lines):
        self.printer.print_lines(lines)

    def beep(self, kind):
        self.buzzer.beep(kind)

    def fault(self, text):
        log_fault(text)

    def unix_time(self):
        if self._rtc.datetime()[0] < _CLOCK_SET_YEAR:
            return 0
        return time.time() + _EPOCH_2000

    def feed_watchdog(self):
        self._watchdog.feed()


def log_fault(text):
    """Append a line to the fault log, keeping it bounded (the older half is dropped)."""
    import os

    try:
        if os.stat(FAULT_LOG)[6] > _FAULT_LOG_BYTES:
            with open(FAULT_LOG, "rb") as old:
                old.seek(_FAULT_LOG_BYTES // 2)
                kept = old.read()
            with open(FAULT_LOG, "wb") as new:
                new.write(kept)
    except OSError:
        pass
    with open(FAULT_LOG, "a") as log:
        log.write("%d %s\n" % (time.time(), text))


TYPE_CHECKING = False
if TYPE_CHECKING:  # Esp32Board declared against the board contract; nothing at run time
    from pos.board_contract import Board

    def _implements_the_contract(board: Esp32Board) -> Board:
        return board
