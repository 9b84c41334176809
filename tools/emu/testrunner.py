"""Runs the test_* functions of core test modules on MicroPython (which has no pytest).

Started by tools/host/mp_boot.py from the ROMFS image, with the heap pinned to 96 KiB:
    micropython -X heapsize=N tools/host/mp_boot.py IMAGE APP_HEAP testrunner NAME...
where NAME is MODULE (all its tests) or MODULE.TEST (tools/test runs each test in a process
of its own, so every test starts on a whole heap, as a terminal does when it boots).
Prints one line per test (PASS/FAIL), then 'N passed, N failed'. Exit status 1 when anything
failed or a module did not import.
"""

import gc
import sys

# As main.py does for the app: a block held while code is imported and let go before the
# tests run, so the long-lived buffers a test makes (a terminal's queue, journal state and
# ledger) find one contiguous region instead of the holes that importing code leaves.
EARLY_RESERVE = 0


def run_module(name, only=None):
    passed = failed = 0
    early_reserve = bytearray(EARLY_RESERVE)
    try:
        module = __import__(name)
    except Exception as exc:  # an import error must fail the run, not hide the tests
        print("FAIL", name, "(import)")
        sys.print_exception(exc)
        return 0, 1
    del early_reserve
    names = [only] if only else sorted(n for n in dir(module) if n.startswith("test_"))
    for test_name in names:
        fn = getattr(module, test_name)
        if not callable(fn):
            continue
        gc.collect()
        try:
            fn()
        except Exception as exc:
            failed += 1
            print("FAIL", name + "." + test_name)
            sys.print_exception(exc)
            continue
        passed += 1
        print("PASS", name + "." + test_name)
    return passed, failed


def main(modules):
    print("heap for tests: %d bytes" % gc.mem_free())
    passed = failed = 0
    for name in modules:
        module, _, test = name.partition(".")
        p, f = run_module(module, test)
        passed += p
        failed += f
        gc.collect()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed or not passed else 0)
