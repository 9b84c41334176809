"""Risk decisions for a sale, and the per-merchant activity they are judged on.

Every decision is a reason code, shown to the cashier in words and kept in the sealed record
(declines are recorded too, so the back end sees them). The rules, in the order they run:

    blacklist      the card's token is on the list pushed by the back end (pos.blacklist),
                   or on this terminal's own block list (pos.autoblock: a card with
                   auto_block_declines fraud declines within auto_block_window_min)
    velocity       the token paid more than N times in M minutes, any merchant (terminal.json)
    sale cap       one sale above max_sale_minor
    daily limits   approved sales today: max_day_count, max_day_minor (cash counts too)
    offline        while the link is down, card and mobile sales only: max_offline_sale_minor
                   per sale; max_offline_count and max_offline_total_minor for the merchant's
                   unsent sales; max_offline_age_s for the oldest of them
    anomaly        an amount above anomaly_factor times the median of the merchant's last
                   sales asks for a supervisor PIN (no PIN: declined)

"Today" is the merchant's local day at terminal.json's utc_offset_min, never earlier than
the day of the merchant's newest sale: while the clock is not set, or is put back, sales
count towards the last day the terminal knew (counters never reset on an unknown time or
by turning the clock back), velocity looks at every use it remembers, and the age of unsent
sales cannot be told, so the offline count and total limits carry on alone.

The activity is kept with each merchant's totals in the ledger's sealed state, stored with
every record (ledger.py), so a power cut rebuilds it exactly: a restart never resets it.
"""

from pos.clock import is_set, local_day
from pos.compat import const
from pos.record import CASH, REFUND, SALE

# pos.merchants' limits by number (host_tests/test_states.py checks them against the names).
_L_MAX_SALE_MINOR = const(0)
_L_MAX_OFFLINE_SALE_MINOR = const(2)
_L_MAX_DAY_COUNT = const(3)
_L_MAX_DAY_MINOR = const(4)
_L_MAX_OFFLINE_COUNT = const(6)
_L_MAX_OFFLINE_TOTAL_MINOR = const(7)
_L_MAX_OFFLINE_AGE_S = const(8)
_L_ANOMALY_FACTOR = const(9)

APPROVED = const(0)
OVER_SALE_LIMIT = const(1)
OVER_OFFLINE_LIMIT = const(2)
CARD_BLOCKED = const(3)
INVALID_CARD = const(4)
OVER_DAY_COUNT = const(5)
OVER_DAY_TOTAL = const(6)
TOO_MANY_USES = const(7)
OFFLINE_COUNT = const(8)
OFFLINE_TOTAL = const(9)
OFFLINE_AGE = const(10)
UNUSUAL_AMOUNT = const(11)

# The cashier's words for each code, one screen row (16 characters, NUL-padded) each, in
# one bytes constant (a literal each would be an object of its own on the heap).
REASON_TEXT = (
    b"Approved\0\0\0\0\0\0\0\0"  # 0
    b"Over sale limit\0"  # 1
    b"Offline limit\0\0\0"  # 2
    b"Card blocked\0\0\0\0"  # 3
    b"Invalid card\0\0\0\0"  # 4
    b"Daily count max\0"  # 5
    b"Daily amount max"  # 6
    b"Card used often\0"  # 7
    b"Offline count\0\0\0"  # 8
    b"Offline total\0\0\0"  # 9
    b"Offline too long"  # 10
    b"Unusual amount\0\0"  # 11
)
_REASONS = const(12)

# A merchant's activity: slots 26 on of its totals (pos.reports), stored with every record.
_DAY = const(26)  # local day number of the three counters below (0: no timed sale yet)
_DAY_COUNT = const(27)  # approved sales that day
_DAY_TOTAL = const(28)
_DAY_REFUNDS = const(29)  # refund total that day
_UNSENT_COUNT = const(30)  # card and mobile sales since all of the merchant's were acked
_UNSENT_TOTAL = const(31)
_UNSENT_SINCE = const(32)  # time of the oldest of them (0: not known)
_LAST_COUNTER = const(33)  # counter of the newest of them
_RING_COUNT = const(34)  # the merchant's last sale amounts, for the median
_RING_NEXT = const(35)
_RING = const(36)
RING_SIZE = const(9)
MIN_HISTORY = const(5)  # fewer sales than this: no median, no anomaly rule
_MAX_U32 = 0xFFFFFFFF


def reason_text(code):
    """The words for a reason code (bytes for Screen.put: a NUL ends them)."""
    if code < _REASONS:
        return memoryview(REASON_TEXT)[code * 16 : code * 16 + 16]
    return "Declined %d" % code


def count_activity(slots, record, counter, ack_watermark, utc_offset_min):
    """Count a record just booked into its merchant's slots (the ledger does this in the
    same step as the totals, so both are stored with the record)."""
    kind = record.kind
    if kind != SALE and kind != REFUND:
        return  # declines, voids (the attempt still counts) and Z change nothing here
    time = record.time
    day = local_day(time, utc_offset_min) if is_set(time) else 0
    # A later day starts the counters again; an earlier one (a clock put back) counts in
    # the day they hold, so turning the clock back never resets a limit. An unknown time
    # counts in the last known day; sales made before the clock was ever set count in the
    # first day it tells.
    if day > slots[_DAY]:
        if slots[_DAY]:
            slots[_DAY_COUNT] = slots[_DAY_TOTAL] = slots[_DAY_REFUNDS] = 0
        slots[_DAY] = day
    amount = record.amount_minor
    if kind == REFUND:
        slots[_DAY_REFUNDS] = min(slots[_DAY_REFUNDS] + amount, _MAX_U32)
        return
    slots[_DAY_COUNT] += 1
    slots[_DAY_TOTAL] = min(slots[_DAY_TOTAL] + amount, _MAX_U32)
    slots[_RING + slots[_RING_NEXT]] = amount
    slots[_RING_NEXT] = (slots[_RING_NEXT] + 1) % RING_SIZE
    if slots[_RING_COUNT] < RING_SIZE:
        slots[_RING_COUNT] += 1
    if record.method != CASH:
        if slots[_LAST_COUNTER] <= ack_watermark:  # all of its earlier ones are acked
            slots[_UNSENT_COUNT] = slots[_UNSENT_TOTAL] = slots[_UNSENT_SINCE] = 0
        slots[_UNSENT_COUNT] += 1
        slots[_UNSENT_TOTAL] = min(slots[_UNSENT_TOTAL] + amount, _MAX_U32)
        if not slots[_UNSENT_SINCE] and is_set(time):
            slots[_UNSENT_SINCE] = time
        slots[_LAST_COUNTER] = counter


def today(ledger, merchant, now):
    """(sale count, sale total, refund total) of the merchant on the local day of now; with
    the clock not set or put back before that day, those of the last day the terminal knew."""
    slots = ledger.totals.slots(merchant)
    if slots is None:
        return 0, 0, 0
    day = slots[_DAY]
    if day and is_set(now) and local_day(now, ledger.utc_offset_min) > day:
        return 0, 0, 0
    return slots[_DAY_COUNT], slots[_DAY_TOTAL], slots[_DAY_REFUNDS]


class Risk:
    def __init__(self, blacklist=None, store=None):
        self.blacklist = blacklist  # a pos.blacklist.Blacklist (searched on flash), or None
        self.store = store  # the state store that keeps the terminal's own block list
        # The terminal's own block list (pos.autoblock writes it: "blocked"), 6 bytes a card,
        # in the heap only while it holds one (None).
        self.blocked = store.read("blocked") if store is not None else None

    def check_sale(self, terminal, merchant, amount, supervised=False):
        """The reason code for the sale the terminal is about to book (APPROVED: go ahead).
        UNUSUAL_AMOUNT asks for a supervisor; supervised=True once one has approved."""
        token = terminal.token if terminal.has_token else None
        settings = terminal.settings
        ledger = terminal.ledger
        now = terminal.now()
        limit = merchant.limit
        if token is not None:
            if self.blacklist is not None and self.blacklist.contains(token):
                return CARD_BLOCKED
            blocked = self.blocked
            if blocked is not None:  # searched here: a function more would be heap
                for at in range(0, len(blocked) - 5, 6):
                    for i in range(6):
                        if blocked[at + i] != token[i]:
                            break
                    else:
                        return CARD_BLOCKED
            uses = settings.velocity_max_uses
            if uses:
                since = now - settings.velocity_window_min * 60 if now else 0
                if ledger.recent.token_uses(token, since) >= uses:
                    return TOO_MANY_USES
        if amount > limit(_L_MAX_SALE_MINOR):
            return OVER_SALE_LIMIT
        count, total, _ = today(ledger, merchant.number, now)
        if count >= limit(_L_MAX_DAY_COUNT):
            return OVER_DAY_COUNT
        if total + amount > limit(_L_MAX_DAY_MINOR):
            return OVER_DAY_TOTAL
        slots = ledger.totals.slots(merchant.number)  # None before the merchant's first sale
        if not terminal.link_up and terminal.method != CASH:
            if amount > limit(_L_MAX_OFFLINE_SALE_MINOR):
                return OVER_OFFLINE_LIMIT
            # Until the newest is acked all of them count: a backlog partly sent is taken as
            # unsent, never the other way round.
            if slots is not None and slots[_LAST_COUNTER] > ledger.queue.ack_watermark:
                if slots[_UNSENT_COUNT] >= limit(_L_MAX_OFFLINE_COUNT):
                    return OFFLINE_COUNT
                if slots[_UNSENT_TOTAL] + amount > limit(_L_MAX_OFFLINE_TOTAL_MINOR):
                    return OFFLINE_TOTAL
                since = slots[_UNSENT_SINCE]
                if since and now and now - since > limit(_L_MAX_OFFLINE_AGE_S):
                    return OFFLINE_AGE
        factor = limit(_L_ANOMALY_FACTOR)
        count = slots[_RING_COUNT] if slots is not None else 0
        if factor and not supervised and count >= MIN_HISTORY:
            amounts = sorted(slots[_RING : _RING + count])
            median = amounts[count // 2]
            if not count & 1:
                median = (median + amounts[count // 2 - 1]) // 2
            if amount > factor * median:
                return UNUSUAL_AMOUNT
        return APPROVED
