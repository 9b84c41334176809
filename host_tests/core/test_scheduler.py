"""pos.compat's run, spawn and sleep_ms: the app's tasks (its own small scheduler on
MicroPython, asyncio on CPython)."""

from expect import raises
from pos.compat import IS_MICROPYTHON, run, sleep_ms, spawn, ticks_diff, ticks_ms


def test_tasks_wake_in_the_order_their_sleeps_end_and_run_returns_mains_value():
    log = []

    async def sleeper(name, ms):
        await sleep_ms(ms)
        log.append(name)

    async def main():
        spawn(sleeper("late", 120))
        spawn(sleeper("early", 20))
        spawn(sleeper("now", 0))
        start = ticks_ms()
        await sleep_ms(240)
        log.append("main")
        return ticks_diff(ticks_ms(), start)

    slept = run(main())
    assert log == ["now", "early", "late", "main"]
    assert slept >= 235  # ticks in whole ms


def test_a_sleep_of_nothing_lets_the_other_tasks_run():
    log = []

    async def ping(name):
        for n in range(3):
            log.append(name + str(n))
            await sleep_ms(0)

    async def main():
        spawn(ping("b"))
        await ping("a")
        await sleep_ms(0)

    run(main())
    assert log == ["a0", "b0", "a1", "b1", "a2", "b2"]


def test_the_other_tasks_end_with_main():
    log = []

    async def forever():
        while True:
            log.append(1)
            await sleep_ms(10)

    async def main():
        spawn(forever())
        await sleep_ms(35)

    run(main())
    seen = len(log)
    assert 2 <= seen <= 5

    async def later():
        await sleep_ms(50)

    run(later())  # a new run has no task of the last one's
    assert len(log) == seen


def test_an_error_in_any_task_ends_run_with_it_and_leaves_nothing_behind():
    log = []

    async def failing():
        await sleep_ms(10)
        raise ValueError("broken task")

    async def main():
        spawn(failing())
        while True:
            log.append(1)
            await sleep_ms(5)

    error = raises(ValueError, run, main())
    assert str(error) == "broken task"
    count = len(log)

    async def quiet():
        await sleep_ms(30)
        return "clean"

    assert run(quiet()) == "clean"
    assert len(log) == count  # the ended run's main was not resumed


def test_a_sleep_is_timed_from_its_call_and_a_long_step_goes_behind():
    import time

    log = []

    async def busy():
        time.sleep(0.1)  # a long step of work before the sleep (a feed, a collection)
        start = ticks_ms()
        await sleep_ms(60)
        log.append(ticks_diff(ticks_ms(), start))

    run(busy())
    assert log[0] >= 55  # not the 60 ms less the step's 100

    order = []

    async def worker():
        for _ in range(3):
            time.sleep(0.05)
            order.append("work")
            await sleep_ms(0)

    async def main():
        spawn(worker())
        await sleep_ms(5)  # due while the worker's first step runs
        order.append("main")

    run(main())
    if IS_MICROPYTHON:  # the app's scheduler: the worker goes behind once it has run
        assert order == ["work", "main"]
    else:  # asyncio's own order: its ready queue before its timers
        assert order == ["work", "work", "work", "main"]


def test_a_sleep_makes_nothing_on_the_heap():
    if not IS_MICROPYTHON:
        return  # CPython's asyncio; the heap is the device's concern
    import gc

    async def main():
        for _ in range(5):  # the loop's first steps made
            await sleep_ms(0)
        gc.collect()
        before = gc.mem_free()
        for _ in range(200):
            await sleep_ms(0)
        return before - gc.mem_free()

    assert run(main()) == 0
