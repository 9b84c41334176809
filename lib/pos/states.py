"""The terminal's screens, one number each, and what a key did on an entry screen.

The one list of them. pos.terminal, pos.functions and pos.received keep the numbers they
use as private const() copies, which MicroPython inlines at no heap cost, and do not import
this module: its names and table would cost about 1.7 KB of heap while loaded, more than
the function menu can spare. host_tests/test_states.py checks every copy against this list,
and host tests and tools import the names from here.
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
UNBLOCK_CARD = const(21)  # a supervisor keys a card to lift its automatic block

# What Terminal.edit did with a key on an entry screen (digits, B, * and #); the screen
# acts on DONE, BACK and OTHER only.
EDITED = const(0)  # a digit typed or deleted, the entry cleared, or nothing to delete
REFUSED = const(1)  # a digit past the entry's limit: beeped, nothing changed
EMPTY = const(2)  # # with nothing typed: said so, nothing changed
DONE = const(3)  # # with something typed: the screen takes the entry
BACK = const(4)  # * with nothing typed: the screen goes back
OTHER = const(5)  # not an entry key: the screen's own (A, C, D)
