"""pos.cashiers (PIN hashing, roles, merchants, login by PIN) and pos.config.parse_cashiers."""

import hashlib
from binascii import hexlify

from expect import raises
from pos.cashiers import ADMIN, CASHIER, DEFAULT_ROUNDS, SUPERVISOR, Cashier, Cashiers, hash_pin
from pos.config import ConfigError, parse_cashiers, parse_merchants, pin_hash_hex

SALT = b"test-salt-01"
SALT_HEX = "746573742d73616c742d3031"  # SALT in hex
ROUNDS = 10  # cheap for tests; devices use DEFAULT_ROUNDS


def _merchants():
    entries = []
    for number in (1, 2, 5):
        merchant_id = "10000000000000%d" % number
        entries.append(
            {"number": number, "merchant_id": merchant_id, "name": "M", "currency": "EUR"}
        )
    return parse_merchants({"merchants": entries})


def _cashier(number, pin, role="cashier", merchants="all", name="Ana"):
    return {
        "number": number,
        "name": name,
        "role": role,
        "merchants": merchants,
        "pin_hash": pin_hash_hex(pin, SALT, ROUNDS),
    }


def _doc(*cashiers):
    return {
        "version": 2,
        "pin_salt": SALT_HEX,
        "pin_rounds": ROUNDS,
        "cashiers": list(cashiers) or [_cashier(1, "1111")],
    }


def _refused(doc, *words):
    exc = raises(ConfigError, parse_cashiers, doc, _merchants())
    message = str(exc)
    assert message.startswith("cashiers.json"), message
    for word in words:
        assert word in message, message
    return message


# --- hashing ----------------------------------------------------------------------------------


def test_hash_pin_is_iterated_sha256():
    once = hashlib.sha256(SALT + b"1234").digest()
    assert hash_pin("1234", SALT, 1) == once
    twice = hashlib.sha256(once + SALT).digest()
    assert hash_pin("1234", SALT, 2) == twice
    digest = once
    for _ in range(ROUNDS - 1):
        digest = hashlib.sha256(digest + SALT).digest()
    assert hash_pin("1234", SALT, ROUNDS) == digest
    assert len(digest) == 32


def test_hash_pin_depends_on_pin_salt_and_rounds():
    base = hash_pin("1234", SALT, ROUNDS)
    assert hash_pin("1234", SALT, ROUNDS) == base
    assert hash_pin("1235", SALT, ROUNDS) != base
    assert hash_pin("12340", SALT, ROUNDS) != base
    assert hash_pin("1234", b"test-salt-02", ROUNDS) != base
    assert hash_pin("1234", SALT, ROUNDS + 1) != base


def test_default_rounds():
    assert DEFAULT_ROUNDS == 2000
    assert hash_pin("1234", SALT) == hash_pin("1234", SALT, 2000)


def test_pin_hash_hex():
    text = pin_hash_hex("1234", SALT, ROUNDS)
    assert text == hexlify(hash_pin("1234", SALT, ROUNDS)).decode()
    assert len(text) == 64


# --- the runtime objects ---------------------------------------------------------------------


def test_roles_and_supervisor():
    assert CASHIER < SUPERVISOR < ADMIN
    assert not Cashier(1, "Ana", CASHIER, None, bytes(32)).is_supervisor()
    assert Cashier(2, "Sue", SUPERVISOR, None, bytes(32)).is_supervisor()
    assert Cashier(3, "Max", ADMIN, None, bytes(32)).is_supervisor()


def test_may_use():
    everywhere = Cashier(1, "Ana", CASHIER, None, bytes(32))
    for number in (1, 2, 50, 99):
        assert everywhere.may_use(number)
    some = Cashier(2, "Ben", CASHIER, (1, 5), bytes(32))
    assert some.may_use(1)
    assert some.may_use(5)
    assert not some.may_use(2)
    assert not some.may_use(0)
    assert not some.may_use(99)


def test_by_pin_finds_the_right_cashier():
    ana = Cashier(1, "Ana", CASHIER, None, hash_pin("1111", SALT, ROUNDS))
    ben = Cashier(2, "Ben", CASHIER, (1,), hash_pin("2222", SALT, ROUNDS))
    sue = Cashier(9, "Sue", SUPERVISOR, None, hash_pin("9999", SALT, ROUNDS))
    table = Cashiers([ana, ben, sue], SALT, ROUNDS, version=4)
    assert len(table) == 3
    assert list(table) == [ana, ben, sue]
    assert table.version == 4
    assert table.by_pin("1111") is ana
    assert table.by_pin("2222") is ben
    assert table.by_pin("9999") is sue


def test_by_pin_wrong_pin_is_none():
    table = Cashiers([Cashier(1, "Ana", CASHIER, None, hash_pin("1111", SALT, ROUNDS))], SALT, 10)
    for wrong in ("1112", "111", "11111", "", "0000", "1111 "):
        assert table.by_pin(wrong) is None, wrong


def test_by_pin_uses_the_table_salt_and_rounds():
    ana = Cashier(1, "Ana", CASHIER, None, hash_pin("1111", SALT, ROUNDS))
    assert Cashiers([ana], b"other-salt-1", ROUNDS).by_pin("1111") is None
    assert Cashiers([ana], SALT, ROUNDS + 1).by_pin("1111") is None
    assert Cashiers([ana], SALT, ROUNDS).by_pin("1111") is ana


# --- parse_cashiers: a good file -------------------------------------------------------------


def test_parse_good_file():
    table = parse_cashiers(
        _doc(
            _cashier(1, "1111", "cashier", "all", "Ana"),
            _cashier(2, "2222", "cashier", [1, 5], "Ben"),
            _cashier(9, "9999", "supervisor", "all", "Sue"),
            _cashier(255, "123456", "admin", [2], "Max"),
        ),
        _merchants(),
    )
    assert table.version == 2
    assert len(table) == 4
    assert [c.number for c in table] == [1, 2, 9, 255]
    ana = table.by_pin("1111")
    assert ana.number == 1 and ana.name == "Ana" and ana.role == CASHIER
    assert ana.merchants is None
    assert ana.may_use(1) and ana.may_use(2) and ana.may_use(5)
    assert not ana.is_supervisor()
    ben = table.by_pin("2222")
    assert ben.merchants == (1, 5)
    assert ben.may_use(5) and not ben.may_use(2)
    sue = table.by_pin("9999")
    assert sue.role == SUPERVISOR and sue.is_supervisor()
    admin = table.by_pin("123456")
    assert admin.number == 255 and admin.role == ADMIN and admin.is_supervisor()
    assert admin.merchants == (2,)
    assert table.by_pin("1234") is None
    assert table.by_pin("") is None


def test_parse_defaults():
    doc = {"pin_salt": SALT_HEX, "cashiers": [_cashier(1, "1111")]}
    doc["cashiers"][0]["pin_hash"] = pin_hash_hex("1111", SALT, DEFAULT_ROUNDS)
    table = parse_cashiers(doc, _merchants())
    assert table.version == 0
    assert table.by_pin("1111").number == 1  # hashed with the default 2000 rounds
    assert table.by_pin("1112") is None


def test_salt_and_rounds_come_from_the_file():
    doc = _doc(_cashier(1, "1111"))
    doc["pin_salt"] = "00112233445566778899"
    doc["cashiers"][0]["pin_hash"] = pin_hash_hex(
        "1111", b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99", 3
    )
    doc["pin_rounds"] = 3
    assert parse_cashiers(doc, _merchants()).by_pin("1111").number == 1
    doc["pin_rounds"] = 4
    assert parse_cashiers(doc, _merchants()).by_pin("1111") is None


def test_name_is_stripped():
    table = parse_cashiers(_doc(_cashier(1, "1111", name="  Ana  ")), _merchants())
    assert table.by_pin("1111").name == "Ana"


# --- parse_cashiers: the file's shape and its header -------------------------------------------


def test_file_shape_refused():
    _refused([], "'cashiers' list")
    _refused({"pin_salt": SALT_HEX}, "'cashiers' list")
    _refused({"pin_salt": SALT_HEX, "cashiers": "Ana"}, "'cashiers' list")
    doc = _doc()
    doc["cashiers"] = []
    _refused(doc, "no cashiers")
    _refused(_doc(["not", "an", "object"]), "cashier 1", "not an object")


def test_99_cashiers_pass_the_count_check_100_do_not():
    # the count is checked before any entry: 99 copies of one get past it (and fail on the
    # repeated number), 100 do not
    doc = _doc()
    doc["cashiers"] = [_cashier(1, "1111")] * 99
    _refused(doc, "cashier 2", "number used twice")
    doc["cashiers"] = [_cashier(1, "1111")] * 100
    _refused(doc, "more than 99 cashiers")


def test_version_checked():
    for bad in (-1, "2", 2.5, True):
        doc = _doc()
        doc["version"] = bad
        _refused(doc, "version")


def test_pin_salt_checked():
    doc = _doc()
    doc["pin_salt"] = "0011223344556677"  # 8 bytes: the shortest allowed
    doc["cashiers"][0]["pin_hash"] = pin_hash_hex("1111", b"\x00\x11\x22\x33\x44\x55\x66\x77", 10)
    assert parse_cashiers(doc, _merchants()).by_pin("1111").number == 1
    doc["pin_salt"] = "00112233445566"  # 7 bytes
    _refused(doc, "pin_salt must be at least 8 bytes")
    for bad in ("zz" * 12, "0" * 17, "", None, 1234567890):
        doc["pin_salt"] = bad
        _refused(doc, "pin_salt")
    del doc["pin_salt"]
    _refused(doc, "pin_salt")


def test_pin_rounds_boundaries():
    for good in (1, 100000):
        doc = _doc()
        doc["pin_rounds"] = good
        assert len(parse_cashiers(doc, _merchants())) == 1
    for bad in (0, -1, 100001, "10", 10.0, True, None):
        doc = _doc()
        doc["pin_rounds"] = bad
        _refused(doc, "pin_rounds", "1 to 100000")


# --- parse_cashiers: each entry ------------------------------------------------------------------


def test_number_boundaries_and_duplicates():
    for bad in (0, 256, -1, "1", True, None):
        _refused(_doc(_cashier(bad, "1111")), "cashier 1", "number")
    _refused(_doc(_cashier(3, "1111"), _cashier(3, "2222")), "cashier 2", "number used twice")


def test_name_boundaries():
    assert len(parse_cashiers(_doc(_cashier(1, "1111", name="N" * 16)), _merchants())) == 1
    for bad in ("N" * 17, "", "   ", None, 7):
        _refused(_doc(_cashier(1, "1111", name=bad)), "name must be 1 to 16 characters")


def test_roles():
    for text, role in (("cashier", CASHIER), ("supervisor", SUPERVISOR), ("admin", ADMIN)):
        table = parse_cashiers(_doc(_cashier(1, "1111", text)), _merchants())
        assert table.by_pin("1111").role == role
    for bad in ("manager", "Cashier", "", None, 1):
        _refused(_doc(_cashier(1, "1111", bad)), "role must be cashier, supervisor or admin")


def test_merchant_lists():
    for good, expected in (("all", None), ([1], (1,)), ([5, 2, 1], (5, 2, 1))):
        table = parse_cashiers(_doc(_cashier(1, "1111", merchants=good)), _merchants())
        assert table.by_pin("1111").merchants == expected
    for bad in ([], "ALL", "1", 1, None, {"1": True}):
        _refused(_doc(_cashier(1, "1111", merchants=bad)), 'list of numbers or "all"')


def test_unknown_merchant_in_list_refused():
    _refused(_doc(_cashier(1, "1111", merchants=[1, 3])), "cashier 1", "no merchant 3")
    _refused(_doc(_cashier(1, "1111", merchants=[0])), "no merchant 0")
    _refused(_doc(_cashier(1, "1111", merchants=["1"])), "no merchant '1'")
    # true and 1.0 equal 1 in Python, but they are not menu numbers
    _refused(_doc(_cashier(1, "1111", merchants=[True])), "cashier 1", "no merchant")
    _refused(_doc(_cashier(1, "1111", merchants=[2, 1.0])), "cashier 1", "no merchant 1.0")
    _refused(_doc(_cashier(1, "1111", merchants=[None])), "no merchant None")


def test_same_pin_twice_refused():
    doc = _doc(_cashier(1, "1111", name="Ana"), _cashier(2, "2468"), _cashier(7, "1111"))
    _refused(doc, "cashier 3", "same PIN as cashier 1")
    # whatever else differs: login by PIN alone could not tell them apart
    doc = _doc(_cashier(1, "1111"), _cashier(2, "1111", "supervisor"))
    _refused(doc, "same PIN as cashier 1")


def test_pin_hash_checked():
    good = pin_hash_hex("1111", SALT, ROUNDS)
    for bad in (good[:-2], good + "00", good[:-1], "zz" + good[2:], "", None, 1111):
        entry = _cashier(1, "1111")
        entry["pin_hash"] = bad
        _refused(_doc(entry), "cashier 1", "pin_hash")
    entry = _cashier(1, "1111")
    entry["pin_hash"] = good.upper()
    assert parse_cashiers(_doc(entry), _merchants()).by_pin("1111").number == 1
