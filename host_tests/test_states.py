"""The screen numbers: pos.states is the one list, and the modules that keep private const()
copies of them (inlined at no heap cost, where an imported name costs heap) agree with it.
Host-only: MicroPython keeps no private constant where a test could read it."""

import re
from importlib import import_module

import pos.states

OUTCOMES = ("EDITED", "REFUSED", "EMPTY", "DONE", "BACK", "OTHER")


def numbers():
    return {name: value for name, value in vars(pos.states).items() if name.isupper()}


def copies(module):
    listed = numbers()
    return {
        name[1:]: value
        for name, value in vars(module).items()
        if name.startswith("_") and name[1:] in listed
    }


def test_every_copy_matches_pos_states():
    listed = numbers()
    for name, at_least in (
        ("pos.terminal", 22),
        ("pos.functions", 11),
        ("pos.menu_refund", 6),
        ("pos.menu_report", 2),
        ("pos.menu_unblock", 3),
        ("pos.received", 2),
    ):
        module = import_module(name)  # at use: core tests in this process unload some
        found = copies(module)
        assert len(found) >= at_least, (module.__name__, sorted(found))
        for name, value in found.items():
            assert listed[name] == value, (module.__name__, name)


def test_screens_are_numbered_once():
    screens = [value for name, value in numbers().items() if name not in OUTCOMES]
    assert len(screens) == 22 and len(set(screens)) == len(screens)
    outcomes = [numbers()[name] for name in OUTCOMES]
    assert len(set(outcomes)) == len(outcomes)


def test_no_import_circle_between_terminal_and_functions():
    for name, other in (("pos.functions", "pos.terminal"), ("pos.terminal", "pos.functions")):
        with open(import_module(name).__file__) as source:
            text = source.read()
        # pos.terminal loads pos.functions while the menu is in use, inside a method only.
        assert not re.search(r"^(from %s |import %s)" % (other, other), text, re.M)


def test_menu_items_copy_the_record_and_screen_numbers_right():
    """The menu items keep pos.record's kinds and flag, pos.reports' VOIDED and pos.screen's
    rows as private const() copies too (an imported name is a global on the heap)."""
    import pos.autoblock
    import pos.record
    import pos.reports
    import pos.screen

    sources = (pos.record, pos.reports, pos.screen, pos.autoblock)
    checked = 0
    menus = ("pos.functions", "pos.menu_refund", "pos.menu_report", "pos.menu_status")
    for name in menus + ("pos.menu_unblock",):
        for copy, value in vars(import_module(name)).items():
            for source in sources:
                original = getattr(source, copy[1:], None)
                if copy.startswith("_") and copy[1:].isupper() and isinstance(original, int):
                    assert original == value, (name, copy)
                    checked += 1
    assert checked >= 12


def test_limit_numbers_match_the_merchants_names():
    """pos.risk, pos.terminal and pos.menu_refund ask for a merchant's limits by number
    (private const() copies, _L_ and the name): each number is that name's place."""
    from pos.merchants import Merchant, limit_names

    names = limit_names()
    assert len(names) == 10 and len(set(names)) == 10
    merchant = Merchant(
        1, "100000000000001", "Shop", "EUR", {n: i + 1 for i, n in enumerate(names)}
    )
    found = 0
    for module_name in ("pos.risk", "pos.terminal", "pos.menu_refund"):
        module = import_module(module_name)
        for name, value in vars(module).items():
            if name.startswith("_L_"):
                assert names[value] == name[3:].lower(), (module_name, name)
                assert merchant.limit(value) == merchant.limit(name[3:].lower()) == value + 1
                found += 1
    assert found == 11


def test_the_queue_recovery_copies_pos_txq_format():
    """pos.logscan recovers the queue with private const() copies of pos.txq's format."""
    from pos import logscan, txq

    assert logscan._QUEUE_MAGIC == txq._MAGIC
    assert logscan._QUEUE_ACK == txq._ACK_LENGTH
    assert logscan._QUEUE_VERSION == txq.FORMAT_VERSION
    assert logscan._QUEUE_HEADER_SIZE == txq.HEADER_SIZE
