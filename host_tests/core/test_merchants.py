"""pos.merchants and the merchants.json checks of pos.config.parse_merchants."""

from expect import raises
from pos.config import ConfigError, parse_merchants
from pos.merchants import NO_LIMIT, Merchant, Merchants, limit_names
from pos.money import MAX_AMOUNT_MINOR, MoneyError


def _limits():
    return {"max_sale_minor": 50000, "max_refund_minor": 40000, "max_offline_sale_minor": 20000}


def _entry(number=1, merchant_id="100000000000001", name="Noodle Bar", currency="EUR"):
    return {"number": number, "merchant_id": merchant_id, "name": name, "currency": currency}


def _doc(*entries):
    return {"version": 3, "merchants": list(entries) or [_entry()]}


def _refused(doc, *words):
    exc = raises(ConfigError, parse_merchants, doc)
    message = str(exc)
    assert message.startswith("merchants.json"), message
    for word in words:
        assert word in message, message
    return message


# --- the runtime objects -------------------------------------------------------------------


def test_merchant_fields():
    merchant = Merchant(4, "100000000000004", "Noodle Bar", "EUR", _limits())
    assert merchant.number == 4
    assert merchant.merchant_id == "100000000000004"
    assert merchant.name == "Noodle Bar"
    assert merchant.label == b"Noodle Bar"
    assert merchant.currency_code == "EUR"
    assert merchant.currency_numeric == 978
    assert merchant.exponent == 2
    assert merchant.limit("max_sale_minor") == 50000
    assert merchant.limit("max_offline_sale_minor") == 20000


def test_merchant_label_is_utf8():
    merchant = Merchant(1, "1", "Caf\u00e9", "EUR", _limits())
    assert merchant.label == b"Caf\xc3\xa9"


def test_merchant_currency_exponents():
    assert Merchant(1, "1", "A", "JPY", _limits()).exponent == 0
    assert Merchant(1, "1", "A", "JPY", _limits()).currency_numeric == 392
    assert Merchant(1, "1", "A", "KWD", _limits()).exponent == 3
    assert Merchant(1, "1", "A", "USD", _limits()).currency_numeric == 840


def test_merchant_unknown_currency_or_limit():
    raises(MoneyError, Merchant, 1, "1", "A", "XXX", _limits())
    merchant = Merchant(1, "1", "A", "EUR", _limits())
    raises(KeyError, merchant.limit, "max_tip_minor")
    raises(KeyError, merchant.limit, 10)  # by number: 0 to 9
    raises(KeyError, merchant.limit, -1)
    assert merchant.limit(0) == merchant.limit("max_sale_minor") == 50000


def test_merchants_in_menu_number_order():
    table = Merchants(
        [
            Merchant(7, "7", "Seven", "EUR", _limits()),
            Merchant(2, "2", "Two", "EUR", _limits()),
            Merchant(30, "30", "Thirty", "EUR", _limits()),
        ],
        version=5,
    )
    assert len(table) == 3
    assert [m.number for m in table] == [2, 7, 30]
    assert [m.number for m in table] == [2, 7, 30]  # iterating twice gives the same
    assert table.version == 5
    assert table.get(7).name == "Seven"
    assert table.get(30).name == "Thirty"
    assert table.get(1) is None
    assert table.get(0) is None
    assert table.get(31) is None
    assert Merchants([]).version == 0
    assert len(Merchants([])) == 0


# --- parse_merchants: a good file ---------------------------------------------------------------


def test_parse_good_file():
    first = _entry(3, "100000000000003", "Dumpling House", "EUR")
    first["limits"] = _limits()
    table = parse_merchants(
        _doc(first, _entry(1, "100000000000001", "Noodle Bar", "JPY"), _entry(2, "42", "Tea"))
    )
    assert isinstance(table, Merchants)
    assert table.version == 3
    assert len(table) == 3
    assert [m.number for m in table] == [1, 2, 3]
    noodle = table.get(1)
    assert noodle.merchant_id == "100000000000001"
    assert noodle.currency_code == "JPY" and noodle.exponent == 0
    dumpling = table.get(3)
    assert dumpling.name == "Dumpling House"
    assert dumpling.limit("max_sale_minor") == 50000
    assert dumpling.limit("max_refund_minor") == 40000
    assert dumpling.limit("max_offline_sale_minor") == 20000
    assert table.get(4) is None


def test_limits_not_given_are_none():
    merchant = parse_merchants(_doc()).get(1)
    for name in limit_names():
        if name != "anomaly_factor":
            assert merchant.limit(name) > 0xFFFFFFFF + MAX_AMOUNT_MINOR  # past any total
    assert merchant.limit("anomaly_factor") == 0  # off
    entry = _entry()
    entry["limits"] = {"max_sale_minor": 100}
    merchant = parse_merchants(_doc(entry)).get(1)
    assert merchant.limit("max_sale_minor") == 100
    assert merchant.limit("max_refund_minor") == NO_LIMIT


def test_version_defaults_to_0_and_is_checked():
    assert parse_merchants({"merchants": [_entry()]}).version == 0
    doc = _doc()
    doc["version"] = 0x7FFFFFFF
    assert parse_merchants(doc).version == 0x7FFFFFFF
    for bad in (-1, 0x80000000, "1", 1.5, True, None):
        doc["version"] = bad
        _refused(doc, "version")


# --- parse_merchants: the file's shape -----------------------------------------------------------


def test_file_shape_refused():
    _refused([], "'merchants' list")
    _refused({}, "'merchants' list")
    _refused({"merchants": {"1": _entry()}}, "'merchants' list")
    _refused({"version": 1, "merchants": []}, "no merchants")
    _refused(_doc("not an object"), "merchant 1", "not an object")


def test_99_merchants_pass_the_count_check_100_do_not():
    # The count is checked before any entry, so one entry repeated is enough to find the
    # boundary: 99 copies get past it (and fail on the repeated number), 100 do not. (A
    # table of 99 distinct merchants is about 30 KB on the 64-bit unix port: more than the
    # 96 KiB test heap has left once pos.config and the terminal are imported.)
    _refused({"merchants": [_entry()] * 99}, "merchant 1", "menu number used twice")
    _refused({"merchants": [_entry()] * 100}, "more than 99 merchants")
    _refused({"merchants": [_entry()] * 150}, "more than 99 merchants")


def test_many_merchants_in_menu_order():
    entries = []
    for number in range(40, 0, -1):
        entries.append(
            {"number": number, "merchant_id": str(number), "name": "M", "currency": "EUR"}
        )
    table = parse_merchants({"merchants": entries})
    assert len(table) == 40
    previous = 0
    for merchant in table:
        assert merchant.number == previous + 1
        assert merchant.merchant_id == str(merchant.number)
        previous = merchant.number
    assert table.get(40).merchant_id == "40"


# --- parse_merchants: each field ---------------------------------------------------------------


def test_menu_number_boundaries():
    assert parse_merchants(_doc(_entry(1))).get(1) is not None
    assert parse_merchants(_doc(_entry(99))).get(99) is not None
    for bad in (0, 100, -1, 255, "1", 1.0, True, None):
        _refused(_doc(_entry(bad)), "number", "1 to 99")
    entry = _entry()
    del entry["number"]
    _refused(_doc(entry), "number")


def test_duplicate_menu_number_refused():
    message = _refused(
        _doc(_entry(1, "100000000000001"), _entry(2, "2"), _entry(1, "100000000000003")),
        "menu number used twice",
    )
    assert "merchant 1" in message


def test_duplicate_merchant_id_refused():
    _refused(
        _doc(_entry(1, "100000000000001"), _entry(2, "100000000000001")),
        "merchant 2",
        "merchant_id used twice",
    )


def test_merchant_id_boundaries():
    assert parse_merchants(_doc(_entry(merchant_id="123456789012345"))).get(1) is not None
    assert parse_merchants(_doc(_entry(merchant_id="0"))).get(1).merchant_id == "0"
    for bad in (
        "1234567890123456",  # 16 digits
        "",
        "12345678901234a",
        " 12345",
        "12345 ",
        "-1",
        "1.5",
        "\u0661\u0662",  # Arabic-Indic digits are not ASCII digits
        12345,
        None,
    ):
        _refused(_doc(_entry(merchant_id=bad)), "merchant_id must be 1 to 15 digits")


def test_merchant_name_boundaries():
    name24 = "Dumpling House Of Plenty"
    assert len(name24) == 24
    assert parse_merchants(_doc(_entry(name=name24))).get(1).name == name24
    assert parse_merchants(_doc(_entry(name="X"))).get(1).name == "X"
    assert parse_merchants(_doc(_entry(name=" Tea "))).get(1).name == "Tea"
    for bad in (name24 + "!", "", "   ", None, 5):
        _refused(_doc(_entry(name=bad)), "merchant 1", "name must be 1 to 24 characters")


def test_unknown_currency_refused():
    assert parse_merchants(_doc(_entry(currency="GBP"))).get(1).currency_numeric == 826
    for bad in ("XXX", "eur", "EURO", "", None, 978):
        _refused(_doc(_entry(currency=bad)), "merchant 1", "unknown currency")


def test_limit_boundaries():
    for value in (1, MAX_AMOUNT_MINOR):
        entry = _entry()
        entry["limits"] = {"max_refund_minor": value}
        assert parse_merchants(_doc(entry)).get(1).limit("max_refund_minor") == value
    for bad in (0, -5, MAX_AMOUNT_MINOR + 1, "100", 10.5, True, None):
        entry = _entry()
        entry["limits"] = {"max_offline_sale_minor": bad}
        _refused(_doc(entry), "merchant 1", "max_offline_sale_minor")


def test_unknown_limit_refused():
    entry = _entry(2, "2")
    entry["limits"] = {"max_sale_minor": 100, "max_tip_minor": 5}
    _refused(_doc(entry), "merchant 2", "unknown limit max_tip_minor")


def test_limits_not_an_object_refused():
    for bad in ([], "none", 5, None):
        entry = _entry()
        entry["limits"] = bad
        _refused(_doc(entry), "limits must be an object")
