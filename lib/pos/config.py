"""Reads /config: terminal.json, merchants.json and cashiers.json, into the runtime objects.

Only needed at start: the app unloads this module after load() (pos.compat.unload), so its
checks and messages take no heap while the terminal sells. Any fault raises ConfigError
naming the file, the entry and the field: the terminal shows it and refuses to sell rather
than guess which merchant a sale belongs to.

terminal.json  {"terminal_id": "T0001", "idle_logout_s": 300, "result_timeout_s": 20,
                "lockout_base_s": 30, "receipt_columns": 32, "utc_offset_min": 60,
                "menu_rows": 5, "velocity_max_uses": 3, "velocity_window_min": 10,
                "four_eyes": true, "auto_block_declines": 3, "auto_block_window_min": 60,
                "card_token_key": "<32 hex digits>"}
merchants.json {"version": 4, "merchants": [{"number": 1, "merchant_id": "100000000000001",
                "name": "Noodle Bar", "currency": "EUR", "limits": {"max_sale_minor": 50000,
                "max_day_count": 500, "anomaly_factor": 5}}]}  (every limit: pos.merchants)
cashiers.json  {"version": 4, "pin_salt": "<hex, 8+ bytes>", "pin_rounds": 2000,
                "cashiers": [{"number": 1, "name": "Ana", "role": "cashier",
                "merchants": [1, 2] or "all", "pin_hash": "<hex of cashiers.hash_pin()>"}]}
"""

import json
from binascii import hexlify, unhexlify

from pos.cashiers import ADMIN, CASHIER, DEFAULT_ROUNDS, SUPERVISOR, Cashier, Cashiers, hash_pin
from pos.merchants import Merchant, Merchants, limit_names
from pos.money import MAX_AMOUNT_MINOR, MoneyError, currency
from pos.terminal import Settings

MAX_MERCHANTS = 99  # menu numbers 1..99: two keys at most
MAX_CASHIERS = 99
MERCHANT_NAME_CHARS = 24
CASHIER_NAME_CHARS = 16
ROLES = {"cashier": CASHIER, "supervisor": SUPERVISOR, "admin": ADMIN}

# The limits a merchant may set are pos.merchants.limit_names() (a missing one is no limit): whole
# numbers from 1 to MAX_AMOUNT_MINOR (minor units, counts, seconds), but max_offline_age_s
# from 60, and anomaly_factor 0 (off) or 2 to 1000. (Code, not a table of tuples: each tuple
# would be an object on the heap while the parser is loaded.)

# Name, default, lowest and highest of each whole-number terminal setting, four by four in
# one tuple (a tuple each would be nine objects on the heap).
# fmt: off
SETTING_NUMBERS = (
    "idle_logout_s", 300, 10, 86400,
    "result_timeout_s", 20, 3, 600,
    "lockout_base_s", 30, 1, 3600,
    "receipt_columns", 32, 32, 48,
    "utc_offset_min", 0, -720, 840,
    "menu_rows", 5, 2, 5,
    "velocity_max_uses", 0, 0, 16,  # card uses allowed in the window; 0: no velocity rule
    "velocity_window_min", 10, 1, 1440,
    "auto_block_declines", 0, 0, 16,  # fraud declines that block a card; 0: no auto-block
    "auto_block_window_min", 60, 1, 1440,
)
# fmt: on


class ConfigError(ValueError):
    """A config file that cannot be used; the message says which file and field."""


def pin_hash_hex(pin, salt, rounds=DEFAULT_ROUNDS):
    """A cashier's "pin_hash" field (for provisioning and tests)."""
    return hexlify(hash_pin(pin, salt, rounds)).decode()


def _int(value, where, field, low, high):
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        message = "%s: %s must be a whole number from %d to %d"
        raise ConfigError(message % (where, field, low, high))
    return value


def _hex(text, what):
    if isinstance(text, str):
        try:
            return unhexlify(text)
        except ValueError:
            pass
    raise ConfigError(what + " must be hex text")


def _digits(text):
    for ch in text:
        if ch < "0" or ch > "9":
            return False
    return True


def _text(value, where, field, longest):
    if not isinstance(value, str) or not value.strip() or len(value) > longest:
        raise ConfigError("%s: %s must be 1 to %d characters" % (where, field, longest))
    return value.strip()


def parse_settings(doc, source="terminal.json"):
    if not isinstance(doc, dict):
        raise ConfigError(source + ": not an object")
    terminal_id = doc.get("terminal_id")
    if not isinstance(terminal_id, str) or not 1 <= len(terminal_id) <= 16:
        raise ConfigError(source + ": terminal_id must be 1 to 16 characters")
    numbers = {}
    for i in range(0, len(SETTING_NUMBERS), 4):
        name, default, low, high = SETTING_NUMBERS[i : i + 4]
        numbers[name] = _int(doc.get(name, default), source, name, low, high)
    if numbers["receipt_columns"] not in (32, 48):
        raise ConfigError(source + ": receipt_columns must be 32 or 48")
    key = _hex(doc.get("card_token_key"), source + ": card_token_key")
    if len(key) != 16:
        raise ConfigError(source + ": card_token_key must be 32 hex digits")
    four_eyes = doc.get("four_eyes", True)
    if four_eyes is not True and four_eyes is not False:
        raise ConfigError(source + ": four_eyes must be true or false")
    return Settings(terminal_id, key, four_eyes=four_eyes, **numbers)


def parse_merchants(doc, source="merchants.json"):
    """The merchant table from a decoded JSON document; ConfigError on any fault."""
    if not isinstance(doc, dict) or not isinstance(doc.get("merchants"), list):
        raise ConfigError(source + ": needs a 'merchants' list")
    version = _int(doc.get("version", 0), source, "version", 0, 0x7FFFFFFF)
    entries = doc["merchants"]
    if not entries:
        raise ConfigError(source + ": no merchants")
    if len(entries) > MAX_MERCHANTS:
        raise ConfigError(source + ": more than %d merchants" % MAX_MERCHANTS)
    merchants = []
    numbers = {}
    ids = {}
    for index, entry in enumerate(entries):
        where = "%s: merchant %d" % (source, index + 1)
        if not isinstance(entry, dict):
            raise ConfigError(where + ": not an object")
        number = _int(entry.get("number"), where, "number", 1, MAX_MERCHANTS)
        where = "%s: merchant %d" % (source, number)
        merchant_id = entry.get("merchant_id")
        if (
            not isinstance(merchant_id, str)
            or not 1 <= len(merchant_id) <= 15
            or not _digits(merchant_id)
        ):
            raise ConfigError(where + ": merchant_id must be 1 to 15 digits")
        name = _text(entry.get("name"), where, "name", MERCHANT_NAME_CHARS)
        code = entry.get("currency")
        try:
            currency(code)
        except MoneyError:
            raise ConfigError(where + ": unknown currency %r" % (code,))  # noqa: B904
        limits = _limits(entry.get("limits", {}), where)
        if number in numbers:
            raise ConfigError(where + ": menu number used twice")
        if merchant_id in ids:
            raise ConfigError(where + ": merchant_id used twice")
        numbers[number] = True
        ids[merchant_id] = True
        merchants.append(Merchant(number, merchant_id, name, code, limits))
    return Merchants(merchants, version)


def _limits(doc, where):
    if not isinstance(doc, dict):
        raise ConfigError(where + ": limits must be an object")
    limits = {}
    for name in limit_names():
        if name in doc:
            if name == "anomaly_factor":
                limits[name] = _int(doc[name], where, name, 0, 1000)
                if limits[name] == 1:
                    raise ConfigError(where + ": anomaly_factor must be 0 (off) or at least 2")
            else:
                low = 60 if name == "max_offline_age_s" else 1
                limits[name] = _int(doc[name], where, name, low, MAX_AMOUNT_MINOR)
    for name in doc:
        if name not in limits:
            raise ConfigError(where + ": unknown limit " + str(name))
    return limits


def parse_cashiers(doc, merchants, source="cashiers.json"):
    if not isinstance(doc, dict) or not isinstance(doc.get("cashiers"), list):
        raise ConfigError(source + ": needs a 'cashiers' list")
    version = _int(doc.get("version", 0), source, "version", 0, 0x7FFFFFFF)
    salt = _hex(doc.get("pin_salt"), source + ": pin_salt")
    if len(salt) < 8:
        raise ConfigError(source + ": pin_salt must be at least 8 bytes of hex")
    rounds = _int(doc.get("pin_rounds", DEFAULT_ROUNDS), source, "pin_rounds", 1, 100000)
    entries = doc["cashiers"]
    if not entries:
        raise ConfigError(source + ": no cashiers")
    if len(entries) > MAX_CASHIERS:
        raise ConfigError(source + ": more than %d cashiers" % MAX_CASHIERS)
    cashiers = []
    numbers = {}
    hashes = {}
    for index, entry in enumerate(entries):
        where = "%s: cashier %d" % (source, index + 1)
        if not isinstance(entry, dict):
            raise ConfigError(where + ": not an object")
        number = _int(entry.get("number"), where, "number", 1, 255)
        if number in numbers:
            raise ConfigError(where + ": number used twice")
        numbers[number] = True
        name = _text(entry.get("name"), where, "name", CASHIER_NAME_CHARS)
        role = ROLES.get(entry.get("role"))
        if role is None:
            raise ConfigError(where + ": role must be cashier, supervisor or admin")
        allowed = entry.get("merchants")
        if allowed == "all":
            allowed = None
        elif isinstance(allowed, list) and allowed:
            for merchant_number in allowed:
                # A menu number is a whole number: true and 1.0 equal 1 in Python and would
                # otherwise pass for merchant 1 (a JSON slip granting a merchant).
                if (
                    not isinstance(merchant_number, int)
                    or isinstance(merchant_number, bool)
                    or merchants.get(merchant_number) is None
                ):
                    raise ConfigError(where + ": no merchant %r" % (merchant_number,))
            allowed = tuple(allowed)
        else:
            raise ConfigError(where + ': merchants must be a list of numbers or "all"')
        pin_hash = _hex(entry.get("pin_hash"), where + ": pin_hash")
        if len(pin_hash) != 32:
            raise ConfigError(where + ": pin_hash must be 32 bytes of hex")
        if pin_hash in hashes:
            raise ConfigError(where + ": same PIN as cashier %d" % hashes[pin_hash])
        hashes[pin_hash] = number
        cashiers.append(Cashier(number, name, role, allowed, pin_hash))
    return Cashiers(cashiers, salt, rounds, version)


def _read_json(folder, name):
    try:
        with open(folder + "/" + name) as source:
            return json.load(source)
    except OSError:
        raise ConfigError(name + ": missing")  # noqa: B904
    except ValueError:
        raise ConfigError(name + ": not valid JSON")  # noqa: B904


def load(folder):
    """(settings, merchants, cashiers) from a config folder, or ConfigError."""
    settings = parse_settings(_read_json(folder, "terminal.json"))
    merchants = parse_merchants(_read_json(folder, "merchants.json"))
    cashiers = parse_cashiers(_read_json(folder, "cashiers.json"), merchants)
    return settings, merchants, cashiers


def parse_pushed(doc, source="pushed.json"):
    """(version, merchants, cashiers, auto_block) of a config the back end pushed
    (pos.downlink): {"version": N, "merchants": <merchants.json>, "cashiers":
    <cashiers.json>} and optionally "auto_block_declines" and "auto_block_window_min",
    which override terminal.json's (auto_block: (declines, window_min), or None)."""
    if not isinstance(doc, dict):
        raise ConfigError(source + ": not an object")
    version = _int(doc.get("version"), source, "version", 1, 0x7FFFFFFF)
    merchants = parse_merchants(doc.get("merchants"), source + ": merchants")
    # The auto-block settings are SETTING_NUMBERS' last two (no literals of their own: the
    # parser's load at start is near the 96 KiB heap's edge).
    auto_block = None
    first = len(SETTING_NUMBERS) - 8
    if SETTING_NUMBERS[first] in doc or SETTING_NUMBERS[first + 4] in doc:
        auto_block = []
        for i in range(first, first + 8, 4):
            name, default, low, high = SETTING_NUMBERS[i : i + 4]
            auto_block.append(_int(doc.get(name, default), source, name, low, high))
        auto_block = tuple(auto_block)
    return (
        version,
        merchants,
        parse_cashiers(doc.get("cashiers"), merchants, source + ": cashiers"),
        auto_block,
    )


def load_pushed(folder):
    """The pushed config in a folder as parse_pushed gives it, or None when there is none."""
    try:
        open(folder + "/pushed.json").close()
    except OSError:
        return None
    return parse_pushed(_read_json(folder, "pushed.json"))
