"""Who may use the terminal: PIN lockout, unassigned merchants, and a bad config that stops
all selling."""

from expect import raises
from pos.config import ConfigError, parse_merchants
from pos.terminal import Settings, Terminal
from termkit import Kit


def test_wrong_pins_lock_login_for_a_doubling_period():
    kit = Kit(lockout_base_s=30)
    for _ in range(2):
        kit.keys("5 5 5 5 #")
    assert kit.shows("Wrong PIN 1 left")
    rows = kit.keys("5 5 5 5 #")
    assert rows[2] == "Login locked"
    assert rows[3] == "Wait         30s"
    kit.login()  # ignored while locked, even the right PIN
    assert kit.shows("Login locked")
    kit.tick(30_000)
    assert kit.shows("Cashier PIN")
    for _ in range(3):
        kit.keys("5 5 5 5 #")
    assert kit.rows()[3] == "Wait         60s"
    kit.tick(60_000)
    kit.login()
    assert kit.rows()[0].startswith("Merchant?")


def test_cashier_sees_and_opens_only_assigned_merchants():
    kit = Kit()
    rows = kit.login("2222")
    assert rows[1] == "1 Noodle Bar"
    assert rows[2] == ""
    rows = kit.keys("2 #")
    assert rows[6] == "Not assigned"
    assert rows[0].startswith("Merchant?")
    rows = kit.keys("9 #")
    assert rows[6] == "No merchant 9"


def test_malformed_config_refuses_to_sell():
    exc = raises(ConfigError, parse_merchants, {"merchants": [{"number": 1}]})
    terminal = Terminal(Settings(), None, None, None, None, None, exc)
    rows = terminal.screen.text()
    assert rows[1] == "CONFIG ERROR"
    assert rows[2] == "Not selling."
    assert "merchant_id" in "".join(rows[3:7])
    for key in "1 1 1 1 # 2 # 5 # 4 #".split():
        screen, effects = terminal.handle(("key", key))
        assert effects == []
    assert screen.row(1) == "CONFIG ERROR"
