"""The terminal's function menu (key A): void, refund, X and Z reports, status, sync, log out,
and (8, not listed on the 8-row screen) lifting a card's automatic block.

Loaded when the cashier presses A and unloaded when they are back at the merchant menu
(pos.compat.unload), so the sale path never carries this code in the heap. It works on the
terminal it is given: its entries, amount, screen, ledger and effects.
"""

from pos.card import MAX_CARD_DIGITS, MIN_CARD_DIGITS, luhn_ok
from pos.clock import format_datetime, is_set
from pos.compat import const, mem_free
from pos.money import format_minor
from pos.receipt import center, pair
from pos.record import FLAG_SUPERVISOR, REFUND, SALE, VOID, Record
from pos.reports import METHOD_LABELS, VOIDED
from pos.risk import today
from pos.screen import HINT, TITLE

# The screens this menu shows and what Terminal.edit returns: pos.states' numbers as
# private constants, inlined at no heap cost (importing pos.states would load it with
# this module, about 1 KB more). host_tests/test_states.py checks that they match.
_MENU = const(10)
_SUPERVISOR_PIN = const(11)
_REFUND_RECEIPT = const(12)
_REFUND_AMOUNT = const(13)
_REFUND_CONFIRM = const(14)
_VOID_CONFIRM = const(15)
_PICK_MERCHANT = const(16)
_REPORT_VIEW = const(17)
_Z_CONFIRM = const(18)
_STATUS = const(19)
_UNBLOCK_CARD = const(21)
_BLOCK = const(6)  # pos.autoblock's record type
_DONE = const(3)
_BACK = const(4)

# The words this menu shows: 16-byte rows of one bytes constant, as in pos.terminal.
_TEXT = (
    b"1 Void last\0\0\0\0\0"  # 0
    b"2 Refund\0\0\0\0\0\0\0\0"  # 1
    b"3 X report\0\0\0\0\0\0"  # 2
    b"4 Z settle\0\0\0\0\0\0"  # 3
    b"5 Status\0\0\0\0\0\0\0\0"  # 4
    b"6 Sync now\0\0\0\0\0\0"  # 5
    b"No sale to void\0"  # 6
    b"Not assigned\0\0\0\0"  # 7
    b"Merchant removed"  # 8
    b"Sync started\0\0\0\0"  # 9
    b"Logged out\0\0\0\0\0\0"  # 10
    b"Not a sale\0\0\0\0\0\0"  # 11
    b"No such receipt\0"  # 12
    b"Already refunded"  # 13
    b"Sale voided\0\0\0\0\0"  # 14
    b"Daily refund cap"  # 15
    b"Totals reset\0\0\0\0"  # 16
    b"Functions\0\0\0\0\0\0\0"  # 17
    b"7 Log out *back\0"  # 18
    b"Supervisor PIN\0\0"  # 19
    b"#OK *back\0\0\0\0\0\0\0"  # 20
    b"Refund\0\0\0\0\0\0\0\0\0\0"  # 21
    b"Orig. receipt no"  # 22
    b"Settle batch\0\0\0\0"  # 23
    b"Sales\0\0\0\0\0\0\0\0\0\0\0"  # 24
    b"#settle *back\0\0\0"  # 25
    b"C/D page #done\0\0"  # 26
    b"Status\0\0\0\0\0\0\0\0\0\0"  # 27
    b"Link\0\0\0\0\0\0\0\0\0\0\0\0"  # 28
    b"up\0\0\0\0\0\0\0\0\0\0\0\0\0\0"  # 29
    b"DOWN\0\0\0\0\0\0\0\0\0\0\0\0"  # 30
    b"Unsent\0\0\0\0\0\0\0\0\0\0"  # 31
    b"Oldest min\0\0\0\0\0\0"  # 32
    b"-\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"  # 33
    b"Key counter\0\0\0\0\0"  # 34
    b"Free mem\0\0\0\0\0\0\0\0"  # 35
    b"n/a\0\0\0\0\0\0\0\0\0\0\0\0\0"  # 36
    b"#OK\0\0\0\0\0\0\0\0\0\0\0\0\0"  # 37
    b"Unblock card\0\0\0\0"  # 38
    b"Card number\0\0\0\0\0"  # 39
    b"Not blocked\0\0\0\0\0"  # 40
    b"UNBLOCKED\0\0\0\0\0\0\0"  # 41
    b"Invalid card no."  # 42
)
_T_1_VOID_LAST = const(0)
_T_2_REFUND = const(1)
_T_3_X_REPORT = const(2)
_T_4_Z_SETTLE = const(3)
_T_5_STATUS = const(4)
_T_6_SYNC_NOW = const(5)
_T_NO_SALE_TO_VOID = const(6)
_T_NOT_ASSIGNED = const(7)
_T_MERCHANT_REMOVED = const(8)
_T_SYNC_STARTED = const(9)
_T_LOGGED_OUT = const(10)
_T_NOT_A_SALE = const(11)
_T_NO_SUCH_RECEIPT = const(12)
_T_ALREADY_REFUNDED = const(13)
_T_SALE_VOIDED = const(14)
_T_DAILY_REFUND_CAP = const(15)
_T_TOTALS_RESET = const(16)
_T_FUNCTIONS = const(17)
_T_7_LOG_OUT_BACK = const(18)
_T_SUPERVISOR_PIN = const(19)
_T_OK_BACK = const(20)
_T_REFUND = const(21)
_T_ORIG_RECEIPT_NO = const(22)
_T_SETTLE_BATCH = const(23)
_T_SALES = const(24)
_T_SETTLE_BACK = const(25)
_T_C_D_PAGE_DONE = const(26)
_T_STATUS = const(27)
_T_LINK = const(28)
_T_UP = const(29)
_T_DOWN = const(30)
_T_UNSENT = const(31)
_T_OLDEST_MIN = const(32)
_T_BLANK = const(33)
_T_KEY_COUNTER = const(34)
_T_FREE_MEM = const(35)
_T_N_A = const(36)
_T_OK = const(37)
_T_UNBLOCK_CARD = const(38)
_T_CARD_NUMBER = const(39)
_T_NOT_BLOCKED = const(40)
_T_UNBLOCKED = const(41)
_T_INVALID_CARD_NO = const(42)


def _text(number):
    return memoryview(_TEXT)[number << 4 : (number + 1) << 4]  # row `number`


_REPORT_ROWS = 5
_RECEIPT_DIGITS = const(8)


def report_lines(totals, merchant, exponent):
    """(label, value) pairs of an X or Z report. Sales are net of voids, as the Z record
    counts them (pos.reports.Totals.settlement) and as the Z screen shows them: the first
    line says so, and the Voids line after them tells what was taken off."""
    lines = [("Sales less voids", "")]
    for kind, label in ((SALE, "Sales"), (VOID, "Voids"), (REFUND, "Refunds")):
        count, total = totals.sum(merchant, kind)
        if kind == SALE:
            voided = totals.sum(merchant, VOID)
            count, total = count - voided[0], total - voided[1]
        lines.append(("%s %d" % (label, count), format_minor(total, exponent)))
        for method in range(1, 5):
            c, t = totals.count_total(merchant, kind, method)
            if kind == SALE:
                voided = totals.count_total(merchant, VOID, method)
                c, t = c - voided[0], t - voided[1]
            if c:
                lines.append(("  %s %d" % (METHOD_LABELS[method], c), format_minor(t, exponent)))
    lines.append(("Declines %d" % totals.declines(merchant), ""))
    lines.append(("NET", format_minor(totals.net(merchant), exponent)))
    lines.append(("Batch %d" % totals.batch(merchant), ""))
    return lines


def report_receipt(title, merchant, terminal_id, now, lines, columns=32, utc_offset_min=0):
    """An X or Z report slip: header, then the report's (label, value) pairs."""
    out = [
        center(title, columns),
        center(merchant.name, columns),
        center("Merchant ID " + merchant.merchant_id, columns),
        pair("Terminal", terminal_id, columns),
        pair("Printed", format_datetime(now, utc_offset_min), columns),
        "-" * columns,
    ]
    for label, value in lines:
        out.append(pair(label, value, columns) if value else label[:columns])
    out.append("-" * columns)
    return out


class Functions:
    """The menu's screens, each key handler next to its drawing. It reads the terminal and
    moves it only through its verbs (go, say, book, to_merchants, open_menu, edit)."""

    def __init__(self, terminal):
        self.t = terminal
        self.supervisor = None  # who entered a supervisor PIN for this refund or Z
        self.after_supervisor = 0
        self.after_pick = 0
        self.original = None  # the recent-sale entry a void or refund refers to
        self.report_lines = None
        self.report_merchant = None
        self.page = 0  # of the X report on screen

    def key(self, key):
        state = self.t.state
        if state == _MENU:
            self._menu_key(key)
        elif state == _SUPERVISOR_PIN:
            self._supervisor_key(key)
        elif state == _REFUND_RECEIPT:
            self._refund_receipt_key(key)
        elif state == _REFUND_CONFIRM or state == _VOID_CONFIRM or state == _Z_CONFIRM:
            self._confirm_key(key)
        elif state == _REPORT_VIEW:
            self._report_key(key)
        elif state == _STATUS and (key == "#" or key == "*"):
            self.t.to_merchants()
        elif state == _UNBLOCK_CARD:
            self._unblock_key(key)

    def draw(self, screen):
        state = self.t.state
        if state == _MENU:
            self._draw_menu(screen)
        elif state == _SUPERVISOR_PIN:
            self._draw_supervisor(screen)
        elif state == _REFUND_RECEIPT:
            self._draw_refund_receipt(screen)
        elif state == _REFUND_CONFIRM or state == _VOID_CONFIRM:
            self._draw_confirm(screen)
        elif state == _Z_CONFIRM:
            self._draw_z_confirm(screen)
        elif state == _REPORT_VIEW:
            self._draw_report(screen)
        elif state == _STATUS:
            self._draw_status(screen)
        elif state == _UNBLOCK_CARD:
            self._draw_unblock(screen)

    # --- the menu -------------------------------------------------------------------------

    def _menu_key(self, key):
        t = self.t
        if key == "*":
            t.to_merchants()
        elif key == "1":
            original = t.ledger.last_voidable_sale()
            if original is None:
                t.say(_text(_T_NO_SALE_TO_VOID))
            elif not t.cashier.may_use(original[4]):
                t.say(_text(_T_NOT_ASSIGNED))
            elif t.merchants.get(original[4]) is None:
                t.say(_text(_T_MERCHANT_REMOVED))
            else:
                self.original = original
                t.go(_VOID_CONFIRM, t.merchants.get(original[4]))
        elif key == "2" or key == "4" or key == "8":
            self.after_supervisor = _PICK_MERCHANT
            if key == "2":
                self.after_supervisor = _REFUND_RECEIPT
            elif key == "8":
                self.after_supervisor = _UNBLOCK_CARD
                t.card.wipe()
            self.after_pick = _Z_CONFIRM
            t.go(_SUPERVISOR_PIN)
        elif key == "3":
            self.after_pick = _REPORT_VIEW
            t.go(_PICK_MERCHANT)
        elif key == "5":
            t.go(_STATUS)
        elif key == "6":
            t.effects.append(("upload",))
            t.say(_text(_T_SYNC_STARTED), None)
        elif key == "7":
            t.logout(_text(_T_LOGGED_OUT))

    def _draw_menu(self, screen):
        screen.put(TITLE, _text(_T_FUNCTIONS))
        for row in range(6):
            screen.put(row + 1, _text(_T_1_VOID_LAST + row))  # the six items, in order
        screen.put(HINT, _text(_T_7_LOG_OUT_BACK))

    # --- supervisor PIN (a refund and a Z need one) ---------------------------------------

    def _supervisor_key(self, key):
        t = self.t
        supervisor = t.supervisor_key(key)
        if supervisor == _BACK:
            t.open_menu()
        elif supervisor is not None:
            self.supervisor = supervisor
            t.go(self.after_supervisor)

    def _draw_supervisor(self, screen):
        screen.put(2, _text(_T_SUPERVISOR_PIN))
        self.t.draw_masked(3, self.t.entry.length)
        screen.put(HINT, _text(_T_OK_BACK))
        screen.focus = 2

    # --- refund: the original receipt, then the amount (on the terminal's amount screen) ---

    def _refund_receipt_key(self, key):
        t = self.t
        entry = t.entry
        outcome = t.edit(entry, key, _RECEIPT_DIGITS)
        if outcome == _BACK:
            t.open_menu()
        if outcome != _DONE:
            return
        receipt = int(bytes(entry.view()).decode())
        entry.wipe()
        ledger = t.ledger
        original = ledger.recent.find_sale(receipt)
        if original is None:
            # Every receipt number below the next was given to some record: one that the
            # recent sales would hold, were it a sale, was a void, refund, decline or Z.
            issued = 0 < receipt < ledger.next_receipt
            known = issued and ledger.recent.holds_sales_from(receipt)
            t.say(_text(_T_NOT_A_SALE) if known else _text(_T_NO_SUCH_RECEIPT))
        elif original[6] & VOIDED:
            t.say(_text(_T_SALE_VOIDED))
        elif t.merchants.get(original[4]) is None:
            t.say(_text(_T_MERCHANT_REMOVED))
        elif not t.cashier.may_use(original[4]) or not self.supervisor.may_use(original[4]):
            t.say(_text(_T_NOT_ASSIGNED))
        elif original[7] - original[8] <= 0:
            t.say(_text(_T_ALREADY_REFUNDED))
        else:
            self.original = original
            t.amount.wipe()
            t.go(_REFUND_AMOUNT, t.merchants.get(original[4]))

    def _draw_refund_receipt(self, screen):
        screen.put(TITLE, _text(_T_REFUND))
        screen.put(2, _text(_T_ORIG_RECEIPT_NO))
        screen.put(3, self.t.entry.view(), right=True)
        screen.put(HINT, _text(_T_OK_BACK))
        screen.focus = 2

    def refund_amount(self, value):
        """The refund amount keyed (not zero, within the merchant's refund cap, which the
        amount screen keeps to): check it against the original and the day's refunds."""
        t = self.t
        merchant = t.merchant
        remaining = self.original[7] - self.original[8]
        if value > remaining:
            t.say("Max " + format_minor(remaining, merchant.exponent))
        elif today(t.ledger, merchant.number, t.now())[2] + value > merchant.limit(
            "max_refund_day_minor"
        ):
            t.say(_text(_T_DAILY_REFUND_CAP))
        else:
            t.go(_REFUND_CONFIRM)

    # --- confirm a void, a refund or a Z --------------------------------------------------

    def _confirm_key(self, key):
        t = self.t
        state = t.state
        if key == "*":
            if state == _REFUND_CONFIRM:
                t.go(_REFUND_AMOUNT)
            else:
                t.open_menu()
            return
        if key != "#":
            return
        if state == _VOID_CONFIRM:
            self._book_against_original(VOID, self.original[7])
        elif state == _REFUND_CONFIRM:
            self._book_against_original(REFUND, t.amount.amount_minor)
        else:
            self._book_settlement()

    def _draw_confirm(self, screen):
        t = self.t
        original = self.original
        void = t.state == _VOID_CONFIRM
        # "Refund no. 12", or without "no." once the number needs the room (16 columns).
        text = "%s no. %d" % ("Void" if void else "Refund", original[0])
        if len(text) > 16:
            text = text.replace(" no.", "")
        screen.put(1, text)
        if void:
            screen.put(2, t.merchant.currency_code)
            screen.put_digits(2, original[7], t.merchant.exponent)
        else:
            t.draw_amount_line(2)
        t.draw_card_line(3, original[5], original[10])
        screen.put(HINT, _text(_T_OK_BACK))
        screen.focus = 1

    def _draw_z_confirm(self, screen):
        merchant = self.report_merchant
        totals = self.t.ledger.totals
        screen.put(1, _text(_T_SETTLE_BATCH))
        screen.put_digits(1, totals.batch(merchant.number), 0)
        screen.put(2, "Net " + merchant.currency_code)
        screen.put(2, format_minor(totals.net(merchant.number), merchant.exponent), right=True)
        count = totals.sum(merchant.number, SALE)[0] - totals.sum(merchant.number, VOID)[0]
        screen.put(3, _text(_T_SALES))  # net of voids, as the report and the Z record say
        screen.put_digits(3, count, 0)
        screen.put(HINT, _text(_T_SETTLE_BACK))
        screen.focus = 1

    def _book_against_original(self, kind, value):
        t = self.t
        original = self.original
        record = Record(
            kind,
            original[4],
            value,
            t.merchant.currency_numeric,
            method=original[5],
            cashier=t.cashier.number,
            time=t.now(),
            reference=original[0],
            flags=t.flags() | (FLAG_SUPERVISOR if kind == REFUND else 0),
            token=original[9],
            last_four=original[10],
        )
        t.book(record)

    def _book_settlement(self):
        t = self.t
        merchant = self.report_merchant
        self.report_lines = report_lines(t.ledger.totals, merchant.number, merchant.exponent)
        record = t.ledger.totals.settlement(
            merchant.number,
            merchant.currency_numeric,
            cashier=self.supervisor.number,
            time=t.now(),
            flags=t.flags() | FLAG_SUPERVISOR,
        )
        t.book(record)

    def settled(self, record):
        """The Z record (or a lifted block's) is stored: print the report of the totals it
        closed. Returns the result screen's (headline, detail)."""
        t = self.t
        if record.kind == _BLOCK:
            t.effects.append(("beep", "ok"))
            return (_text(_T_UNBLOCKED), "**** %04d" % record.last_four)
        settings = t.settings
        batch = record.reference
        t.effects.append(
            (
                "print",
                report_receipt(
                    "Z REPORT %d" % batch,
                    t.merchant,
                    settings.terminal_id,
                    t.now(),
                    self.report_lines,
                    settings.receipt_columns,
                    settings.utc_offset_min,
                ),
            )
        )
        t.effects.append(("beep", "ok"))
        return ("Z BATCH %d DONE" % batch, _text(_T_TOTALS_RESET))

    # --- X report -------------------------------------------------------------------------

    def picked(self, merchant):
        """A merchant chosen for an X report or a Z settlement."""
        t = self.t
        self.report_merchant = merchant
        if self.after_pick == _Z_CONFIRM:
            t.go(_Z_CONFIRM, merchant)
            return
        settings = t.settings
        self.report_lines = report_lines(t.ledger.totals, merchant.number, merchant.exponent)
        self.page = 0
        t.go(_REPORT_VIEW, merchant)
        t.effects.append(
            (
                "print",
                report_receipt(
                    "X REPORT",
                    merchant,
                    settings.terminal_id,
                    t.now(),
                    self.report_lines,
                    settings.receipt_columns,
                    settings.utc_offset_min,
                ),
            )
        )

    def _report_key(self, key):
        pages = (len(self.report_lines) + _REPORT_ROWS - 1) // _REPORT_ROWS
        if key == "C" and self.page > 0:
            self.page -= 1
        elif key == "D" and self.page + 1 < pages:
            self.page += 1
        elif key == "#" or key == "*":
            self.t.to_merchants()

    def _draw_report(self, screen):
        screen.put(TITLE, b"X " + self.report_merchant.label)
        first = self.page * _REPORT_ROWS
        lines = self.report_lines
        for row in range(_REPORT_ROWS):
            if first + row >= len(lines):
                break
            label, value = lines[first + row]
            screen.put(row + 1, label)
            if value:
                screen.put(row + 1, value, right=True)
        screen.put(HINT, _text(_T_C_D_PAGE_DONE))
        screen.focus = 1

    # --- status ---------------------------------------------------------------------------

    def _draw_status(self, screen):
        t = self.t
        ledger = t.ledger
        screen.put(TITLE, _text(_T_STATUS))
        screen.put(1, _text(_T_LINK))
        screen.put(1, _text(_T_UP) if t.link_up else _text(_T_DOWN), right=True)
        screen.put(2, _text(_T_UNSENT))
        screen.put_digits(2, ledger.unsent_count(), 0)
        screen.put(3, _text(_T_OLDEST_MIN))
        oldest = ledger.oldest_unsent_time()
        if oldest and is_set(t.unix):
            screen.put_digits(3, max(0, t.unix - oldest) // 60, 0)
        else:
            screen.put(3, _text(_T_BLANK), right=True)
        screen.put(4, _text(_T_KEY_COUNTER))
        screen.put_digits(4, ledger.journal.next_counter, 0)
        screen.put(5, _text(_T_FREE_MEM))
        free = mem_free()
        if free >= 0:
            screen.put_digits(5, free, 0)
        else:
            screen.put(5, _text(_T_N_A), right=True)
        screen.put(HINT, _text(_T_OK))

    # --- lift an automatic block (pos.autoblock): a supervisor keys the card's number -----

    def _unblock_key(self, key):
        t = self.t
        card = t.card
        outcome = t.edit(card, key, MAX_CARD_DIGITS)
        if outcome == _BACK:
            t.open_menu()
        if outcome != _DONE:
            return
        if not MIN_CARD_DIGITS <= card.length or not luhn_ok(card.view()):
            card.wipe()
            t.say(_text(_T_INVALID_CARD_NO))
            return
        token = bytearray(6)
        t._tokenizer.token(card.view(), token)
        last_four = card.last_four()
        card.wipe()
        from pos import autoblock
        from pos.compat import unload

        # The record names the terminal's first merchant: a block is the whole terminal's.
        for merchant in t.merchants:  # noqa: B007 (the first one is wanted)
            break
        risk = t.risk
        record = autoblock.lift(
            risk,
            token,
            merchant.number,
            merchant.currency_numeric,
            self.supervisor.number,
            t.now(),
            t.flags(),
        )
        autoblock = None
        unload("pos.autoblock")
        if record is None:
            t.say(_text(_T_NOT_BLOCKED))
            return
        record.last_four = last_four
        t.go(_UNBLOCK_CARD, merchant)
        t.book(record)

    def _draw_unblock(self, screen):
        screen.put(TITLE, _text(_T_UNBLOCK_CARD))
        screen.put(2, _text(_T_CARD_NUMBER))
        screen.put(3, self.t.card.view(), right=True)
        screen.put(HINT, _text(_T_OK_BACK))
        screen.focus = 2
