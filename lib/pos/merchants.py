"""The merchants that share this terminal, loaded from /config/merchants.json.

{"version": 4, "merchants": [{"number": 1, "merchant_id": "100000000000001",
  "name": "Noodle Bar", "currency": "EUR", "limits": {"max_sale_minor": 50000}}, ...]}

A malformed file raises ConfigError naming the file, the entry and the field: the terminal
shows it and refuses to sell rather than guess which merchant a sale belongs to.
"""

from pos.money import MAX_AMOUNT_MINOR, MoneyError, currency

MAX_MERCHANTS = 99  # menu numbers 1..99: two keys at most
NAME_CHARS = 24

# Limits a merchant may set, with their defaults. Amounts are minor units.
LIMIT_DEFAULTS = (
    ("max_sale_minor", MAX_AMOUNT_MINOR),
    ("max_refund_minor", MAX_AMOUNT_MINOR),
    ("max_offline_sale_minor", MAX_AMOUNT_MINOR),
)


class ConfigError(ValueError):
    """A config file that cannot be used; the message says which file and field."""


class Merchant:
    def __init__(self, number, merchant_id, name, currency_code, limits):
        self.number = number
        self.merchant_id = merchant_id
        self.name = name
        self.currency_code = currency_code
        self.currency_numeric, self.exponent = currency(currency_code)
        self.limits = limits

    def limit(self, name):
        return self.limits[name]


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


def parse_merchants(doc, source="merchants.json"):
    """Build the table from a decoded JSON document; raise ConfigError on any fault."""
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
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > NAME_CHARS:
            raise ConfigError(where + ": name must be 1 to %d characters" % NAME_CHARS)
        code = entry.get("currency")
        try:
            currency(code)
        except MoneyError:
            raise ConfigError(where + ": unknown currency %r" % (code,)) from None
        limits = _limits(entry.get("limits", {}), where)
        if number in numbers:
            raise ConfigError(where + ": menu number used twice")
        if merchant_id in ids:
            raise ConfigError(where + ": merchant_id used twice")
        numbers[number] = True
        ids[merchant_id] = True
        merchants.append(Merchant(number, merchant_id, name.strip(), code, limits))
    return Merchants(merchants, version)


def _limits(doc, where):
    if not isinstance(doc, dict):
        raise ConfigError(where + ": limits must be an object")
    limits = {}
    for name, default in LIMIT_DEFAULTS:
        limits[name] = _int(doc.get(name, default), where, name, 1, MAX_AMOUNT_MINOR)
    for name in doc:
        if name not in limits:
            raise ConfigError(where + ": unknown limit " + str(name))
    return limits


def _int(value, where, field, low, high):
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        message = "%s: %s must be a whole number from %d to %d"
        raise ConfigError(message % (where, field, low, high))
    return value


def _digits(text):
    for ch in text:
        if ch < "0" or ch > "9":
            return False
    return True
