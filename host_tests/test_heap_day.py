"""The busy day of tools/bench heap at the default 96 KiB heap, offline, on two freshly
provisioned terminals: 40 sales with every method, then a logout, another cashier's login,
a sale, a void, a refund, the X and Z reports, the status screen, a sync, a logout, a login
and a last sale, each step showing the screen it should and no "Low memory".

This is issue 14's acceptance ("tools/sim --offline at the default heap can sell, log out,
log in, void, refund and open every function of the menu after a 40-sale day on any freshly
provisioned terminal"). It does not hold yet: the code's own objects take about 60 KiB of
the 96 and most of the rest is in holes too small for the blocks a busy day asks for
(README, "Memory"). The mark is strict: the test fails the day the day passes, and then
the mark must go.
"""

import os
import shutil

import pytest

from tools.host import benchheap

FOLDER = os.path.join(benchheap.ROOT, "build", "heapday-test")


@pytest.mark.xfail(
    strict=True,
    reason="issue 14: the heap margin at 96 KiB is negative (tools/bench heap)",
)
def test_busy_day_at_the_default_heap_offline():
    if os.path.exists(FOLDER):
        shutil.rmtree(FOLDER)
    os.makedirs(FOLDER)
    try:
        templates = benchheap.provision(FOLDER, 2)
        steps = benchheap.day_script()
        failures = []
        for template in templates:
            day = benchheap.Day(template, os.path.join(FOLDER, "day"), 96, backend=False)
            failure = day.run(steps)
            if failure:
                failures.append(failure)
        assert failures == []
    finally:
        shutil.rmtree(FOLDER, ignore_errors=True)


def test_the_day_passes_with_room_to_spare():
    """The script itself is right: with a generous heap every step shows what it should,
    so a failure at 96 KiB is the heap's, not the script's."""
    if os.path.exists(FOLDER + "-big"):
        shutil.rmtree(FOLDER + "-big")
    os.makedirs(FOLDER + "-big")
    try:
        (template,) = benchheap.provision(FOLDER + "-big", 1)
        day = benchheap.Day(template, os.path.join(FOLDER + "-big", "day"), 160, backend=False)
        assert day.run(benchheap.day_script()) is None
    finally:
        shutil.rmtree(FOLDER + "-big", ignore_errors=True)


def test_a_day_that_runs_out_of_heap_fails():
    """The check can fail: far below the default heap the day stops, and says where."""
    if os.path.exists(FOLDER + "-small"):
        shutil.rmtree(FOLDER + "-small")
    os.makedirs(FOLDER + "-small")
    try:
        (template,) = benchheap.provision(FOLDER + "-small", 1)
        day = benchheap.Day(template, os.path.join(FOLDER + "-small", "day"), 80, backend=False)
        failure = day.run(benchheap.day_script())
        assert failure is not None and "MemoryError" in failure
    finally:
        shutil.rmtree(FOLDER + "-small", ignore_errors=True)
