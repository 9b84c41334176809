"""The one place where CPython and MicroPython differ, so the rest of the core does not."""

import sys

IS_MICROPYTHON = sys.implementation.name == "micropython"


def unload(name):
    """Forget a module that is needed only once (config parsing at start), so its code stops
    taking heap. Objects made by it stay valid: they hold their own classes."""
    import gc

    sys.modules.pop(name, None)
    parent, _, child = name.rpartition(".")
    package = sys.modules.get(parent)
    if package is not None and child in package.__dict__:
        delattr(package, child)
    gc.collect()


# Block-cipher modes, numbered as MicroPython's cryptolib numbers them.
AES_ECB = 1
AES_CBC = 2

if IS_MICROPYTHON:
    from binascii import crc32  # noqa: F401  (re-exported)
    from time import ticks_add, ticks_diff, ticks_ms  # noqa: F401  (re-exported)

    import cryptolib
    from micropython import const  # noqa: F401  (re-exported)

    aes = cryptolib.aes

    def sleep_ms(ms):
        # Imported on first use: asyncio's objects cost 4 KiB of heap in code that has none.
        import asyncio

        return asyncio.sleep_ms(ms)

    def collect_every(nbytes):
        """Collect garbage whenever nbytes more have been allocated (pos.app says why)."""
        import gc

        gc.threshold(nbytes)

    def mem_free():
        """Free heap after a collection: without one, garbage waiting to be collected
        counts as used and the figure says more about the last few keys than the heap."""
        import gc

        gc.collect()
        return gc.mem_free()

else:
    # CPython's side in a module of its own: on the device, even code that never runs
    # costs heap for each function and text it holds.
    from pos.compat_cpython import (  # noqa: F401  (re-exported)
        aes,
        collect_every,
        const,
        crc32,
        mem_free,
        sleep_ms,
        ticks_add,
        ticks_diff,
        ticks_ms,
    )
