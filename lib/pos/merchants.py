"""The merchants that share this terminal (built by pos.config from /config/merchants.json)."""

from pos.money import MAX_AMOUNT_MINOR, currency

LIMITS = ("max_sale_minor", "max_refund_minor", "max_offline_sale_minor")


class Merchant:
    def __init__(self, number, merchant_id, name, currency_code, limits):
        self.number = number
        self.merchant_id = merchant_id
        self.name = name
        self.label = name.encode()  # as the screen draws it, made once
        self.currency_code = currency_code
        self.currency_numeric, self.exponent = currency(currency_code)
        # Limits as attributes, not a dict kept per merchant: 99 merchants must fit. One
        # not given is no limit beyond the largest amount (pos.config fills them all in).
        for limit in LIMITS:
            setattr(self, limit, limits.get(limit, MAX_AMOUNT_MINOR))

    def limit(self, name):
        if name not in LIMITS:
            raise KeyError(name)
        return getattr(self, name)


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
