"""The terminal's screens, one number each, and what a key did on an entry screen.

Shared by pos.terminal and pos.functions (the function menu, loaded only while in use), so
neither imports the other for them.
"""

from pos.compat import const

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
SALE_SUPERVISOR = const(20)  # an unusual amount waits for a supervisor's PIN

# What Terminal.edit did with a key on an entry screen (digits, B, * and #); the screen
# acts on DONE, BACK and OTHER only.
EDITED = const(0)  # a digit typed or deleted, the entry cleared, or nothing to delete
REFUSED = const(1)  # a digit past the entry's limit: beeped, nothing changed
EMPTY = const(2)  # # with nothing typed: said so, nothing changed
DONE = const(3)  # # with something typed: the screen takes the entry
BACK = const(4)  # * with nothing typed: the screen goes back
OTHER = const(5)  # not an entry key: the screen's own (A, C, D)
