"""Runs the test_* functions of core test modules on MicroPython (which has no pytest).

Usage: micropython -X heapsize=N tools/host/mpy_runner.py ROMFS_IMAGE APP_HEAP MODULE...

The core, the host emulators and the tests come from a ROMFS image of .mpy files, mounted at
/rom, as the ESP32 runs them from its memory-mapped romfs partition. The unix port has no
mapped flash, so the image sits in the GC heap; ballast then pins the free heap to exactly
APP_HEAP bytes, so the tests get what the device's app gets and not a byte more.

Prints one line per test (PASS/FAIL), then 'N passed, N failed'.
Exit status 1 when anything failed or a module did not import.
"""

import gc
import sys

import vfs


def mount_image(path):
    with open(path, "rb") as source:
        image = source.read()
    vfs.mount(vfs.VfsRom(image), "/rom")
    sys.path[:0] = ["/rom/tests", "/rom/emu", "/rom/lib"]
    return image


def pin_heap(app_heap):
    """Allocate ballast so that exactly app_heap bytes stay free; return it (keep it alive)."""
    gc.collect()
    extra = gc.mem_free() - app_heap
    if extra < 0:
        print("FAIL heap: only %d bytes free, %d wanted" % (gc.mem_free(), app_heap))
        sys.exit(1)
    ballast = bytearray(extra) if extra > 0 else None  # its header makes it a little less
    gc.collect()
    return ballast


def run_module(name):
    passed = failed = 0
    try:
        module = __import__(name)
    except Exception as exc:  # an import error must fail the run, not hide the tests
        print("FAIL", name, "(import)")
        sys.print_exception(exc)
        return 0, 1
    names = sorted(n for n in dir(module) if n.startswith("test_"))
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


def main():
    image = mount_image(sys.argv[1])
    ballast = pin_heap(int(sys.argv[2]))
    print(
        "heap for tests: %d bytes (ROMFS image %d bytes outside it)" % (gc.mem_free(), len(image))
    )
    passed = failed = 0
    for name in sys.argv[3:]:
        p, f = run_module(name)
        passed += p
        failed += f
        gc.collect()
    print("%d passed, %d failed" % (passed, failed))
    del ballast
    sys.exit(1 if failed or not passed else 0)


main()
