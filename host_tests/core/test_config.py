"""pos.config: terminal.json settings (defaults and ranges) and load() of a /config folder."""

import json
import os

from expect import raises, scratch
from pos.config import ConfigError, load, parse_pushed, parse_settings, pin_hash_hex

KEY_HEX = "000102030405060708090a0b0c0d0e0f"
SALT = b"test-salt-01"
SALT_HEX = "746573742d73616c742d3031"


def _settings_doc(**fields):
    doc = {"terminal_id": "T0001", "card_token_key": KEY_HEX}
    for name in fields:
        doc[name] = fields[name]
    return doc


def _refused(doc, *words):
    exc = raises(ConfigError, parse_settings, doc)
    message = str(exc)
    assert message.startswith("terminal.json: "), message
    for word in words:
        assert word in message, message
    return message


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# --- parse_settings ----------------------------------------------------------------------------


def test_settings_defaults():
    settings = parse_settings(_settings_doc())
    assert settings.terminal_id == "T0001"
    assert bytes(settings.card_token_key) == bytes(range(16))
    assert settings.idle_logout_s == 300
    assert settings.result_timeout_s == 20
    assert settings.lockout_base_s == 30
    assert settings.receipt_columns == 32
    assert settings.utc_offset_min == 0
    assert settings.menu_rows == 5
    assert settings.four_eyes is True


def test_auto_block_is_off_unless_set_and_a_pushed_config_may_set_it():
    settings = parse_settings(_settings_doc())
    assert settings.auto_block_declines == 0 and settings.auto_block_window_min == 60
    settings = parse_settings(_settings_doc(auto_block_declines=3, auto_block_window_min=10))
    assert settings.auto_block_declines == 3 and settings.auto_block_window_min == 10
    merchants = {
        "merchants": [{"number": 1, "merchant_id": "1", "name": "Soup", "currency": "EUR"}]
    }
    cashiers = {
        "pin_salt": SALT_HEX,
        "cashiers": [
            {
                "number": 1,
                "name": "Ana",
                "role": "cashier",
                "merchants": "all",
                "pin_hash": pin_hash_hex("1111", SALT, 10),
            }
        ],
    }
    doc = {"version": 2, "merchants": merchants, "cashiers": cashiers}
    assert parse_pushed(doc)[3] is None  # not pushed: terminal.json's rule stays
    doc["auto_block_declines"] = 2
    assert parse_pushed(doc)[3] == (2, 60)
    doc["auto_block_window_min"] = 0
    assert "auto_block_window_min" in str(raises(ConfigError, parse_pushed, doc))


def test_four_eyes_is_true_or_false():
    assert parse_settings(_settings_doc(four_eyes=False)).four_eyes is False
    for value in (0, 1, "yes", None):
        exc = raises(ConfigError, parse_settings, _settings_doc(four_eyes=value))
        assert "four_eyes must be true or false" in str(exc)


def test_settings_given_values():
    settings = parse_settings(
        _settings_doc(
            idle_logout_s=120,
            result_timeout_s=15,
            lockout_base_s=60,
            receipt_columns=48,
            utc_offset_min=60,
            menu_rows=2,
        )
    )
    assert settings.idle_logout_s == 120
    assert settings.result_timeout_s == 15
    assert settings.lockout_base_s == 60
    assert settings.receipt_columns == 48
    assert settings.utc_offset_min == 60
    assert settings.menu_rows == 2


# (name, lowest, highest), as the README and the terminal expect them
RANGES = (
    ("idle_logout_s", 10, 86400),
    ("result_timeout_s", 3, 600),
    ("lockout_base_s", 1, 3600),
    ("utc_offset_min", -720, 840),
    ("menu_rows", 2, 5),
    ("auto_block_declines", 0, 16),
    ("auto_block_window_min", 1, 1440),
)


def test_each_setting_accepts_its_boundaries():
    for name, low, high in RANGES:
        for value in (low, high):
            settings = parse_settings(_settings_doc(**{name: value}))
            assert getattr(settings, name) == value, name


def test_each_setting_refuses_just_outside():
    for name, low, high in RANGES:
        for value in (low - 1, high + 1):
            message = _refused(_settings_doc(**{name: value}), name)
            assert "from %d to %d" % (low, high) in message, message


def test_settings_must_be_whole_numbers():
    for name, low, _ in RANGES:
        for bad in (str(low), float(low), True, None, [low]):
            _refused(_settings_doc(**{name: bad}), name, "whole number")


def test_receipt_columns_32_or_48_only():
    assert parse_settings(_settings_doc(receipt_columns=32)).receipt_columns == 32
    assert parse_settings(_settings_doc(receipt_columns=48)).receipt_columns == 48
    for bad in (33, 40, 42, 47):
        _refused(_settings_doc(receipt_columns=bad), "receipt_columns must be 32 or 48")
    for bad in (0, 31, 49, 80, "32", 32.0):
        _refused(_settings_doc(receipt_columns=bad), "receipt_columns")


def test_terminal_id():
    assert parse_settings(_settings_doc(terminal_id="T")).terminal_id == "T"
    sixteen = "T000000000000016"
    assert parse_settings(_settings_doc(terminal_id=sixteen)).terminal_id == sixteen
    for bad in (sixteen + "7", "", 1, None):
        _refused(_settings_doc(terminal_id=bad), "terminal_id must be 1 to 16 characters")
    doc = _settings_doc()
    del doc["terminal_id"]
    _refused(doc, "terminal_id")


def test_card_token_key_is_32_hex_digits():
    upper = parse_settings(_settings_doc(card_token_key=KEY_HEX.upper()))
    assert bytes(upper.card_token_key) == bytes(range(16))
    for bad in (KEY_HEX[:30], KEY_HEX + "10", "00" * 32, ""):
        _refused(_settings_doc(card_token_key=bad), "card_token_key must be 32 hex digits")
    for bad in (KEY_HEX[:31], "zz" + KEY_HEX[2:], KEY_HEX[:30] + "0g", None, 12345, [1, 2]):
        _refused(_settings_doc(card_token_key=bad), "card_token_key")
    doc = _settings_doc()
    del doc["card_token_key"]
    _refused(doc, "card_token_key must be hex text")


def test_settings_not_an_object():
    for bad in ([], "T0001", None, 5):
        _refused(bad, "not an object")


def test_settings_source_name_in_messages():
    exc = raises(ConfigError, parse_settings, {"terminal_id": ""}, "/config/terminal.json")
    assert str(exc).startswith("/config/terminal.json: ")


# --- load() ------------------------------------------------------------------------------------


def _folder():
    folder = scratch("cfg")
    os.mkdir(folder)
    return folder


def _write(folder, name, doc):
    with open(folder + "/" + name, "w") as out:
        out.write(doc if isinstance(doc, str) else json.dumps(doc))


def _remove(folder):
    for name in ("terminal.json", "merchants.json", "cashiers.json"):
        try:
            os.remove(folder + "/" + name)
        except OSError:
            pass
    os.rmdir(folder)


def _terminal():
    return _settings_doc(terminal_id="T0042", utc_offset_min=60, receipt_columns=48)


def _merchants():
    return {
        "version": 4,
        "merchants": [
            {"number": 2, "merchant_id": "100000000000002", "name": "Tea", "currency": "EUR"},
            {"number": 1, "merchant_id": "100000000000001", "name": "Noodle", "currency": "GBP"},
        ],
    }


def _cashiers():
    def cashier(number, role, merchants, pin):
        return {
            "number": number,
            "name": "C%d" % number,
            "role": role,
            "merchants": merchants,
            "pin_hash": pin_hash_hex(pin, SALT, 10),
        }

    return {
        "version": 5,
        "pin_salt": SALT_HEX,
        "pin_rounds": 10,
        "cashiers": [cashier(1, "cashier", [2], "1111"), cashier(9, "supervisor", "all", "9999")],
    }


def _write_all(folder):
    _write(folder, "terminal.json", _terminal())
    _write(folder, "merchants.json", _merchants())
    _write(folder, "cashiers.json", _cashiers())


def test_load_good_folder():
    folder = _folder()
    try:
        _write_all(folder)
        settings, merchants, cashiers = load(folder)
    finally:
        _remove(folder)
    assert settings.terminal_id == "T0042"
    assert settings.utc_offset_min == 60
    assert settings.receipt_columns == 48
    assert bytes(settings.card_token_key) == bytes(range(16))
    assert merchants.version == 4
    assert [m.name for m in merchants] == ["Noodle", "Tea"]
    assert merchants.get(1).currency_code == "GBP"
    assert cashiers.version == 5
    assert len(cashiers) == 2
    one = cashiers.by_pin("1111")
    assert one.number == 1 and one.may_use(2) and not one.may_use(1)
    assert cashiers.by_pin("9999").is_supervisor()
    assert cashiers.by_pin("1234") is None


def test_load_missing_folder():
    missing = scratch("cfg-missing")
    exc = raises(ConfigError, load, missing)
    assert str(exc) == "terminal.json: missing"


def test_load_each_missing_file():
    for absent in ("terminal.json", "merchants.json", "cashiers.json"):
        folder = _folder()
        try:
            _write_all(folder)
            os.remove(folder + "/" + absent)
            exc = raises(ConfigError, load, folder)
        finally:
            _remove(folder)
        assert str(exc) == absent + ": missing"


def test_load_invalid_json():
    for broken, text in (
        ("terminal.json", '{"terminal_id": "T1",'),
        ("merchants.json", "not json"),
        ("cashiers.json", ""),
    ):
        folder = _folder()
        try:
            _write_all(folder)
            _write(folder, broken, text)
            exc = raises(ConfigError, load, folder)
        finally:
            _remove(folder)
        assert str(exc) == broken + ": not valid JSON"


def test_load_reports_the_faulty_file():
    folder = _folder()
    try:
        _write_all(folder)
        merchants = _merchants()
        merchants["merchants"][1]["currency"] = "XYZ"
        _write(folder, "merchants.json", merchants)
        exc = raises(ConfigError, load, folder)
        assert str(exc).startswith("merchants.json: merchant 1: unknown currency")
        _write(folder, "merchants.json", _merchants())
        cashiers = _cashiers()
        cashiers["cashiers"][0]["merchants"] = [3]  # no merchant 3 in merchants.json
        _write(folder, "cashiers.json", cashiers)
        exc = raises(ConfigError, load, folder)
        assert str(exc).startswith("cashiers.json: cashier 1: no merchant 3")
        _write(folder, "cashiers.json", _cashiers())
        _write(folder, "terminal.json", _settings_doc(menu_rows=6))
        exc = raises(ConfigError, load, folder)
        assert str(exc).startswith("terminal.json: menu_rows")
    finally:
        _remove(folder)


def test_load_json_of_the_wrong_shape():
    folder = _folder()
    try:
        _write_all(folder)
        _write(folder, "terminal.json", "[1, 2]")
        exc = raises(ConfigError, load, folder)
        assert str(exc) == "terminal.json: not an object"
        _write(folder, "terminal.json", _terminal())
        _write(folder, "cashiers.json", "null")
        exc = raises(ConfigError, load, folder)
        assert "cashiers.json" in str(exc) and "'cashiers' list" in str(exc)
    finally:
        _remove(folder)
