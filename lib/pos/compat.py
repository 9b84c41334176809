"""The one place where CPython and MicroPython differ, so the rest of the core does not."""

import sys

IS_MICROPYTHON = sys.implementation.name == "micropython"


def unload(name):
    """Forget a module that is needed only for a while (the config parser at start, the
    function menu while it is open), so its code stops taking heap. Objects made by it stay
    valid: they hold their own classes. name: "pos.x", or the core's "x" alone (a literal
    of more than 10 characters is a heap object of its own in the module that holds it,
    for that module's life; a shorter one is a name, which is not). The heap is collected
    then on MicroPython; on CPython (the host's tools, the back end's load bench, whose
    simulated terminals unload pos.link at every request) a collection would be work for
    nothing."""
    if "." not in name:
        name = "pos." + name

    sys.modules.pop(name, None)
    parent, _, child = name.rpartition(".")
    package = sys.modules.get(parent)
    if package is not None and child in package.__dict__:
        delattr(package, child)
    if IS_MICROPYTHON:
        import gc

        gc.collect()


def why(rows, number):
    """Message `number` of rows (a bytes constant of messages, "|" between them) as str.
    The core's messages live that way: a str literal of more than about 10 characters is a
    heap object of its own for its module's life (about 40 bytes on the 64-bit port). One
    function here, not one per module: each was about 90 bytes of heap more."""
    start = 0
    for _ in range(number):
        start = rows.index(b"|", start) + 1
    end = rows.find(b"|", start)
    return rows[start : end if end >= 0 else len(rows)].decode()


# Block-cipher modes, numbered as MicroPython's cryptolib numbers them.
AES_ECB = 1
AES_CBC = 2

if IS_MICROPYTHON:
    from binascii import crc32  # noqa: F401  (re-exported)
    from time import ticks_add, ticks_diff, ticks_ms  # noqa: F401  (re-exported)

    import cryptolib
    from micropython import const  # noqa: F401  (re-exported)

    aes = cryptolib.aes

    # sys.modules is a dict, and grows as one: by a larger table in one piece, 592 bytes at
    # the 30th module and 752 at the 38th on the 64-bit port, which the function menu's
    # modules and the first sync's missed on a worn heap (tools/bench heap). Grown here,
    # at the core's first import while the heap is whole, to hold the 47 modules a
    # terminal may have loaded at once (the app's, its board's, the menu's, a sync's and
    # an update's): a dict keeps its table when entries leave it.
    _modules = sys.modules
    _n = 0
    while len(_modules) < 47:
        _modules[_n] = None
        _n += 1
    while _n:
        _n -= 1
        del _modules[_n]
    del _modules, _n

    class _Sleep:
        """What `await sleep_ms(ms)` waits on: one object for every sleep, which hands ms to
        run() (as asyncio's SingletonGenerator does: a sleep makes nothing on the heap)."""

        def __init__(self):
            self.ms = None
            self.done = StopIteration()

        def __iter__(self):
            return self

        def __next__(self):
            ms = self.ms
            if ms is None:  # resumed by run(): the sleep is over
                self.done.__traceback__ = None
                raise self.done
            self.ms = None
            return ms

    _sleep = _Sleep()
    _tasks = []  # [due (ticks_ms), coroutine] of each task run() runs

    def sleep_ms(ms):
        if _tasks:
            _sleep.ms = ms
            return _sleep
        # Not under run(): asyncio's loop (the tests' servers), loaded on first use.
        import asyncio

        return asyncio.sleep_ms(ms)

    def spawn(coro):
        """Run coro as a task of run()'s, from now."""
        _tasks.append([ticks_ms(), coro])

    def run(main):
        """Run main and the tasks it spawns until main returns (its value); an error in any
        task ends it. The app's scheduler: asyncio's took 4 KiB of heap (README "Memory")."""
        from time import sleep_ms as idle

        tasks = _tasks
        spawn(main)
        try:
            while True:
                first = tasks[0]
                for task in tasks:
                    if ticks_diff(task[0], first[0]) < 0:
                        first = task
                wait = ticks_diff(first[0], ticks_ms())
                if wait > 0:
                    idle(wait)
                coro = first[1]
                try:
                    ms = coro.send(None) or 0
                except StopIteration as stop:
                    if coro is main:
                        return stop.value
                    tasks.remove(first)
                    continue
                first[0] = ticks_add(ticks_ms(), ms)  # from the sleep's call, as asyncio
                tasks.remove(first)  # behind the others, which may be due as soon
                tasks.append(first)
        finally:
            tasks.clear()

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
        run,
        sleep_ms,
        spawn,
        ticks_add,
        ticks_diff,
        ticks_ms,
    )
