"""Esp32Board on CPython, with the ESP32's own modules (machine, esp32, ssd1306) faked at
the module edge: the members the board contract gained behave (the fault log the back end's
faultlog command reads, the reset cause as a word, the Wi-Fi signal forwarded), and the
parts are built from pins.py and handed to the drivers."""

import sys
import types

import pytest

from boardkit import import_driver

# machine.reset_cause() values of the ESP32 port.
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5


class Made:
    """A machine or esp32 object: keeps how it was made, does what drivers ask quietly."""

    log = []

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs
        Made.log.append((type(self).__name__, args, kwargs))

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def fake_modules(monkeypatch, cause):
    Made.log = []
    machine = types.ModuleType("machine")
    for name in ("I2C", "PWM", "RTC", "UART", "WDT"):
        setattr(machine, name, type(name, (Made,), {}))
    machine.Pin = type("Pin", (Made,), {"OUT": 1, "IN": 0, "PULL_UP": 2})
    machine.PWRON_RESET, machine.HARD_RESET, machine.WDT_RESET = PWRON_RESET, HARD_RESET, WDT_RESET
    machine.DEEPSLEEP_RESET, machine.SOFT_RESET = DEEPSLEEP_RESET, SOFT_RESET
    machine.reset_cause = lambda: cause
    esp32 = types.ModuleType("esp32")
    esp32.Partition = type(
        "Partition", (), {"TYPE_DATA": 1, "find": staticmethod(lambda *a, **k: ["txq"])}
    )
    ssd1306 = types.ModuleType("ssd1306")
    ssd1306.SSD1306_I2C = type("SSD1306_I2C", (Made,), {})
    for name, module in (("machine", machine), ("esp32", esp32), ("ssd1306", ssd1306)):
        monkeypatch.setitem(sys.modules, name, module)
    for name in ("board.pins", "board.keypad", "board.printer", "board.buzzer", "board.displays"):
        monkeypatch.delitem(sys.modules, name, raising=False)


@pytest.fixture()
def make_board(monkeypatch, tmp_path):
    def make(cause=PWRON_RESET):
        fake_modules(monkeypatch, cause)
        esp32board = import_driver(monkeypatch, "esp32board")
        # /state and its fault log in a folder of the test's own.
        monkeypatch.setattr(esp32board, "FileStore", lambda folder: folder)
        monkeypatch.setattr(esp32board, "FAULT_LOG", str(tmp_path / "faults.log"))
        return esp32board, esp32board.Esp32Board()

    return make


def test_the_faultlog_command_gets_the_log_the_board_writes(make_board):
    esp32board, board = make_board()
    assert board.fault_log_path == esp32board.FAULT_LOG
    board.fault("crash: OSError(5)")
    from pos.downlink import _fault_tail

    tail = _fault_tail(board)
    assert tail.endswith(b" crash: OSError(5)\n"), tail


@pytest.mark.parametrize(
    "cause, word",
    [
        (PWRON_RESET, "power"),
        (WDT_RESET, "watchdog"),
        (SOFT_RESET, "soft"),
        (HARD_RESET, "hard"),
        (DEEPSLEEP_RESET, "deepsleep"),
        (0, "-"),
    ],
)
def test_the_reset_cause_is_one_word(make_board, cause, word):
    _, board = make_board(cause)
    assert board.reset_cause == word


def test_the_wifi_signal_is_forwarded(make_board):
    _, board = make_board()
    assert board.rssi() == 0  # no Wi-Fi (no wifi.json): no signal
    board.wifi = types.SimpleNamespace(rssi=lambda: -58)
    assert board.rssi() == -58


def test_the_parts_are_made_from_the_pin_map(make_board):
    _, board = make_board()
    from board import pins

    made = {(kind, args[0] if args else None): kwargs for kind, args, kwargs in Made.log}
    assert made[("UART", pins.PRINTER_UART_ID)] == {
        "baudrate": 9600,
        "tx": 17,
        "rx": 16,
        "timeout": pins.PRINTER_TIMEOUT_MS,
    }
    assert board.printer.uart.args == (pins.PRINTER_UART_ID,)
    rows = [args[0] for kind, args, kwargs in Made.log if kind == "Pin" and args[1:] == (1,)]
    cols = [args[0] for kind, args, kwargs in Made.log if kind == "Pin" and args[1:] == (0, 2)]
    assert rows == [13, 12, 14, 27] and cols == [26, 25, 33, 32]
    pwm = [entry for entry in Made.log if entry[0] == "PWM"]
    assert len(pwm) == 1 and pwm[0][2] == {"freq": 2700, "duty_u16": 0}
    assert pwm[0][1][0].args == (pins.BUZZER,)


def test_ntp_only_offers_its_time_to_the_app_which_decides(make_board, monkeypatch):
    esp32board, board = make_board()
    ntptime = types.ModuleType("ntptime")
    ntptime.time = lambda: 1_795_000_000 - 946_684_800  # the port's epoch is 2000
    ntptime.settime = lambda: pytest.fail("NTP set the clock behind the app's back")
    monkeypatch.setitem(sys.modules, "ntptime", ntptime)
    offered = []
    app = types.SimpleNamespace(set_clock=lambda *a: offered.append(a), feed=lambda event: None)
    board.unix_time = lambda: 0  # a clock not set: NTP is asked
    board._link(app, True)
    board.unix_time = lambda: 1_795_000_000  # a set clock: not asked
    board._link(app, True)
    assert offered == [(1_795_000_000, False)]
