"""Cashiers, their roles and merchants, and PIN checks, from /config/cashiers.json.

{"version": 4, "pin_salt": "<hex, 8+ bytes>", "pin_rounds": 2000,
 "cashiers": [{"number": 1, "name": "Ana", "role": "cashier", "merchants": [1, 2] or "all",
               "pin_hash": "<hex of hash_pin(pin, salt, rounds)>"}]}

A PIN is never stored: only SHA-256 iterated over salt and PIN. The salt is one per file (a
fresh one each time the back end issues the file) because login is by PIN alone: one hash
per attempt finds the cashier, and two cashiers with the same PIN, which would make login
ambiguous, show up as equal hashes and are refused. (Four to eight digits cannot resist an
offline search whatever the hashing; the hash keeps PINs out of config dumps and logs, and the
terminal's lockout stops guessing at the keypad.)
"""

import hashlib
from binascii import hexlify, unhexlify

from pos.merchants import ConfigError

CASHIER = 1
SUPERVISOR = 2
ADMIN = 3
ROLES = {"cashier": CASHIER, "supervisor": SUPERVISOR, "admin": ADMIN}
DEFAULT_ROUNDS = 2000
MAX_CASHIERS = 99
PIN_MIN_DIGITS = 4
PIN_MAX_DIGITS = 8


def hash_pin(pin, salt, rounds=DEFAULT_ROUNDS):
    """The stored form of a PIN (bytes), as the provisioning tool and the terminal compute it."""
    digest = hashlib.sha256(salt + pin.encode()).digest()
    for _ in range(rounds - 1):
        digest = hashlib.sha256(digest + salt).digest()
    return digest


def pin_hash_hex(pin, salt, rounds=DEFAULT_ROUNDS):
    """A cashier's "pin_hash" field (used by provisioning and tests)."""
    return hexlify(hash_pin(pin, salt, rounds)).decode()


class Cashier:
    def __init__(self, number, name, role, merchants, pin_hash):
        self.number = number
        self.name = name
        self.role = role
        self.merchants = merchants  # tuple of menu numbers, or None for all
        self.pin_hash = pin_hash

    def may_use(self, merchant_number):
        return self.merchants is None or merchant_number in self.merchants

    def is_supervisor(self):
        return self.role >= SUPERVISOR


class Cashiers:
    def __init__(self, cashiers, salt, rounds, version=0):
        self.version = version
        self._list = cashiers
        self._salt = salt
        self._rounds = rounds

    def __iter__(self):
        return iter(self._list)

    def __len__(self):
        return len(self._list)

    def by_pin(self, pin):
        """The cashier whose PIN this is, or None. One hash, then every stored hash is
        compared in full, so the time taken does not say how close a guess came."""
        candidate = hash_pin(pin, self._salt, self._rounds)
        found = None
        for cashier in self._list:
            difference = 0
            for i in range(32):
                difference |= candidate[i] ^ cashier.pin_hash[i]
            if difference == 0:
                found = cashier
        return found


def parse_cashiers(doc, merchants, source="cashiers.json"):
    if not isinstance(doc, dict) or not isinstance(doc.get("cashiers"), list):
        raise ConfigError(source + ": needs a 'cashiers' list")
    version = doc.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ConfigError(source + ": version must be a whole number")
    salt, rounds = _salt(doc, source)
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
        number = entry.get("number")
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= 255:
            raise ConfigError(where + ": number must be 1 to 255")
        if number in numbers:
            raise ConfigError(where + ": number used twice")
        numbers[number] = True
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 16:
            raise ConfigError(where + ": name must be 1 to 16 characters")
        role = ROLES.get(entry.get("role"))
        if role is None:
            raise ConfigError(where + ": role must be cashier, supervisor or admin")
        allowed = entry.get("merchants")
        if allowed == "all":
            allowed = None
        elif isinstance(allowed, list) and allowed:
            for merchant_number in allowed:
                if merchants.get(merchant_number) is None:
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
        cashiers.append(Cashier(number, name.strip(), role, allowed, pin_hash))
    return Cashiers(cashiers, salt, rounds, version)


def _salt(doc, source):
    salt = _hex(doc.get("pin_salt"), source + ": pin_salt")
    if len(salt) < 8:
        raise ConfigError(source + ": pin_salt must be at least 8 bytes of hex")
    rounds = doc.get("pin_rounds", DEFAULT_ROUNDS)
    if not isinstance(rounds, int) or isinstance(rounds, bool) or not 1 <= rounds <= 100000:
        raise ConfigError(source + ": pin_rounds must be 1 to 100000")
    return salt, rounds


def _hex(text, what):
    if not isinstance(text, str):
        raise ConfigError(what + " must be hex text")
    try:
        return unhexlify(text)
    except ValueError:
        raise ConfigError(what + " must be hex text") from None
