"""The heap a module takes resident once imported from the ROMFS image, as on the device.

    tools/test micropython   (builds build/core.romfs), then
    MICROPYPATH=.frozen .venv/bin/micropython -X heapsize=300k tools/host/mp_boot.py \\
        build/core.romfs 98304 importheap pos.terminal pos.ledger pos.app

prints "import heap: MODULE N bytes" for each module in turn, after those before it (so
the last line is what that module adds on top of what it imports).
"""

import gc


def main(modules):
    for name in modules:
        gc.collect()
        before = gc.mem_free()
        __import__(name)
        gc.collect()
        print("import heap: %s %d bytes" % (name, before - gc.mem_free()))
