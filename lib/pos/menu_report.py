"""The function menu's X and Z screens (pos.functions loads this module while one is in
use): a merchant's report on screen and on paper, and the Z that settles its batch."""

from pos.clock import format_datetime
from pos.compat import const
from pos.money import format_minor
from pos.receipt import center, pair
from pos.reports import METHOD_LABELS

# pos.states' screens and pos.record's kinds as private constants (inlined at no heap cost;
# host_tests/test_states.py checks them).
_REPORT_VIEW = const(17)
_Z_CONFIRM = const(18)
_TITLE = const(0)
_HINT = const(7)
_SALE = const(1)
_REFUND = const(2)
_VOID = const(3)
_FLAG_SUPERVISOR = const(2)
_REPORT_ROWS = const(5)

_TEXT = (
    b"Settle batch\0\0\0\0"  # 0
    b"Sales\0\0\0\0\0\0\0\0\0\0\0"  # 1
    b"#settle *back\0\0\0"  # 2
    b"C/D page #done\0\0"  # 3
    b"Totals reset\0\0\0\0"  # 4
)
_T_SETTLE_BATCH = const(0)
_T_SALES = const(1)
_T_SETTLE_BACK = const(2)
_T_C_D_PAGE_DONE = const(3)
_T_TOTALS_RESET = const(4)


def _text(number):
    return memoryview(_TEXT)[number << 4 : (number + 1) << 4]  # row `number`


def report_lines(totals, merchant, exponent):
    """(label, value) pairs of an X or Z report, one at a time (the X's screen keeps them as
    a list; a Z's slip takes each as it is made). Sales are net of voids, as the Z record
    counts them (pos.reports.Totals.settlement) and as the Z screen shows them: the first
    line says so, and the Voids line after them tells what was taken off."""
    yield ("Sales less voids", "")
    for kind, label in ((_SALE, "Sales"), (_VOID, "Voids"), (_REFUND, "Refunds")):
        count, total = totals.sum(merchant, kind)
        if kind == _SALE:
            voided = totals.sum(merchant, _VOID)
            count, total = count - voided[0], total - voided[1]
        yield ("%s %d" % (label, count), format_minor(total, exponent))
        for method in range(1, 5):
            c, t = totals.count_total(merchant, kind, method)
            if kind == _SALE:
                voided = totals.count_total(merchant, _VOID, method)
                c, t = c - voided[0], t - voided[1]
            if c:
                yield ("  %s %d" % (METHOD_LABELS[method], c), format_minor(t, exponent))
    yield ("Declines %d" % totals.declines(merchant), "")
    yield ("NET", format_minor(totals.net(merchant), exponent))
    yield ("Batch %d" % totals.batch(merchant), "")


def report_receipt(title, merchant, terminal_id, now, lines, columns=32, utc_offset_min=0):
    """An X or Z report slip: header, then the report's (label, value) pairs; made one line
    at a time as the printer takes them (the whole slip at once was a list and 20 lines of
    text, which a worn heap could not find room for)."""
    yield center(title, columns)
    yield center(merchant.name, columns)
    yield center("Merchant ID " + merchant.merchant_id, columns)
    yield pair("Terminal", terminal_id, columns)
    yield pair("Printed", format_datetime(now, utc_offset_min), columns)
    yield "-" * columns
    for label, value in lines:
        yield pair(label, value, columns) if value else label[:columns]
    yield "-" * columns


def _print_report(fn, title):
    t = fn.t
    settings = t.settings
    t.effects.append(
        (
            "print",
            report_receipt(
                title,
                fn.report_merchant,
                settings.terminal_id,
                t.now(),
                fn.report_lines,
                settings.receipt_columns,
                settings.utc_offset_min,
            ),
        )
    )


def picked(fn, merchant):
    """A merchant chosen for an X report or a Z settlement."""
    t = fn.t
    fn.report_merchant = merchant
    if fn.after_pick == _Z_CONFIRM:
        t.go(_Z_CONFIRM, merchant)
        return
    fn.report_lines = list(report_lines(t.ledger.totals, merchant.number, merchant.exponent))
    fn.page = 0
    t.go(_REPORT_VIEW, merchant)
    _print_report(fn, "X REPORT")


def key(fn, key):
    t = fn.t
    if t.state == _REPORT_VIEW:
        pages = (len(fn.report_lines) + _REPORT_ROWS - 1) // _REPORT_ROWS
        if key == "C" and fn.page > 0:
            fn.page -= 1
        elif key == "D" and fn.page + 1 < pages:
            fn.page += 1
        elif key == "#" or key == "*":
            t.to_merchants()
    elif key == "*":  # the Z's confirmation
        t.open_menu()
    elif key == "#":
        merchant = fn.report_merchant
        totals = t.ledger.totals
        # The Z's report is made once its record is booked (settled), from a copy of the
        # merchant's slots (an array of 180 bytes): made here, its lines (about 1.4 KiB of
        # small objects on the 64-bit port) were on the heap while the booking looked for
        # its cipher object's 320 bytes, the Z's wall on a worn heap (README "Memory").
        from array import array

        from pos.reports import Totals

        closed = fn.report_lines = Totals()
        slots = totals.slots(merchant.number)
        if slots is not None:
            closed._merchants[merchant.number] = array("I", slots)
        record = totals.settlement(
            merchant.number,
            merchant.currency_numeric,
            cashier=fn.supervisor.number,
            time=t.now(),
            flags=t.flags() | _FLAG_SUPERVISOR,
            into=t.reused_record,
        )
        t.book(record)


def settled(fn, record):
    """The Z record is stored: print the report of the totals it closed. Returns the
    result screen's (headline, detail)."""
    batch = record.reference
    merchant = fn.report_merchant
    # Each line made as the printer takes it, not a list of them at once: the Z is stored
    # and its totals cleared, so a report that could not be made now would be lost.
    fn.report_lines = report_lines(fn.report_lines, merchant.number, merchant.exponent)
    _print_report(fn, "Z REPORT %d" % batch)
    fn.t.effects.append(("beep", "ok"))
    return ("Z BATCH %d DONE" % batch, _text(_T_TOTALS_RESET))


def draw(fn, screen):
    if fn.t.state == _REPORT_VIEW:
        screen.put(_TITLE, b"X " + fn.report_merchant.label)
        first = fn.page * _REPORT_ROWS
        lines = fn.report_lines
        for row in range(_REPORT_ROWS):
            if first + row >= len(lines):
                break
            label, value = lines[first + row]
            screen.put(row + 1, label)
            if value:
                screen.put(row + 1, value, right=True)
        screen.put(_HINT, _text(_T_C_D_PAGE_DONE))
        screen.focus = 1
        return
    merchant = fn.report_merchant
    totals = fn.t.ledger.totals
    screen.put(1, _text(_T_SETTLE_BATCH))
    screen.put_digits(1, totals.batch(merchant.number), 0)
    screen.put(2, "Net " + merchant.currency_code)
    screen.put(2, format_minor(totals.net(merchant.number), merchant.exponent), right=True)
    count = totals.sum(merchant.number, _SALE)[0] - totals.sum(merchant.number, _VOID)[0]
    screen.put(3, _text(_T_SALES))  # net of voids, as the report and the Z record say
    screen.put_digits(3, count, 0)
    screen.put(_HINT, _text(_T_SETTLE_BACK))
    screen.focus = 1
