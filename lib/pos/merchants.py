"""The merchants that share this terminal (built by pos.config from /config/merchants.json)."""

import struct

from pos.compat import const
from pos.money import currency

# The limits a merchant may set (pos.config checks them; pos.risk applies them), numbered
# in this order: the sale path asks for a limit by its number (a private const() in each
# module that asks, checked by host_tests/test_states.py), so their names are needed only
# while merchants are made, and are one bytes constant (ten str objects were about 400
# bytes of heap for the terminal's life). Amounts are minor units. One not given is no
# limit (NO_LIMIT), except anomaly_factor (0: off).
_NAMES = (
    b"max_sale_minor max_refund_minor max_offline_sale_minor max_day_count max_day_minor "
    b"max_refund_day_minor max_offline_count max_offline_total_minor max_offline_age_s "
    b"anomaly_factor"
)
_COUNT = const(10)
_ANOMALY_FACTOR = const(9)


def limit_names():
    """The limits' names, in their numbers' order (a new list each call)."""
    return _NAMES.decode().split()


# No limit: above any amount, and above any running total a u32 counter (pos.risk) plus one
# amount can reach, so a daily or unsent total never trips a limit nobody set.
NO_LIMIT = 1 << 33


class Merchant:
    def __init__(self, number, merchant_id, name, currency_code, limits):
        self.number = number
        self.merchant_id = merchant_id
        self.name = name
        self.label = name.encode()  # as the screen draws it, made once
        self.currency_code = currency_code
        self.currency_numeric, self.exponent = currency(currency_code)
        # The limits given, as one packed row (4 bytes each, by number; 0: not given), or
        # None when none is (pos.config has checked the names and values, all below 2**32):
        # as attributes they grew each merchant's dict to 640 bytes, and 99 merchants must
        # fit.
        self._limits = None
        if limits:
            names = limit_names()
            row = bytearray(4 * _COUNT)
            for name in limits:
                struct.pack_into("<I", row, 4 * names.index(name), limits[name])
            self._limits = bytes(row)

    def limit(self, which):
        """A limit by its number (the sale path's way) or its name; KeyError for neither."""
        if not isinstance(which, int):
            names = limit_names()
            if which not in names:
                raise KeyError(which)
            which = names.index(which)
        elif not 0 <= which < _COUNT:
            raise KeyError(which)
        row = self._limits
        value = 0
        if row:  # by arithmetic on the bytes: the risk checks read limits on every sale
            at = 4 * which
            value = row[at] | row[at + 1] << 8 | row[at + 2] << 16 | row[at + 3] << 24
        return value or (0 if which == _ANOMALY_FACTOR else NO_LIMIT)


class Merchants:
    """The merchant table, in menu-number order."""

    def __init__(self, merchants, version=0):
        self.version = version
        self._list = sorted(merchants, key=lambda m: m.number)

    def __len__(self):
        return len(self._list)

    def __iter__(self):
        return iter(self._list)

    def get(self, number):
        for merchant in self._list:
            if merchant.number == number:
                return merchant
        return None
