"""Loads the terminal's configuration from /config: terminal.json, merchants.json and
cashiers.json. Any fault raises ConfigError naming the file and field; the terminal then
shows it and refuses to sell rather than guess.

terminal.json: {"terminal_id": "T0001", "idle_logout_s": 300, "result_timeout_s": 20,
                "lockout_base_s": 30, "receipt_columns": 32, "utc_offset_min": 60,
                "menu_rows": 5, "card_token_key": "<32 hex digits>"}
"""

import json
from binascii import unhexlify

from pos.cashiers import parse_cashiers
from pos.merchants import ConfigError, parse_merchants

# (name, default, lowest, highest) of each whole-number setting.
_NUMBERS = (
    ("idle_logout_s", 300, 10, 86400),
    ("result_timeout_s", 20, 3, 600),
    ("lockout_base_s", 30, 1, 3600),
    ("receipt_columns", 32, 32, 48),
    ("utc_offset_min", 0, -720, 840),
    ("menu_rows", 5, 2, 5),
)


class Settings:
    """Terminal-wide settings; the defaults are what a demo terminal uses."""

    def __init__(self, terminal_id="T0001", card_token_key=bytes(16), **numbers):
        self.terminal_id = terminal_id
        self.card_token_key = card_token_key
        for name, default, _, _ in _NUMBERS:
            setattr(self, name, numbers.get(name, default))


def parse_settings(doc, source="terminal.json"):
    if not isinstance(doc, dict):
        raise ConfigError(source + ": not an object")
    terminal_id = doc.get("terminal_id")
    if not isinstance(terminal_id, str) or not 1 <= len(terminal_id) <= 16:
        raise ConfigError(source + ": terminal_id must be 1 to 16 characters")
    numbers = {}
    for name, default, low, high in _NUMBERS:
        value = doc.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ConfigError(
                "%s: %s must be a whole number from %d to %d" % (source, name, low, high)
            )
        numbers[name] = value
    if numbers["receipt_columns"] not in (32, 48):
        raise ConfigError(source + ": receipt_columns must be 32 or 48")
    key = doc.get("card_token_key")
    try:
        key = unhexlify(key) if isinstance(key, str) else None
    except ValueError:
        key = None
    if key is None or len(key) != 16:
        raise ConfigError(source + ": card_token_key must be 32 hex digits")
    return Settings(terminal_id, key, **numbers)


def _read_json(folder, name):
    try:
        with open(folder + "/" + name) as source:
            return json.load(source)
    except OSError:
        raise ConfigError(name + ": missing") from None
    except ValueError:
        raise ConfigError(name + ": not valid JSON") from None


def load(folder):
    """(settings, merchants, cashiers) from a config folder, or ConfigError."""
    settings = parse_settings(_read_json(folder, "terminal.json"))
    merchants = parse_merchants(_read_json(folder, "merchants.json"))
    cashiers = parse_cashiers(_read_json(folder, "cashiers.json"), merchants)
    return settings, merchants, cashiers
