"""Risk decisions for a sale: each answer is a reason code, shown in words and kept in the
sealed record (declines are recorded too, so the back end sees them).

This is the first slice: the per-sale cap, the offline per-sale cap and the card blacklist
(pos.blacklist: on flash, versioned deltas).
"""

from pos.compat import const

APPROVED = const(0)
OVER_SALE_LIMIT = const(1)
OVER_OFFLINE_LIMIT = const(2)
CARD_BLOCKED = const(3)
INVALID_CARD = const(4)

REASON_TEXT = {
    APPROVED: "Approved",
    OVER_SALE_LIMIT: "Over sale limit",
    OVER_OFFLINE_LIMIT: "Offline limit",
    CARD_BLOCKED: "Card blocked",
    INVALID_CARD: "Invalid card",
}


def reason_text(code):
    return REASON_TEXT.get(code, "Declined %d" % code)


class Risk:
    def __init__(self, blacklist=None):
        self.blacklist = blacklist  # a pos.blacklist.Blacklist (searched on flash), or None

    def check_sale(self, merchant, amount_minor, token, link_up):
        """The reason code for a sale about to be confirmed (APPROVED = go ahead)."""
        if amount_minor > merchant.limit("max_sale_minor"):
            return OVER_SALE_LIMIT
        if not link_up and amount_minor > merchant.limit("max_offline_sale_minor"):
            return OVER_OFFLINE_LIMIT
        if token is not None and self.blacklist is not None and self.blacklist.contains(token):
            return CARD_BLOCKED
        return APPROVED
