"""The terminal's state machine: logical events in, the screen and a list of effects out.

Events are tuples:
    ("key", "0".."9" | "#" | "*" | "A" | "B" | "C" | "D")
    ("card", "4111111111111111")     a card read        ("scan", "123456789012") a QR scan
    ("tick", now_ms, unix_seconds)   time passes (unix_seconds 0 while the clock is not set)
    ("link", True | False)           the uplink's state
    ("booked", counter) | ("unbooked", message)      the outcome of a "book" effect
    ("synced", True | False)         the outcome of an "upload" effect
Effects (terminal.effects, refilled by every handle()) are tuples:
    ("book", record)   store the record durably (Ledger.book), then answer booked/unbooked
    ("print", lines)   print a receipt or report
    ("beep", "ok" | "error")
    ("upload",)        send unsent records now
Nothing here does I/O: the same events always give the same screens and effects. The ledger
is only read (totals, recent sales, queue depth) to show them.

Keys: digits, # OK, * back (clears the entry first, then goes back), A function menu,
B backspace, C previous page, D next page.
"""

from pos.card import (
    MAX_CARD_DIGITS,
    MAX_CODE_DIGITS,
    MIN_CARD_DIGITS,
    MIN_CODE_DIGITS,
    TOKEN_SIZE,
    DigitBuffer,
    luhn_ok,
)
from pos.clock import is_set
from pos.compat import const, ticks_diff, unload
from pos.money import MAX_AMOUNT_MINOR, AmountEntry, format_minor
from pos.receipt import CUSTOMER_COPY, MERCHANT_COPY, sale_receipt
from pos.record import (
    CASH,
    DECLINE,
    FLAG_KEYED,
    FLAG_OFFLINE,
    FLAG_SUPERVISOR,
    LAST_FOUR_NONE,
    MOBILE,
    REFUND,
    SALE,
    SETTLEMENT,
    VOID,
    Record,
)
from pos.risk import APPROVED, UNUSUAL_AMOUNT, reason_text
from pos.screen import HINT, TITLE, Screen

# The words this module shows, as one bytes constant of 16-byte rows (NUL-padded): a
# literal each would be an object of its own on the heap, about 40 bytes apiece on the
# 64-bit port. _text(n) is row n, for Screen.put (which stops at the first NUL).
_TEXT = (
    b"Credit card\0\0\0\0\0"  # 0
    b"Debit card\0\0\0\0\0\0"  # 1
    b"Mobile/QR\0\0\0\0\0\0\0"  # 2
    b"Cash\0\0\0\0\0\0\0\0\0\0\0\0"  # 3
    b"Sync done\0\0\0\0\0\0\0"  # 4
    b"Sync failed\0\0\0\0\0"  # 5
    b"Idle: logged out"  # 6
    b"PIN too short\0\0\0"  # 7
    b"Low memory\0\0\0\0\0\0"  # 8
    b"Logged out\0\0\0\0\0\0"  # 9
    b"Type a number\0\0\0"  # 10
    b"Not assigned\0\0\0\0"  # 11
    b"Enter an amount\0"  # 12
    b"Pick method 1st\0"  # 13
    b"Read failed\0\0\0\0\0"  # 14
    b"DECLINED\0\0\0\0\0\0\0\0"  # 15
    b"APPROVED\0\0\0\0\0\0\0\0"  # 16
    b"VOIDED\0\0\0\0\0\0\0\0\0\0"  # 17
    b"REFUNDED\0\0\0\0\0\0\0\0"  # 18
    b"OneTill\0\0\0\0\0\0\0\0\0"  # 19
    b"1 Credit 2 Debit"  # 20
    b"3 Mobile 4 Cash\0"  # 21
    b"1-4 pick  *back\0"  # 22
    b"Unusual amount\0\0"  # 23
    b"Supervisor PIN\0\0"  # 24
    b"#OK *decline\0\0\0\0"  # 25
    b"Processing...\0\0\0"  # 26
    b"Not selling.\0\0\0\0"  # 27
    b"Call operator\0\0\0"  # 28
    b"Login locked\0\0\0\0"  # 29
    b"Wait\0\0\0\0\0\0\0\0\0\0\0\0"  # 30
    b"s\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"  # 31
    b"Cashier PIN\0\0\0\0\0"  # 32
    b"#OK B del\0\0\0\0\0\0\0"  # 33
    b"X report\0\0\0\0\0\0\0\0"  # 34
    b"Z settle\0\0\0\0\0\0\0\0"  # 35
    b"Merchant?\0\0\0\0\0\0\0"  # 36
    b"#OK C/D pg *out\0"  # 37
    b"#OK C/D *back\0\0\0"  # 38
    b"Sale amount\0\0\0\0\0"  # 39
    b"Refund amount\0\0\0"  # 40
    b"#OK B del *back\0"  # 41
    b"Read or key card"  # 42
    b"Scan or key code"  # 43
    b"****\0\0\0\0\0\0\0\0\0\0\0\0"  # 44
    b"Confirm sale\0\0\0\0"  # 45
    b"#OK *back\0\0\0\0\0\0\0"  # 46
    b"Code\0\0\0\0\0\0\0\0\0\0\0\0"  # 47
    b"Receipt\0\0\0\0\0\0\0\0\0"  # 48
    b"OFFLINE\0\0\0\0\0\0\0\0\0"  # 49
    b"# next\0\0\0\0\0\0\0\0\0\0"  # 50
    b"Not a supervisor"  # 51
    b"Needs 2nd person"  # 52
    b"Invalid card no."  # 53
    b"Code invalid\0\0\0\0"  # 54
    b"CONFIG ERROR\0\0\0\0"  # 55
    b"TERMINAL FAULT\0\0"  # 56
)
# pos.merchants' limits by number (host_tests/test_states.py checks them).
_L_MAX_SALE_MINOR = const(0)
_L_MAX_REFUND_MINOR = const(1)
_T_CREDIT_CARD = const(0)
_T_DEBIT_CARD = const(1)
_T_MOBILE_QR = const(2)
_T_CASH = const(3)
_T_SYNC_DONE = const(4)
_T_SYNC_FAILED = const(5)
_T_IDLE_LOGGED_OUT = const(6)
_T_PIN_TOO_SHORT = const(7)
_T_LOW_MEMORY = const(8)
_T_LOGGED_OUT = const(9)
_T_TYPE_A_NUMBER = const(10)
_T_NOT_ASSIGNED = const(11)
_T_ENTER_AN_AMOUNT = const(12)
_T_PICK_METHOD_1ST = const(13)
_T_READ_FAILED = const(14)
_T_DECLINED = const(15)
_T_APPROVED = const(16)
_T_VOIDED = const(17)
_T_REFUNDED = const(18)
_T_ONETILL = const(19)
_T_1_CREDIT_2_DEBIT = const(20)
_T_3_MOBILE_4_CASH = const(21)
_T_1_4_PICK_BACK = const(22)
_T_UNUSUAL_AMOUNT = const(23)
_T_SUPERVISOR_PIN = const(24)
_T_OK_DECLINE = const(25)
_T_PROCESSING = const(26)
_T_NOT_SELLING = const(27)
_T_CALL_OPERATOR = const(28)
_T_LOGIN_LOCKED = const(29)
_T_WAIT = const(30)
_T_S = const(31)
_T_CASHIER_PIN = const(32)
_T_OK_B_DEL = const(33)
_T_X_REPORT = const(34)
_T_Z_SETTLE = const(35)
_T_MERCHANT = const(36)
_T_OK_C_D_PG_OUT = const(37)
_T_OK_C_D_BACK = const(38)
_T_SALE_AMOUNT = const(39)
_T_REFUND_AMOUNT = const(40)
_T_OK_B_DEL_BACK = const(41)
_T_READ_OR_KEY_CARD = const(42)
_T_SCAN_OR_KEY_CODE = const(43)
_T_STARS = const(44)
_T_CONFIRM_SALE = const(45)
_T_OK_BACK = const(46)
_T_CODE = const(47)
_T_RECEIPT = const(48)
_T_OFFLINE = const(49)
_T_NEXT = const(50)
_T_NOT_A_SUPERVISOR = const(51)
_T_NEEDS_2ND_PERSON = const(52)
_T_INVALID_CARD_NO = const(53)
_T_CODE_INVALID = const(54)
_T_CONFIG_ERROR = const(55)
_T_TERMINAL_FAULT = const(56)


def _text(number):
    return memoryview(_TEXT)[number * 16 : number * 16 + 16]


# The screens (pos.states has the whole list) as private constants: const() inlines these
# here at no heap cost, where importing the names would keep a module and its table on
# the sale path (about 1.7 KB). host_tests/test_states.py checks that they match.
_CONFIG_ERROR = const(0)
_LOGIN = const(1)
_MERCHANTS = const(2)
_AMOUNT = const(3)
_METHOD = const(4)
_CARD = const(5)
_MOBILE_CODE = const(6)
_CONFIRM = const(7)
_BOOKING = const(8)
_RESULT = const(9)
_MENU = const(10)
_REFUND_RECEIPT = const(12)
_REFUND_AMOUNT = const(13)
_PICK_MERCHANT = const(16)
_REPORT_VIEW = const(17)
_SALE_SUPERVISOR = const(20)
# What edit() did with a key (pos.states says what each means).
_EDITED = const(0)
_REFUSED = const(1)
_EMPTY = const(2)
_DONE = const(3)
_BACK = const(4)
_OTHER = const(5)

_MESSAGE_ROW = const(6)
_PIN_MIN = const(4)
_PIN_MAX = const(8)
_MAX_WRONG_PINS = const(3)
_LOCKOUT_MAX_S = const(86400)

_NOT_TAKEN = b"NOT TAKEN"  # the headline of a booking that failed (compared by identity)


class Settings:
    """Terminal-wide settings (pos.config reads them from terminal.json); the defaults are
    what a demo terminal uses."""

    def __init__(
        self,
        terminal_id="T0001",
        card_token_key=bytes(16),
        idle_logout_s=300,
        result_timeout_s=20,
        lockout_base_s=30,
        receipt_columns=32,
        utc_offset_min=0,
        menu_rows=5,
        velocity_max_uses=0,
        velocity_window_min=10,
        four_eyes=True,
        auto_block_declines=0,
        auto_block_window_min=60,
    ):
        self.terminal_id = terminal_id
        self.card_token_key = card_token_key
        self.idle_logout_s = idle_logout_s
        self.result_timeout_s = result_timeout_s
        self.lockout_base_s = lockout_base_s
        self.receipt_columns = receipt_columns
        self.utc_offset_min = utc_offset_min
        self.menu_rows = menu_rows
        self.velocity_max_uses = velocity_max_uses  # 0: no velocity rule (pos.risk)
        self.velocity_window_min = velocity_window_min
        self.four_eyes = four_eyes  # a supervisor may not approve for their own login
        self.auto_block_declines = auto_block_declines  # 0: no automatic block (autoblock)
        self.auto_block_window_min = auto_block_window_min


class _Terminal:
    """The terminal up to the amount: events, verbs, login, merchants, amount. Terminal
    (below) adds the payment: method, card, confirm, booking, result. Two classes, not one,
    as a class's dict is one block of heap: with all 51 methods it was 944 bytes, the
    allocation a start failed on a KiB above the lowest heap the day needs (tools/bench
    heap); as two, 592 and 368."""

    def __init__(
        self,
        settings,
        merchants,
        cashiers,
        ledger,
        tokenizer,
        risk,
        config_error=None,
        config_fault=True,
    ):
        self.ledger = ledger
        self.screen = Screen()
        self.effects = []
        self.now_ms = 0
        self.unix = 0
        self.link_up = False
        self.cashier = None
        self.merchant = None
        self.allowed = []
        self.page = 0
        self.message = None
        self.entry = DigitBuffer(_PIN_MAX)  # PINs, menu numbers, receipt numbers
        self.amount = AmountEntry()
        self.card = DigitBuffer(MAX_CODE_DIGITS)  # a card number or payment code, then wiped
        self.method = 0
        self.token = bytearray(TOKEN_SIZE)
        self.has_token = False
        self.keyed = False
        self.last_four = LAST_FOUR_NONE
        self.wrong_pins = 0
        self.lock_count = 0
        self.locked_until = None
        # callable(terminal) that stores wrong_pins, lock_count and the lock on flash (the
        # app's, pos.lockout): called when they change, before a PIN is checked too; it
        # answers whether the count is stored.
        self.keep_lockout = None
        self.last_activity = 0
        self.result_since = 0
        self.result = None  # (headline, detail rows) of the _RESULT screen
        self.functions = None  # pos.functions.Functions while the function menu is in use
        self.booking = None  # the record handed to the ledger, until it answers
        # Reused for every sale, void and refund: a record's dict with all its fields is one
        # 272-byte block, which a worn heap may not have (pos.record).
        self.reused_record = Record(SALE, 1, 0, 0, method=CASH)
        self.configure(settings, merchants, cashiers, tokenizer, risk, config_error, config_fault)

    def configure(
        self,
        settings,
        merchants,
        cashiers,
        tokenizer,
        risk,
        config_error=None,
        config_fault=True,
    ):
        """Settings, tables and rules; pos.app makes the terminal before it parses the config
        (so the terminal's objects are made while the heap is whole) and configures it after.
        """
        self.settings = settings
        self.merchants = merchants
        self.cashiers = cashiers
        self.risk = risk
        self._tokenizer = tokenizer
        self.config_error = config_error  # any start-up fault: the terminal will not sell
        self.config_fault = config_fault  # the title: CONFIG ERROR, or TERMINAL FAULT
        self.state = _CONFIG_ERROR if config_error else _LOGIN
        if self.ledger is not None:
            self.ledger.utc_offset_min = settings.utc_offset_min  # "today" for daily limits
        self.draw()

    # --- events --------------------------------------------------------------------------

    def handle(self, event):
        """Take one event; returns (screen, effects)."""
        self.effects.clear()
        kind = event[0]
        if kind == "key":
            self.last_activity = self.now_ms
            self.message = None
            self._key(event[1])
        elif kind == "tick":
            self._tick(event[1], event[2])
        elif kind == "card" or kind == "scan":
            self.last_activity = self.now_ms
            self.message = None
            self._card_data(kind, event[1])
        elif kind == "link":
            self.link_up = bool(event[1])
        elif kind == "booked":
            self._booked(event[1])
        elif kind == "unbooked":
            self._book_failed(event[1])
        elif kind == "synced":
            self.message = _text(_T_SYNC_DONE) if event[1] else _text(_T_SYNC_FAILED)
        self.draw()
        return self.screen, self.effects

    def _key(self, key):
        state = self.state
        if state == _CONFIG_ERROR or state == _BOOKING:
            return
        if state == _LOGIN:
            self._login_key(key)
        elif state == _MERCHANTS or state == _PICK_MERCHANT:
            self._merchant_key(key)
        elif state == _AMOUNT or state == _REFUND_AMOUNT:
            self._amount_key(key)
        elif state == _METHOD:
            self._method_key(key)
        elif state == _CARD or state == _MOBILE_CODE:
            self._card_key(key)
        elif state == _CONFIRM:
            self._confirm_key(key)
        elif state == _SALE_SUPERVISOR:
            self._sale_supervisor_key(key)
        elif state == _RESULT:
            if key == "#" or key == "*":
                self.to_merchants()
        elif self.functions is not None:
            self.functions.key(key)

    def draw(self):
        screen = self.screen
        screen.clear()
        state = self.state
        title = self.merchant.label if self.merchant is not None else _text(_T_ONETILL)
        screen.put(TITLE, title)
        if state == _CONFIG_ERROR:
            self._draw_config_error()
        elif state == _LOGIN:
            self._draw_login()
        elif state == _MERCHANTS or state == _PICK_MERCHANT:
            self._draw_merchants()
        elif state == _AMOUNT or state == _REFUND_AMOUNT:
            self._draw_amount()
        elif state == _METHOD:
            self._draw_method()
        elif state == _CARD or state == _MOBILE_CODE:
            self._draw_card()
        elif state == _CONFIRM:
            self._draw_confirm()
        elif state == _SALE_SUPERVISOR:
            self._draw_sale_supervisor()
        elif state == _BOOKING:
            self.draw_amount_line(1)
            screen.put(3, _text(_T_PROCESSING))
            screen.focus = 2
        elif state == _RESULT:
            self._draw_result()
        elif self.functions is not None:
            self.functions.draw(screen)
        if self.message:
            screen.put(_MESSAGE_ROW, self.message)
        return screen

    def _tick(self, now_ms, unix):
        self.now_ms = now_ms
        if unix:
            self.unix = unix
        if self.cashier is not None and self.state != _BOOKING:
            idle_ms = self.settings.idle_logout_s * 1000
            if ticks_diff(now_ms, self.last_activity) >= idle_ms:
                self.logout(_text(_T_IDLE_LOGGED_OUT))
                return
        if self.state == _RESULT:
            if ticks_diff(now_ms, self.result_since) >= self.settings.result_timeout_s * 1000:
                self.to_merchants()
        if self.locked_until is not None and ticks_diff(self.locked_until, now_ms) <= 0:
            self.locked_until = None
            if self.keep_lockout is not None:
                self.keep_lockout(self)

    # --- verbs: how the screens (and pos.functions) move the terminal ---------------------

    def go(self, state, merchant=None):
        """Show another screen (on its first page), for merchant if one is given."""
        self.state = state
        self.page = 0
        if merchant is not None:
            self.merchant = merchant

    def say(self, message, beep="error"):
        """A word on the message row, with a beep: an error beep, refusing what was asked,
        unless told otherwise (None: no beep)."""
        self.message = message
        if beep:
            self.effects.append(("beep", beep))

    def edit(self, entry, key, limit, empty=None):
        """The key rule every entry screen shares (a DigitBuffer or an AmountEntry): a digit
        is typed unless it passes limit (refused with a beep), B deletes, * clears what is
        typed, # commits; # with nothing typed says `empty` ("Type a number" by default).
        Returns what happened (pos.states); the screen itself acts only on _DONE, _BACK (*
        with nothing typed) and _OTHER (its own keys)."""
        if key >= "0" and key <= "9":
            if entry.push(key, limit):
                return _EDITED
            self.effects.append(("beep", "error"))
            return _REFUSED
        if key == "B":
            entry.backspace()
            return _EDITED
        if key == "*":
            if not entry.length:
                return _BACK
            entry.wipe()
            return _EDITED
        if key == "#":
            if entry.length:
                return _DONE
            self.message = empty or _text(_T_TYPE_A_NUMBER)
            return _EMPTY
        return _OTHER

    def book(self, record):
        if record.kind < SETTLEMENT:
            # A void or refund from the function menu needs no more of it (its result is
            # this class's screen): the menu's code leaves the heap before the booking's
            # DUKPT step asks for its cipher, a 320-byte block (a Z's report needs it).
            self._close_functions()
        self.booking = record
        self.state = _BOOKING
        self.effects.append(("book", record))

    def to_merchants(self):
        self._wipe_payment()
        self.entry.wipe()
        self.merchant = None
        self.result = None
        self.go(_MERCHANTS)
        self._close_functions()

    def open_menu(self):
        """Key A: load the function menu (pos.functions) for as long as it is in use. If
        its code does not fit in the heap even after a collection, say so and stay."""
        if self.functions is None:
            try:
                from pos.functions import Functions
            except MemoryError:
                unload("functions")  # collects, too
                try:
                    from pos.functions import Functions
                except MemoryError:
                    unload("functions")
                    self.say(_text(_T_LOW_MEMORY))
                    return
            self.functions = Functions(self)
        self._wipe_payment()
        self.entry.wipe()
        self.merchant = None
        self.state = _MENU

    def _close_functions(self):
        if self.functions is not None:
            self.functions.close()  # the item's module (pos.menu_*) in use, if any
            self.functions = None
            unload("functions")

    def logout(self, message):
        # An unusual amount left without a supervisor (idle logout, lockout) is declined,
        # and the decline booked all the same: its "book" effect goes last, as the runner
        # wants, after the logout.
        decline = None
        if self.state == _SALE_SUPERVISOR:
            self._book_sale(refused=True)
            decline = self.effects.pop()
        self._wipe_payment()
        self.entry.wipe()
        self.cashier = None
        self.merchant = None
        self.allowed = []
        self.state = _LOGIN
        self.message = message
        self._close_functions()
        if decline is not None:
            self.effects.append(decline)

    def flags(self):
        return 0 if self.link_up else FLAG_OFFLINE

    def now(self):
        return self.unix if is_set(self.unix) else 0

    # --- config error ---------------------------------------------------------------------

    def _draw_config_error(self):
        screen = self.screen
        screen.put(1, _text(_T_CONFIG_ERROR if self.config_fault else _T_TERMINAL_FAULT))
        screen.put(2, _text(_T_NOT_SELLING))
        text = str(self.config_error)
        for row in range(3, 7):
            start = (row - 3) * 16
            if start < len(text):
                screen.put(row, text[start : start + 16])
        screen.put(HINT, _text(_T_CALL_OPERATOR))
        screen.focus = 1

    # --- login, PINs and lockout ----------------------------------------------------------

    def locked(self):
        return self.locked_until is not None and ticks_diff(self.locked_until, self.now_ms) > 0

    def pin_key(self, key):
        """A PIN screen's keys: returns the PIN (text) on #, _BACK on * with nothing typed,
        else None."""
        entry = self.entry
        outcome = self.edit(entry, key, _PIN_MAX, _text(_T_PIN_TOO_SHORT))
        if outcome == _BACK:
            return _BACK
        if outcome != _DONE:
            return None
        if entry.length < _PIN_MIN:
            self.message = _text(_T_PIN_TOO_SHORT)
            return None
        pin = bytes(entry.view()).decode()
        entry.wipe()
        # Counted wrong, and kept, before it is checked: a power cut timed between a wrong
        # PIN and the write of its count would otherwise be a free try (issue 13).
        self.wrong_pins += 1
        if self.keep_lockout is not None and not self.keep_lockout(self):
            self.wrong_pins -= 1  # not counted on flash (the heap was short): not checked
            self.say(_text(_T_LOW_MEMORY))
            return None
        return pin

    def supervisor_key(self, key, merchant_number=0):
        """A supervisor PIN screen's keys (an unusual amount's, a refund's, a Z's): returns
        the supervisor once one's PIN is in (one assigned to merchant_number, unless 0),
        _BACK on * with nothing typed, else None. A cashier's PIN, a supervisor's for
        another merchant, or (four_eyes) the logged-in supervisor's own is a known PIN: it
        is refused with a word, and only unknown PINs count towards the lockout."""
        if self.locked():
            return None
        pin = self.pin_key(key)
        if pin is None or pin == _BACK:
            return pin
        person = self.cashiers.by_pin(pin)
        if person is None:
            self.wrong_pin()
            return None
        # A known PIN: not a wrong try after all (and all tries forgotten if it approves).
        self.wrong_pins -= 1
        approver = None
        if not person.is_supervisor():
            self.say(_text(_T_NOT_A_SUPERVISOR))
        elif merchant_number and not person.may_use(merchant_number):
            self.say(_text(_T_NOT_ASSIGNED))
        elif self.settings.four_eyes and person.number == self.cashier.number:
            self.say(_text(_T_NEEDS_2ND_PERSON))
        else:
            self.wrong_pins = 0
            approver = person
        if self.keep_lockout is not None:
            self.keep_lockout(self)
        return approver

    def wrong_pin(self):
        """A PIN no one has (pin_key has counted it already)."""
        self.effects.append(("beep", "error"))
        if self.wrong_pins < _MAX_WRONG_PINS:
            self.message = "Wrong PIN %d left" % (_MAX_WRONG_PINS - self.wrong_pins)
            return
        self.wrong_pins = 0
        self.lock_count += 1
        lock_s = self.settings.lockout_base_s << (self.lock_count - 1)
        if lock_s > _LOCKOUT_MAX_S:
            lock_s = _LOCKOUT_MAX_S
        self.locked_until = self.now_ms + lock_s * 1000
        if self.keep_lockout is not None:
            self.keep_lockout(self)
        self.logout(None)

    def _login_key(self, key):
        if self.locked():
            return
        pin = self.pin_key(key)
        if pin is None or pin == _BACK:
            return
        cashier = self.cashiers.by_pin(pin)
        if cashier is None:
            self.wrong_pin()
            return
        self.wrong_pins = 0
        self.lock_count = 0
        if self.keep_lockout is not None:
            self.keep_lockout(self)
        self.cashier = cashier
        self.allowed = [m for m in self.merchants if cashier.may_use(m.number)]
        self.effects.append(("beep", "ok"))
        self.to_merchants()

    def _draw_login(self):
        screen = self.screen
        if self.locked():
            screen.put(2, _text(_T_LOGIN_LOCKED))
            seconds = (ticks_diff(self.locked_until, self.now_ms) + 999) // 1000
            screen.put(3, _text(_T_WAIT))
            screen.put_digits(3, seconds, 0, 15)
            screen.put(3, _text(_T_S), 15)
        else:
            screen.put(2, _text(_T_CASHIER_PIN))
            self.draw_masked(3, self.entry.length)
            screen.put(HINT, _text(_T_OK_B_DEL))
        screen.focus = 2

    def draw_masked(self, row, count):
        for col in range(count):
            self.screen.buf[row * 16 + col] = 42  # "*"

    # --- merchant menu (also picks the merchant of an X or Z) -----------------------------

    def _supervisor_may_use(self, number):
        """A Z needs the supervisor who authorised it to be assigned to the merchant too."""
        functions = self.functions
        if self.state != _PICK_MERCHANT or functions.supervisor is None:
            return True
        return functions.supervisor.may_use(number)

    def _pages(self, count, rows):
        return (count + rows - 1) // rows if count else 1

    def _merchant_key(self, key):
        outcome = self.edit(self.entry, key, 2)
        if outcome == _BACK:
            if self.state == _PICK_MERCHANT:
                self.open_menu()
            else:
                self.logout(_text(_T_LOGGED_OUT))
        elif outcome == _DONE:
            number = int(bytes(self.entry.view()).decode())
            self.entry.wipe()
            merchant = self.merchants.get(number)
            if merchant is None:
                self.message = "No merchant %d" % number
            elif not self.cashier.may_use(number) or not self._supervisor_may_use(number):
                self.say(_text(_T_NOT_ASSIGNED))
            elif self.state == _MERCHANTS:
                self.amount.wipe()
                self.go(_AMOUNT, merchant)
            else:
                self.functions.picked(merchant)
        elif key == "C":
            if self.page > 0:
                self.page -= 1
        elif key == "D":
            if self.page + 1 < self._pages(len(self.allowed), self.settings.menu_rows):
                self.page += 1
        elif key == "A" and self.state == _MERCHANTS:
            self.open_menu()

    def _draw_merchants(self):
        screen = self.screen
        rows = self.settings.menu_rows
        if self.state == _PICK_MERCHANT:
            x_report = self.functions.after_pick == _REPORT_VIEW
            screen.put(TITLE, _text(_T_X_REPORT) if x_report else _text(_T_Z_SETTLE))
        else:
            screen.put(TITLE, _text(_T_MERCHANT))
        screen.put(TITLE, self.entry.view(), right=True)
        first = self.page * rows
        # Menu numbers take one column while they are all below 10, else two.
        width = 1 if not self.allowed or self.allowed[-1].number < 10 else 2
        for row in range(rows):
            index = first + row
            if index >= len(self.allowed):
                break
            merchant = self.allowed[index]
            screen.put_digits(row + 1, merchant.number, 0, width)
            screen.put(row + 1, merchant.name, width + 1)
        screen.put(
            HINT, _text(_T_OK_C_D_PG_OUT) if self.state == _MERCHANTS else _text(_T_OK_C_D_BACK)
        )
        screen.focus = 1

    # --- amount (of a sale, or of a refund: pos.functions checks that one) ---------------

    def _amount_key(self, key):
        merchant = self.merchant
        refund = self.state == _REFUND_AMOUNT
        # The merchant's cap refuses the digit that would pass it, as it is typed.
        cap = merchant.limit(_L_MAX_REFUND_MINOR if refund else _L_MAX_SALE_MINOR)
        if cap > MAX_AMOUNT_MINOR:
            cap = MAX_AMOUNT_MINOR
        outcome = self.edit(self.amount, key, cap, _text(_T_ENTER_AN_AMOUNT))
        if outcome == _REFUSED:
            self.message = "Max " + format_minor(cap, merchant.exponent)
        elif outcome == _BACK:
            if refund:
                self.go(_REFUND_RECEIPT)
            else:
                self.to_merchants()
        elif outcome == _DONE:
            if refund:
                self.functions.refund_amount(self.amount.amount_minor)
            else:
                self.go(_METHOD)
        elif key == "A" and not refund:
            self.open_menu()

    def _draw_amount(self):
        screen = self.screen
        screen.put(2, _text(_T_SALE_AMOUNT) if self.state == _AMOUNT else _text(_T_REFUND_AMOUNT))
        self.draw_amount_line(3)
        screen.put(HINT, _text(_T_OK_B_DEL_BACK))
        screen.focus = 2

    def draw_amount_line(self, row):
        merchant = self.merchant
        value = self.amount.amount_minor
        self.screen.put(row, merchant.currency_code)
        self.screen.put_digits(row, value, merchant.exponent)


class Terminal(_Terminal):
    """One method per event kind, then the screens: each screen's key handler (_x_key) sits
    next to its drawing (_draw_x). Entry screens share one key rule (edit); pos.functions
    moves the terminal through its verbs (go, say, book, to_merchants, open_menu)."""

    # --- method ---------------------------------------------------------------------------

    def _method_key(self, key):
        if key == "*":
            self.go(_AMOUNT)
            return
        if key < "1" or key > "4":
            return
        self.method = ord(key) - 48
        self._wipe_card()
        if self.method == CASH:
            self.go(_CONFIRM)
        elif self.method == MOBILE:
            self.go(_MOBILE_CODE)
        else:
            self.go(_CARD)

    def _draw_method(self):
        screen = self.screen
        self.draw_amount_line(1)
        screen.put(2, _text(_T_1_CREDIT_2_DEBIT))
        screen.put(3, _text(_T_3_MOBILE_4_CASH))
        screen.put(HINT, _text(_T_1_4_PICK_BACK))
        screen.focus = 2

    # --- card number or payment code: read, scanned or keyed -----------------------------

    def _card_key(self, key):
        limit = MAX_CARD_DIGITS if self.state == _CARD else MAX_CODE_DIGITS
        outcome = self.edit(self.card, key, limit)
        if outcome == _BACK:
            self.go(_METHOD)
        elif outcome == _DONE:
            self._take_card_data(True)

    def _card_data(self, kind, text):
        if (kind == "card" and self.state != _CARD) or (
            kind == "scan" and self.state != _MOBILE_CODE
        ):
            self.message = _text(_T_PICK_METHOD_1ST)
            return
        if not self.card.set(text):
            self.message = _text(_T_READ_FAILED)
            return
        self._take_card_data(False)

    def _take_card_data(self, keyed):
        """Check the digits, keep only the token and the last four, wipe the buffer."""
        card = self.card
        if self.state == _CARD:
            ok = MIN_CARD_DIGITS <= card.length <= MAX_CARD_DIGITS and luhn_ok(card.view())
            failure = _text(_T_INVALID_CARD_NO)
        else:
            ok = MIN_CODE_DIGITS <= card.length <= MAX_CODE_DIGITS
            failure = _text(_T_CODE_INVALID)
        if not ok:
            card.wipe()
            self.say(failure)
            return
        self._tokenizer.token(card.view(), self.token)
        self.last_four = card.last_four()
        card.wipe()
        self.has_token = True
        self.keyed = keyed
        self.go(_CONFIRM)

    def _wipe_card(self):
        self.card.wipe()
        for i in range(TOKEN_SIZE):
            self.token[i] = 0
        self.has_token = False
        self.keyed = False
        self.last_four = LAST_FOUR_NONE

    def _wipe_payment(self):
        self._wipe_card()
        self.amount.wipe()
        self.method = 0
        self.booking = None

    def _draw_card(self):
        screen = self.screen
        self.draw_amount_line(1)
        card = self.state == _CARD
        screen.put(2, _text(_T_READ_OR_KEY_CARD) if card else _text(_T_SCAN_OR_KEY_CODE))
        # The digits keyed so far, in groups of four, twelve to a row (rows 3 and 4), for the
        # cashier to check against the card: only this screen shows them, and only until #
        # (then the buffer is wiped and the confirm screen shows the last four).
        buf = screen.buf
        digits = self.card.buf
        for i in range(self.card.length):
            place = i % 12
            buf[(3 + i // 12) * 16 + place + place // 4] = digits[i]
        screen.put(HINT, _text(_T_OK_B_DEL_BACK))
        # A 20x4 LCD shows two body rows: both rows of digits once there are more than 12.
        screen.focus = 2 if self.card.length <= 12 else 3

    def draw_card_line(self, row, method, last_four):
        screen = self.screen
        screen.put(row, _text(_T_CREDIT_CARD + method - 1))  # methods 1-4, in order
        if last_four != LAST_FOUR_NONE:
            screen.put(row + 1, _text(_T_STARS))
            screen.put_digits(row + 1, last_four, 0, 9, 4)

    # --- confirm, the supervisor for an unusual amount, booking ---------------------------

    def _confirm_key(self, key):
        if key == "*":
            self._wipe_card()
            self.go(_METHOD)
        elif key == "#":
            self._book_sale()

    def _draw_confirm(self):
        screen = self.screen
        screen.put(1, _text(_T_CONFIRM_SALE))
        self.draw_amount_line(2)
        self.draw_card_line(3, self.method, self.last_four)
        screen.put(HINT, _text(_T_OK_BACK))
        screen.focus = 1

    def _sale_supervisor_key(self, key):
        """An unusual amount: a supervisor assigned to the merchant approves it with a PIN;
        * with nothing typed declines it (and the decline is recorded)."""
        supervisor = self.supervisor_key(key, self.merchant.number)
        if supervisor == _BACK:
            self._book_sale(refused=True)
        elif supervisor is not None:
            self._book_sale(supervised=supervisor.number)

    def _draw_sale_supervisor(self):
        screen = self.screen
        self.draw_amount_line(1)
        screen.put(2, _text(_T_UNUSUAL_AMOUNT))
        screen.put(3, _text(_T_SUPERVISOR_PIN))
        self.draw_masked(4, self.entry.length)
        screen.put(HINT, _text(_T_OK_DECLINE))
        screen.focus = 2

    def _book_sale(self, supervised=0, refused=False):
        """supervised: the number of the supervisor who approved an unusual amount."""
        merchant = self.merchant
        value = self.amount.amount_minor
        if refused:
            reason = UNUSUAL_AMOUNT
        else:
            reason = self.risk.check_sale(self, merchant, value, supervised)
            if reason == UNUSUAL_AMOUNT:
                self.entry.wipe()
                self.state = _SALE_SUPERVISOR
                self.effects.append(("beep", "error"))
                return
        record = self.reused_record
        record.kind = SALE if reason == APPROVED else DECLINE
        record.merchant = merchant.number
        record.amount_minor = value
        record.currency = merchant.currency_numeric
        record.method = self.method
        record.cashier = self.cashier.number
        record.time = self.now()
        record.reference = 0
        record.reason = reason
        record.flags = self.flags() | (FLAG_KEYED if self.keyed else 0)
        if supervised and reason == APPROVED:  # kept as approved over the anomaly rule
            record.reason = UNUSUAL_AMOUNT
            record.flags |= FLAG_SUPERVISOR
            record.reference = supervised  # who approved it (a sale has no original)
        if self.has_token:
            record.token = bytes(self.token)  # a copy: a logout wipes self.token at once
            record.last_four = self.last_four
        else:
            record.token = bytes(TOKEN_SIZE)
            record.last_four = LAST_FOUR_NONE
        self.book(record)

    # --- result ---------------------------------------------------------------------------

    def _to_result(self):
        """The ledger answered: the record being booked, now on the _RESULT screen (None if
        no booking was waiting for that answer)."""
        record = self.booking
        if self.state != _BOOKING or record is None:
            return None
        self._wipe_card()
        self.state = _RESULT
        self.result_since = self.now_ms
        return record

    def _booked(self, counter):
        record = self._to_result()
        if record is None:
            return
        merchant = self.merchant
        settings = self.settings
        code = self.ledger.approval_code(counter)
        offline = bool(record.flags & FLAG_OFFLINE)
        if record.kind == DECLINE:
            self.result = (_text(_T_DECLINED), reason_text(record.reason))
            self.effects.append(("beep", "error"))
            return
        if record.kind >= SETTLEMENT:  # a Z, or a block lifted (pos.functions)
            self.result = self.functions.settled(record)
            return
        headline = _text(_T_APPROVED)
        if record.kind == VOID:
            headline = _text(_T_VOIDED)
        elif record.kind == REFUND:
            headline = _text(_T_REFUNDED)
        self.result = (headline, code)
        copies = (CUSTOMER_COPY,) if record.method == CASH else (MERCHANT_COPY, CUSTOMER_COPY)
        for copy in copies:
            lines = sale_receipt(
                record,
                merchant,
                settings.terminal_id,
                code,
                offline,
                copy,
                settings.receipt_columns,
                settings.utc_offset_min,
            )
            self.effects.append(("print", lines))
        self.effects.append(("beep", "ok"))

    def _book_failed(self, message):
        record = self._to_result()
        if record is None:
            return
        if record.kind == DECLINE:
            self.result = (_text(_T_DECLINED), reason_text(record.reason))
        else:
            self.result = (_NOT_TAKEN, message)
        self.effects.append(("beep", "error"))

    def _draw_result(self):
        screen = self.screen
        headline, detail = self.result
        screen.put(1, headline)
        record = self.booking
        if record is not None and record.kind < SETTLEMENT:
            self.screen.put(2, self.merchant.currency_code)
            self.screen.put_digits(2, record.amount_minor, self.merchant.exponent)
        if (
            record is not None
            and record.kind in (SALE, VOID, REFUND)
            and headline is not _NOT_TAKEN
        ):
            screen.put(3, _text(_T_CODE))
            screen.put(3, detail, right=True)
            screen.put(4, _text(_T_RECEIPT))
            screen.put_digits(4, record.receipt, 0)
            if record.flags & FLAG_OFFLINE:
                screen.put(5, _text(_T_OFFLINE))
        else:
            screen.put(3, detail)
        screen.put(HINT, _text(_T_NEXT))
        screen.focus = 1
