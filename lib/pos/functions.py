"""The terminal's function menu (key A): void, refund, X and Z reports, status, sync, log out,
and (8, not listed on the 8-row screen) lifting a card's automatic block.

Loaded when the cashier presses A and unloaded when they are back at the merchant menu
(pos.compat.unload), so the sale path never carries this code in the heap. Only the menu
and the supervisor PIN live here; each item's screens are a module of their own, loaded
when the item is chosen and unloaded with the menu or when another item is chosen
(pos.menu_refund: void and refund; pos.menu_report: X and Z; pos.menu_status: status;
pos.menu_unblock: a block lifted), so
the heap holds one item's code at a time, in pieces small enough for the holes a day of
sales leaves. It works on the terminal it is given, only through its verbs (go, say, book,
to_merchants, open_menu, edit).
"""

from pos.compat import const, unload

# The screens this menu shows and what Terminal.edit returns: pos.states' numbers as
# private constants, inlined at no heap cost (importing pos.states would load it with
# this module, about 1 KB more). host_tests/test_states.py checks that they match.
_MENU = const(10)
_SUPERVISOR_PIN = const(11)
_REFUND_RECEIPT = const(12)
_REFUND_CONFIRM = const(14)
_VOID_CONFIRM = const(15)
_PICK_MERCHANT = const(16)
_REPORT_VIEW = const(17)
_Z_CONFIRM = const(18)
_STATUS = const(19)
_UNBLOCK_CARD = const(21)
_BLOCK = const(6)  # pos.autoblock's record type
_BACK = const(4)
_TITLE = const(0)  # pos.screen's rows
_HINT = const(7)

# The words this menu shows: 16-byte rows of one bytes constant, as in pos.terminal.
_TEXT = (
    b"1 Void last\0\0\0\0\0"  # 0
    b"2 Refund\0\0\0\0\0\0\0\0"  # 1
    b"3 X report\0\0\0\0\0\0"  # 2
    b"4 Z settle\0\0\0\0\0\0"  # 3
    b"5 Status\0\0\0\0\0\0\0\0"  # 4
    b"6 Sync now\0\0\0\0\0\0"  # 5
    b"Sync started\0\0\0\0"  # 6
    b"Logged out\0\0\0\0\0\0"  # 7
    b"Functions\0\0\0\0\0\0\0"  # 8
    b"7 Log out *back\0"  # 9
    b"Supervisor PIN\0\0"  # 10
    b"#OK *back\0\0\0\0\0\0\0"  # 11
)
_T_1_VOID_LAST = const(0)
_T_SYNC_STARTED = const(6)
_T_LOGGED_OUT = const(7)
_T_FUNCTIONS = const(8)
_T_7_LOG_OUT_BACK = const(9)
_T_SUPERVISOR_PIN = const(10)
_T_OK_BACK = const(11)

# The module that draws each item's screens and takes their keys.
_REFUND_PART = "pos.menu_refund"
_REPORT_PART = "pos.menu_report"
_STATUS_PART = "pos.menu_status"
_UNBLOCK_PART = "pos.menu_unblock"


class Functions:
    """The menu and the supervisor PIN; the item in use (its module, self.part) holds the
    rest. The items keep what they need between screens here (original, report_lines,
    report_merchant, page), as they are modules, not objects."""

    def __init__(self, terminal):
        self.t = terminal
        self.supervisor = None  # who entered a supervisor PIN for this refund, Z or unblock
        self.after_supervisor = 0
        self.after_pick = 0
        self.part = None  # the item's module (pos.menu_*) while one is in use
        self.part_name = None
        self.original = None  # the recent-sale entry a void or refund refers to
        self.report_lines = None
        self.report_merchant = None
        self.page = 0  # of the X report on screen

    def use(self, name):
        """The item's module, loaded (and the previous item's unloaded) if need be."""
        if self.part_name != name:
            self.close()
            self.part = __import__(name, None, None, ("key",))
            self.part_name = name
        return self.part

    def close(self):
        """Unload the item in use (the terminal calls this when the menu closes)."""
        if self.part_name is not None:
            name = self.part_name
            self.part = self.part_name = None
            unload(name)

    def key(self, key):
        state = self.t.state
        if state == _MENU:
            self._menu_key(key)
        elif state == _SUPERVISOR_PIN:
            self._supervisor_key(key)
        elif self.part is not None:
            self.part.key(self, key)

    def draw(self, screen):
        state = self.t.state
        if state == _MENU:
            screen.put(_TITLE, self.text(_T_FUNCTIONS))
            for row in range(6):
                screen.put(row + 1, self.text(_T_1_VOID_LAST + row))  # the six items
            screen.put(_HINT, self.text(_T_7_LOG_OUT_BACK))
        elif state == _SUPERVISOR_PIN:
            screen.put(2, self.text(_T_SUPERVISOR_PIN))
            self.t.draw_masked(3, self.t.entry.length)
            screen.put(_HINT, self.text(_T_OK_BACK))
            screen.focus = 2
        elif self.part is not None:
            self.part.draw(self, screen)

    @staticmethod
    def text(number):
        return memoryview(_TEXT)[number << 4 : (number + 1) << 4]  # row `number`

    # --- the menu -------------------------------------------------------------------------

    def _menu_key(self, key):
        t = self.t
        if key == "*":
            t.to_merchants()
        elif key == "1":
            self.use(_REFUND_PART).start_void(self)
        elif key == "2" or key == "4" or key == "8":
            self.after_supervisor = _PICK_MERCHANT
            if key == "2":
                self.after_supervisor = _REFUND_RECEIPT
            elif key == "8":
                self.after_supervisor = _UNBLOCK_CARD
            self.after_pick = _Z_CONFIRM
            t.go(_SUPERVISOR_PIN)
        elif key == "3":
            self.after_pick = _REPORT_VIEW
            t.go(_PICK_MERCHANT)
        elif key == "5":
            self.use(_STATUS_PART)
            t.go(_STATUS)
        elif key == "6":
            t.effects.append(("upload",))
            t.say(self.text(_T_SYNC_STARTED), None)
        elif key == "7":
            t.logout(self.text(_T_LOGGED_OUT))

    # --- supervisor PIN (a refund, a Z and an unblock need one) ---------------------------

    def _supervisor_key(self, key):
        t = self.t
        supervisor = t.supervisor_key(key)
        if supervisor == _BACK:
            t.open_menu()
        elif supervisor is not None:
            self.supervisor = supervisor
            if self.after_supervisor == _REFUND_RECEIPT:
                self.use(_REFUND_PART)
            elif self.after_supervisor == _UNBLOCK_CARD:
                self.use(_UNBLOCK_PART)
                t.card.wipe()
            t.go(self.after_supervisor)

    # --- what the terminal's own screens hand over ------------------------------------------

    def picked(self, merchant):
        """A merchant chosen (on the terminal's merchant screen) for an X report or a Z."""
        self.use(_REPORT_PART).picked(self, merchant)

    def refund_amount(self, value):
        """The refund amount keyed on the terminal's amount screen."""
        self.use(_REFUND_PART).refund_amount(self, value)

    def settled(self, record):
        """The Z record (or a lifted block's) is stored: the result screen's (headline,
        detail)."""
        part = _UNBLOCK_PART if record.kind == _BLOCK else _REPORT_PART
        return self.use(part).settled(self, record)
