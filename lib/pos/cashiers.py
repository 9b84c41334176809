"""Cashiers, their roles and merchants, and the PIN check (built by pos.config from
/config/cashiers.json).

A PIN is never stored: only SHA-256 iterated over a salt and the PIN. The salt is one per
file (a fresh one each time the back end issues the file) because login is by PIN alone: one
hash per attempt finds the cashier, and two cashiers with the same PIN, which would make
login ambiguous, show up as equal hashes and are refused by the parser. (Four to eight digits
cannot resist an offline search whatever the hashing; the hash keeps PINs out of config
dumps and logs, and the terminal's lockout stops guessing at the keypad.)
"""

import hashlib

CASHIER = 1
SUPERVISOR = 2
ADMIN = 3
DEFAULT_ROUNDS = 2000


def hash_pin(pin, salt, rounds=DEFAULT_ROUNDS):
    """The stored form of a PIN (bytes), as the provisioning tool and the terminal compute it."""
    digest = hashlib.sha256(salt + pin.encode()).digest()
    for _ in range(rounds - 1):
        digest = hashlib.sha256(digest + salt).digest()
    return digest


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
