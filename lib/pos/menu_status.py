"""The function menu's status screen (pos.functions loads this module while it is shown):
the link, what waits to be sent, the key counter and the free heap."""

from pos.clock import is_set
from pos.compat import const, mem_free

_TITLE = const(0)
_HINT = const(7)

_TEXT = (
    b"Status\0\0\0\0\0\0\0\0\0\0"  # 0
    b"Link\0\0\0\0\0\0\0\0\0\0\0\0"  # 1
    b"up\0\0\0\0\0\0\0\0\0\0\0\0\0\0"  # 2
    b"DOWN\0\0\0\0\0\0\0\0\0\0\0\0"  # 3
    b"Unsent\0\0\0\0\0\0\0\0\0\0"  # 4
    b"Oldest min\0\0\0\0\0\0"  # 5
    b"-\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"  # 6
    b"Key counter\0\0\0\0\0"  # 7
    b"Free mem\0\0\0\0\0\0\0\0"  # 8
    b"n/a\0\0\0\0\0\0\0\0\0\0\0\0\0"  # 9
    b"#OK\0\0\0\0\0\0\0\0\0\0\0\0\0"  # 10
)
_T_STATUS = const(0)
_T_LINK = const(1)
_T_UP = const(2)
_T_DOWN = const(3)
_T_UNSENT = const(4)
_T_OLDEST_MIN = const(5)
_T_BLANK = const(6)
_T_KEY_COUNTER = const(7)
_T_FREE_MEM = const(8)
_T_N_A = const(9)
_T_OK = const(10)


def _text(number):
    return memoryview(_TEXT)[number << 4 : (number + 1) << 4]  # row `number`


def key(fn, key):
    if key == "#" or key == "*":
        fn.t.to_merchants()


def draw(fn, screen):
    t = fn.t
    ledger = t.ledger
    screen.put(_TITLE, _text(_T_STATUS))
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
    screen.put(_HINT, _text(_T_OK))
