"""The terminal's state machine: logical events in, the screen and a list of effects out.

Events are tuples:
    ("key", "0".."9" | "#" | "*" | "A" | "B" | "C" | "D")
    ("card", "4111111111111111")     a card read        ("scan", "123456789012") a QR scan
    ("tick", now_ms, unix_seconds)   time passes (unix_seconds 0 while the clock is not set)
    ("link", True | False)           the uplink's state
    ("booked", counter) | ("book_failed", message)   the outcome of a "book" effect
    ("synced", True | False)         the outcome of an "upload" effect
Effects (terminal.effects, refilled by every handle()) are tuples:
    ("book", record)   store the record durably (Ledger.book), then answer booked/book_failed
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
from pos.money import AmountEntry, format_minor
from pos.receipt import CUSTOMER_COPY, MERCHANT_COPY, sale_receipt
from pos.record import (
    CASH,
    DECLINE,
    FLAG_KEYED,
    FLAG_OFFLINE,
    LAST_FOUR_NONE,
    MOBILE,
    REFUND,
    SALE,
    SETTLEMENT,
    VOID,
    Record,
)
from pos.risk import APPROVED, reason_text
from pos.screen import HINT, TITLE, Screen

# States.
CONFIG_ERROR = const(0)
LOGIN = const(1)
MERCHANTS = const(2)
AMOUNT = const(3)
METHOD = const(4)
CARD = const(5)
MOBILE_CODE = const(6)
CONFIRM = const(7)
BOOKING = const(8)
RESULT = const(9)
MENU = const(10)
SUPERVISOR_PIN = const(11)
REFUND_RECEIPT = const(12)
REFUND_AMOUNT = const(13)
REFUND_CONFIRM = const(14)
VOID_CONFIRM = const(15)
PICK_MERCHANT = const(16)
REPORT_VIEW = const(17)
Z_CONFIRM = const(18)
STATUS = const(19)

_MESSAGE_ROW = const(6)
_PIN_MIN = const(4)
_PIN_MAX = const(8)
_MAX_WRONG_PINS = const(3)
_LOCKOUT_MAX_S = const(86400)

_METHOD_TEXT = (b"", b"Credit card", b"Debit card", b"Mobile/QR", b"Cash")


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
    ):
        self.terminal_id = terminal_id
        self.card_token_key = card_token_key
        self.idle_logout_s = idle_logout_s
        self.result_timeout_s = result_timeout_s
        self.lockout_base_s = lockout_base_s
        self.receipt_columns = receipt_columns
        self.utc_offset_min = utc_offset_min
        self.menu_rows = menu_rows


class Terminal:
    def __init__(
        self,
        settings,
        merchants,
        cashiers,
        ledger,
        tokenizer,
        risk,
        config_error=None,
        fault_title=b"CONFIG ERROR",
    ):
        self.settings = settings
        self.merchants = merchants
        self.cashiers = cashiers
        self.ledger = ledger
        self.risk = risk
        self._tokenizer = tokenizer
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
        self.last_activity = 0
        self.result_since = 0
        self.result = None  # (headline, detail rows) of the RESULT screen
        self.functions = None  # pos.functions.Functions while the function menu is in use
        self.booking = None  # the record handed to the ledger, until it answers
        self._record = Record(SALE, 1, 0, 0, method=CASH)  # reused for every sale
        self.config_error = config_error  # any start-up fault: the terminal will not sell
        self.fault_title = fault_title
        self.state = CONFIG_ERROR if config_error else LOGIN
        self.draw()

    # --- events --------------------------------------------------------------------------

    def handle(self, event):
        """Take one event; returns (screen, effects)."""
        self.effects.clear()
        kind = event[0]
        if kind == "key":
            self.last_activity = self.now_ms
            previous = self.message
            self.message = None
            self._key(event[1], previous)
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
        elif kind == "book_failed":
            self._book_failed(event[1])
        elif kind == "synced":
            self.message = b"Sync done" if event[1] else "Sync failed"
        self.draw()
        return self.screen, self.effects

    def _key(self, key, previous_message):
        state = self.state
        if state == CONFIG_ERROR or state == BOOKING:
            return
        if state == LOGIN:
            self._login_key(key)
        elif state == MERCHANTS or state == PICK_MERCHANT:
            self._merchant_key(key)
        elif state == AMOUNT or state == REFUND_AMOUNT:
            self._amount_key(key)
        elif state == METHOD:
            self._method_key(key)
        elif state == CARD or state == MOBILE_CODE:
            self._card_key(key)
        elif state == CONFIRM:
            self._confirm_key(key)
        elif state == RESULT:
            if key == "#" or key == "*":
                self.to_merchants()
        elif self.functions is not None:
            self.functions.key(key)

    def _tick(self, now_ms, unix):
        self.now_ms = now_ms
        if unix:
            self.unix = unix
        if self.cashier is not None and self.state != BOOKING:
            idle_ms = self.settings.idle_logout_s * 1000
            if ticks_diff(now_ms, self.last_activity) >= idle_ms:
                self.logout(b"Idle: logged out")
                return
        if self.state == RESULT:
            if ticks_diff(now_ms, self.result_since) >= self.settings.result_timeout_s * 1000:
                self.to_merchants()
        if self.locked_until is not None and ticks_diff(self.locked_until, now_ms) <= 0:
            self.locked_until = None

    # --- login and lockout ----------------------------------------------------------------

    def locked(self):
        return self.locked_until is not None and ticks_diff(self.locked_until, self.now_ms) > 0

    def pin_entry_key(self, key):
        """Shared by login and supervisor PINs; returns the PIN text on # (else None)."""
        if key >= "0" and key <= "9":
            self.entry.push(key)
        elif key == "B":
            self.entry.backspace()
        elif key == "#":
            if self.entry.length < _PIN_MIN:
                self.message = b"PIN too short"
                return None
            pin = bytes(self.entry.view()).decode()
            self.entry.wipe()
            return pin
        return None

    def wrong_pin(self):
        self.wrong_pins += 1
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
        self.logout(None)

    def _login_key(self, key):
        if self.locked():
            return
        if key == "*":
            self.entry.wipe()
            return
        pin = self.pin_entry_key(key)
        if pin is None:
            return
        cashier = self.cashiers.by_pin(pin)
        if cashier is None:
            self.wrong_pin()
            return
        self.wrong_pins = 0
        self.lock_count = 0
        self.cashier = cashier
        self.allowed = [m for m in self.merchants if cashier.may_use(m.number)]
        self.effects.append(("beep", "ok"))
        self.to_merchants()

    def logout(self, message):
        self._wipe_payment()
        self.entry.wipe()
        self.cashier = None
        self.merchant = None
        self.allowed = []
        self.state = LOGIN
        self.message = message
        self._close_functions()

    # --- merchant menu --------------------------------------------------------------------

    def to_merchants(self):
        self._wipe_payment()
        self.entry.wipe()
        self.merchant = None
        self.result = None
        self.page = 0
        self.state = MERCHANTS
        self._close_functions()

    def _supervisor_may_use(self, number):
        """A Z needs the supervisor who authorised it to be assigned to the merchant too."""
        functions = self.functions
        if self.state != PICK_MERCHANT or functions.supervisor is None:
            return True
        return functions.supervisor.may_use(number)

    def open_menu(self):
        """Key A: load the function menu (pos.functions) for as long as it is in use. If
        its code does not fit in the heap even after a collection, say so and stay."""
        if self.functions is None:
            try:
                from pos.functions import Functions
            except MemoryError:
                import gc

                unload("pos.functions")
                gc.collect()
                try:
                    from pos.functions import Functions
                except MemoryError:
                    unload("pos.functions")
                    self.message = b"Low memory"
                    self.effects.append(("beep", "error"))
                    return
            self.functions = Functions(self)
        self._wipe_payment()
        self.entry.wipe()
        self.merchant = None
        self.state = MENU

    def _close_functions(self):
        if self.functions is not None:
            self.functions = None
            unload("pos.functions")

    def _pages(self, count, rows):
        return (count + rows - 1) // rows if count else 1

    def _merchant_key(self, key):
        rows = self.settings.menu_rows
        if key >= "0" and key <= "9":
            if self.entry.length < 2:
                self.entry.push(key)
        elif key == "B":
            self.entry.backspace()
        elif key == "C":
            if self.page > 0:
                self.page -= 1
        elif key == "D":
            if self.page + 1 < self._pages(len(self.allowed), rows):
                self.page += 1
        elif key == "A" and self.state == MERCHANTS:
            self.open_menu()
        elif key == "*":
            if self.entry.length:
                self.entry.wipe()
            elif self.state == PICK_MERCHANT:
                self.open_menu()
            else:
                self.logout(b"Logged out")
        elif key == "#":
            if not self.entry.length:
                self.message = b"Type a number"
                return
            number = int(bytes(self.entry.view()).decode())
            self.entry.wipe()
            merchant = self.merchants.get(number)
            if merchant is None:
                self.message = "No merchant %d" % number
            elif not self.cashier.may_use(number) or not self._supervisor_may_use(number):
                self.message = b"Not assigned"
                self.effects.append(("beep", "error"))
            elif self.state == MERCHANTS:
                self.merchant = merchant
                self.amount.clear()
                self.state = AMOUNT
            else:
                self.functions.picked(merchant)

    # --- sale -----------------------------------------------------------------------------

    def _amount_key(self, key):
        amount = self.amount
        if key >= "0" and key <= "9":
            amount.push_digit(ord(key) - 48)
        elif key == "B":
            amount.backspace()
        elif key == "*":
            if amount.amount_minor:
                amount.clear()
            elif self.state == REFUND_AMOUNT:
                self.state = REFUND_RECEIPT
            else:
                self.to_merchants()
        elif key == "A" and self.state == AMOUNT:
            self.open_menu()
        elif key == "#":
            value = amount.amount_minor
            merchant = self.merchant
            if not value:
                self.message = b"Enter an amount"
            elif self.state == AMOUNT:
                if value > merchant.limit("max_sale_minor"):
                    self.message = "Max " + format_minor(
                        merchant.limit("max_sale_minor"), merchant.exponent
                    )
                    self.effects.append(("beep", "error"))
                else:
                    self.state = METHOD
            else:
                self.functions.refund_amount(value)

    def _method_key(self, key):
        if key == "*":
            self.state = AMOUNT
            return
        if key < "1" or key > "4":
            return
        self.method = ord(key) - 48
        self._wipe_card()
        if self.method == CASH:
            self.state = CONFIRM
        elif self.method == MOBILE:
            self.state = MOBILE_CODE
        else:
            self.state = CARD

    def _card_key(self, key):
        card = self.card
        limit = MAX_CARD_DIGITS if self.state == CARD else MAX_CODE_DIGITS
        if key >= "0" and key <= "9":
            if card.length < limit:
                card.push(key)
        elif key == "B":
            card.backspace()
        elif key == "*":
            if card.length:
                card.wipe()
            else:
                self.state = METHOD
        elif key == "#":
            self._take_card_data(True)

    def _card_data(self, kind, text):
        if (kind == "card" and self.state != CARD) or (
            kind == "scan" and self.state != MOBILE_CODE
        ):
            self.message = b"Pick method 1st"
            return
        if not self.card.set(text):
            self.message = b"Read failed"
            return
        self._take_card_data(False)

    def _take_card_data(self, keyed):
        """Check the digits, keep only the token and the last four, wipe the buffer."""
        card = self.card
        if self.state == CARD:
            ok = MIN_CARD_DIGITS <= card.length <= MAX_CARD_DIGITS and luhn_ok(card.view())
            failure = "Invalid card no."
        else:
            ok = MIN_CODE_DIGITS <= card.length <= MAX_CODE_DIGITS
            failure = "Code invalid"
        if not ok:
            card.wipe()
            self.message = failure
            self.effects.append(("beep", "error"))
            return
        self._tokenizer.token(card.view(), self.token)
        self.last_four = card.last_four()
        card.wipe()
        self.has_token = True
        self.keyed = keyed
        self.state = CONFIRM

    def _wipe_card(self):
        self.card.wipe()
        for i in range(TOKEN_SIZE):
            self.token[i] = 0
        self.has_token = False
        self.keyed = False
        self.last_four = LAST_FOUR_NONE

    def _wipe_payment(self):
        self._wipe_card()
        self.amount.clear()
        self.method = 0
        self.booking = None

    def _confirm_key(self, key):
        if key == "*":
            self._wipe_card()
            self.state = METHOD
        elif key == "#":
            self._book_sale()

    def flags(self):
        return 0 if self.link_up else FLAG_OFFLINE

    def now(self):
        return self.unix if is_set(self.unix) else 0

    def _book_sale(self):
        merchant = self.merchant
        value = self.amount.amount_minor
        reason = self.risk.check_sale(
            merchant, value, self.token if self.has_token else None, self.link_up
        )
        record = self._record
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
        if self.has_token:
            record.token = self.token
            record.last_four = self.last_four
        else:
            record.token = bytes(TOKEN_SIZE)
            record.last_four = LAST_FOUR_NONE
        self.book(record)

    def book(self, record):
        self.booking = record
        self.state = BOOKING
        self.effects.append(("book", record))

    def _to_result(self):
        """The ledger answered: the record being booked, now on the RESULT screen (None if
        no booking was waiting for that answer)."""
        record = self.booking
        if self.state != BOOKING or record is None:
            return None
        self._wipe_card()
        self.state = RESULT
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
            self.result = (b"DECLINED", reason_text(record.reason))
            self.effects.append(("beep", "error"))
            return
        if record.kind == SETTLEMENT:
            self.functions.settled(record)
            return
        headline = b"APPROVED"
        if record.kind == VOID:
            headline = b"VOIDED"
        elif record.kind == REFUND:
            headline = b"REFUNDED"
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
            self.result = (b"DECLINED", reason_text(record.reason))
        else:
            self.result = (b"NOT TAKEN", message)
        self.effects.append(("beep", "error"))

    # --- drawing --------------------------------------------------------------------------

    def draw(self):
        screen = self.screen
        screen.clear()
        state = self.state
        title = self.merchant.label if self.merchant is not None else b"OneTill"
        screen.put(TITLE, title)
        if state == CONFIG_ERROR:
            self._draw_config_error()
        elif state == LOGIN:
            self._draw_login()
        elif state == MERCHANTS or state == PICK_MERCHANT:
            self._draw_merchants()
        elif state == AMOUNT or state == REFUND_AMOUNT:
            self._draw_amount()
        elif state == METHOD:
            self.draw_amount_line(1)
            screen.put(2, b"1 Credit 2 Debit")
            screen.put(3, b"3 Mobile 4 Cash")
            screen.put(HINT, b"1-4 pick  *back")
            screen.focus = 2
        elif state == CARD or state == MOBILE_CODE:
            self._draw_card()
        elif state == CONFIRM:
            self._draw_confirm()
        elif state == BOOKING:
            self.draw_amount_line(1)
            screen.put(3, b"Processing...")
            screen.focus = 2
        elif state == RESULT:
            self._draw_result()
        elif self.functions is not None:
            self.functions.draw(screen)
        if self.message:
            screen.put(_MESSAGE_ROW, self.message)
        return screen

    def _draw_config_error(self):
        screen = self.screen
        screen.put(1, self.fault_title)
        screen.put(2, b"Not selling.")
        text = str(self.config_error)
        for row in range(3, 7):
            start = (row - 3) * 16
            if start < len(text):
                screen.put(row, text[start : start + 16])
        screen.put(HINT, b"Call operator")
        screen.focus = 1

    def _draw_login(self):
        screen = self.screen
        if self.locked():
            screen.put(2, b"Login locked")
            seconds = (ticks_diff(self.locked_until, self.now_ms) + 999) // 1000
            screen.put(3, b"Wait")
            screen.put_digits(3, seconds, 0, 15)
            screen.put(3, b"s", 15)
        else:
            screen.put(2, b"Cashier PIN")
            self.draw_masked(3, self.entry.length)
            screen.put(HINT, b"#OK B del")
        screen.focus = 2

    def draw_masked(self, row, count):
        for col in range(count):
            self.screen.buf[row * 16 + col] = 42  # "*"

    def _draw_merchants(self):
        screen = self.screen
        rows = self.settings.menu_rows
        if self.state == PICK_MERCHANT:
            x_report = self.functions.after_pick == REPORT_VIEW
            screen.put(TITLE, b"X report" if x_report else b"Z settle")
        else:
            screen.put(TITLE, b"Merchant?")
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
        screen.put(HINT, b"#OK C/D pg *out" if self.state == MERCHANTS else "#OK C/D *back")
        screen.focus = 1

    def draw_amount_line(self, row):
        merchant = self.merchant
        value = self.amount.amount_minor
        self.screen.put(row, merchant.currency_code)
        self.screen.put_digits(row, value, merchant.exponent)

    def _draw_amount(self):
        screen = self.screen
        screen.put(2, b"Sale amount" if self.state == AMOUNT else "Refund amount")
        self.draw_amount_line(3)
        screen.put(HINT, b"#OK B del *back")
        screen.focus = 2

    def _draw_card(self):
        screen = self.screen
        self.draw_amount_line(1)
        screen.put(2, b"Card number" if self.state == CARD else "Payment code")
        # Show how many digits are in, and only the last four of them.
        length = self.card.length
        shown = length if length < 16 else 16
        for col in range(shown):
            position = length - shown + col
            if position >= length - 4:
                screen.buf[3 * 16 + col] = self.card.buf[position]
            else:
                screen.buf[3 * 16 + col] = 42
        screen.put(HINT, b"#OK B del *back")
        screen.focus = 2

    def draw_card_line(self, row, method, last_four):
        screen = self.screen
        screen.put(row, _METHOD_TEXT[method])
        if last_four != LAST_FOUR_NONE:
            screen.put(row + 1, b"****")
            screen.put_digits(row + 1, last_four, 0, 9, 4)

    def _draw_confirm(self):
        screen = self.screen
        screen.put(1, b"Confirm sale")
        self.draw_amount_line(2)
        self.draw_card_line(3, self.method, self.last_four)
        screen.put(HINT, b"#OK *back")
        screen.focus = 1

    def _draw_result(self):
        screen = self.screen
        headline, detail = self.result
        screen.put(1, headline)
        record = self.booking
        if record is not None and record.kind != SETTLEMENT:
            self.screen.put(2, self.merchant.currency_code)
            self.screen.put_digits(2, record.amount_minor, self.merchant.exponent)
        if record is not None and record.kind in (SALE, VOID, REFUND) and headline != b"NOT TAKEN":
            screen.put(3, b"Code")
            screen.put(3, detail, right=True)
            screen.put(4, b"Receipt")
            screen.put_digits(4, record.receipt, 0)
            if record.flags & FLAG_OFFLINE:
                screen.put(5, b"OFFLINE")
        else:
            screen.put(3, detail)
        screen.put(HINT, b"# next")
        screen.focus = 1
