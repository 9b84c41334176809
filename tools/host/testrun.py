"""The stages of tools/test, run in order; stops at the first failure.

Each stage prints its own output, then the run ends with one line per stage that ran:
`summary: <stage> <ok|FAIL> <figure>`.

`device` (tools/host/devicetest.py) runs only when named, with its options after it:
`tools/test device --port /dev/ttyUSB0` (a board must be attached).
"""

import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from tools.host import mpybuild

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".venv", "bin")
HEAP = "96k"
APP_HEAP = 96 * 1024
# For finding tests near the edge of the heap: ONETILL_TEST_HEAP_K=88 tools/test micropython
# runs with less. The summary line still says what was used.
if os.environ.get("ONETILL_TEST_HEAP_K"):
    APP_HEAP = int(os.environ["ONETILL_TEST_HEAP_K"]) * 1024
    HEAP = "%dk" % (APP_HEAP // 1024)
CORE_TESTS = os.path.join(ROOT, "host_tests", "core")
MPY_TIMEOUT_S = 600


class StageError(Exception):
    """A stage that ran and failed; its message is the summary figure."""


def _run(args, **kwargs):
    return subprocess.run(args, cwd=ROOT, text=True, capture_output=True, **kwargs)


def _show(result):
    sys.stdout.write(result.stdout)
    sys.stdout.write(result.stderr)
    sys.stdout.flush()


def stage_lint():
    check = _run([os.path.join(BIN, "ruff"), "check", "."])
    _show(check)
    fmt = _run([os.path.join(BIN, "ruff"), "format", "--check", "."])
    _show(fmt)
    found = re.search(r"Found (\d+) error", check.stdout)
    errors = int(found.group(1)) if found else 0
    unformatted = len(re.findall(r"^Would reformat", fmt.stdout, re.M))
    figure = "%d issues %d unformatted" % (errors, unformatted)
    if check.returncode or fmt.returncode:
        raise StageError(figure)
    files = re.search(r"(\d+) files? already formatted", fmt.stdout)
    return "%s files checked" % (files.group(1) if files else "?")


# pytest's processes (pytest-xdist). Many tests wait on a subprocess (the firmware on the
# unix port, a back end, a browser) rather than compute, so one more than the cores.
PYTEST_WORKERS = (os.cpu_count() or 2) + 1


def stage_cpython():
    # What several tests build, built once before they start side by side (each would find
    # it up to date; mpybuild writes by rename, so a race would also be safe, only slower).
    mpybuild.build_romfs(mpybuild.build_for_unix_port())
    mpybuild.build_bundle()
    # A test file stays in one process, in its order: some tests of a file share a folder
    # under build/ or a server. (`--dist loadgroup` with marks was tried: pytest-xdist 3.8
    # sets a group by renaming item._nodeid, which pytest 9 no longer reads, and a file's
    # tests were split, two of them rebuilding one folder at once.)
    workers = ["-n", str(PYTEST_WORKERS), "--dist", "loadfile"]
    result = _run([os.path.join(BIN, "python"), "-m", "pytest", "-q"] + workers + ["host_tests"])
    _show(result)
    passed = re.search(r"(\d+) passed", result.stdout)
    failed = re.search(r"(\d+) (failed|errors?)", result.stdout)
    figure = "%s passed" % (passed.group(1) if passed else 0)
    if result.returncode:
        raise StageError("%s %s failed" % (figure, failed.group(1) if failed else "?"))
    if not passed:
        raise StageError("no tests")
    return figure


def core_test_modules():
    return sorted(
        name[:-3]
        for name in os.listdir(CORE_TESTS)
        if name.startswith("test_") and name.endswith(".py")
    )


def core_tests(module):
    """The test functions of a core test module, in the order the runner takes them."""
    with open(os.path.join(CORE_TESTS, module + ".py")) as source:
        return sorted(re.findall(r"^def (test_\w+)\(", source.read(), re.M))


def _run_on_micropython(module, image, env):
    # The process heap holds the ROMFS image (the device maps it from flash) and the app's
    # 96 KiB; the runner pins the free heap to exactly APP_HEAP before any test runs.
    heap = APP_HEAP + os.path.getsize(image) + 16 * 1024
    args = [
        ".venv/bin/micropython",
        "-X",
        "heapsize=%d" % heap,
        # Relative paths (the process runs in ROOT): the firmware sees the same strings
        # wherever the repository was cloned, so its heap is laid out the same everywhere.
        "tools/host/mp_boot.py",
        os.path.relpath(image, ROOT),
        str(APP_HEAP),
        "testrunner",
        module,
    ]
    try:
        return module, subprocess.run(
            args, cwd=ROOT, env=env, text=True, capture_output=True, timeout=MPY_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        return module, subprocess.CompletedProcess(
            args, 124, (exc.stdout or b"").decode(), "timed out after %d s\n" % MPY_TIMEOUT_S
        )


def stage_micropython():
    out_dir = mpybuild.build_for_unix_port()
    image = mpybuild.build_romfs(out_dir)
    env = dict(os.environ)
    # MICROPYPATH replaces the whole path: only .frozen (asyncio); everything else comes
    # from the ROMFS image of .mpy files, never from source.
    env["MICROPYPATH"] = ".frozen"
    passed = failed = 0
    # One process per test: each starts on a whole 96 KiB heap, as a terminal boots, and
    # none inherits the holes an earlier test left behind.
    tests = [m + "." + t for m in core_test_modules() for t in core_tests(m)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        runs = pool.map(lambda name: _run_on_micropython(name, image, env), tests)
        for name, result in runs:
            print("== micropython", name)
            _show(result)
            counts = re.search(r"^(\d+) passed, (\d+) failed$", result.stdout, re.M)
            if counts:
                passed += int(counts.group(1))
                failed += int(counts.group(2))
            if result.returncode and not (counts and int(counts.group(2))):
                failed += 1  # a crash, a timeout or an import failure
    if failed:
        raise StageError("%d passed %d failed heap=%s" % (passed, failed, HEAP))
    if not passed:
        raise StageError("no tests")
    return "%d passed heap=%s" % (passed, HEAP)


def stage_types():
    result = _run([os.path.join(BIN, "mypy")])
    _show(result)
    found = re.search(r"Found (\d+) errors?", result.stdout)
    errors = int(found.group(1)) if found else 0
    if result.returncode:
        raise StageError("%d errors" % max(errors, 1))
    checked = re.search(r"in (\d+) source files?", result.stdout)
    return "0 errors %s files" % (checked.group(1) if checked else "?")


def stage_bundle():
    files = mpybuild.build_bundle()
    total = 0
    for path, size in files:
        print("%7d  %s" % (size, path))
        total += size
    if not files:
        raise StageError("no files")
    return "%d files %d bytes" % (len(files), total)


def stage_device(options):
    from tools.host import devicetest

    try:
        return devicetest.stage(options)
    except devicetest.DeviceTestError as exc:
        raise StageError(str(exc)) from exc


STAGES = (
    ("lint", stage_lint),
    ("cpython", stage_cpython),
    ("micropython", stage_micropython),
    ("types", stage_types),
    ("bundle", stage_bundle),
    ("device", stage_device),
)
ON_REQUEST = ("device",)  # needs a board: never part of a plain tools/test


def main(argv):
    # Stage names first; options (--port ...) belong to the device stage.
    first_option = next((i for i, arg in enumerate(argv) if arg.startswith("-")), len(argv))
    wanted, options = argv[:first_option], argv[first_option:]
    wanted = wanted or [name for name, _ in STAGES if name not in ON_REQUEST]
    unknown = [name for name in wanted if name not in dict(STAGES)]
    if unknown:
        print("unknown stage(s): %s; stages: %s" % (unknown, " ".join(n for n, _ in STAGES)))
        return 2
    if options and "device" not in wanted:
        print("options %s are for the device stage only" % " ".join(options))
        return 2
    summary = []
    status = 0
    started = time.monotonic()
    # What earlier runs left in build/scratch goes: tests make their own folders there, and
    # some list them.
    # (Not for the device stage alone: pytest runs it in the middle of the cpython stage.)
    if any(name not in ON_REQUEST for name in wanted):
        shutil.rmtree(os.path.join(ROOT, "build", "scratch"), ignore_errors=True)
    for name, stage in STAGES:
        if name not in wanted:
            continue
        print("\n### %s" % name, flush=True)
        try:
            figure = stage(options) if name in ON_REQUEST else stage()
            summary.append("summary: %s ok %s" % (name, figure))
        except StageError as exc:
            summary.append("summary: %s FAIL %s" % (name, exc))
            status = 1
            break
        except mpybuild.BuildError as exc:
            print(exc)
            summary.append("summary: %s FAIL build error" % name)
            status = 1
            break
    print("\ntools/test took %.0f s" % (time.monotonic() - started))
    for line in summary:
        print(line)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
