# Sourced by the tools/ entry points: makes .venv (Python 3.11, pinned requirements) and the
# ESP32 type stubs on first use, and again whenever a requirements file changes.
# Sets ROOT, VENV and PY. Installs nothing else; Debian packages are asked for with need_apt.
#
# A set-up cut short (Ctrl-C, a closed window, a power cut) must never leave a .venv that
# later commands trust: the stamp file .venv/.onetill-stamp is written last, after a sync,
# by renaming a finished file into place, and a .venv without a good stamp is removed and
# built again. The venv is built where it stays (its scripts hold absolute paths, so it
# cannot be built elsewhere and renamed). One set-up at a time: a lock file, .venv.lock.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

_say() { printf 'tools: %s\n' "$*" >&2; }

_find_python311() {
  local candidate
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

apt_install() {
  # apt_install PACKAGE...: install Debian packages (as root, or through sudo).
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  _say "installing Debian packages: $*"
  # An install cut short (Ctrl-C, a power cut) leaves packages unpacked but not set up:
  # finish those first, or apt-get refuses to install anything.
  $sudo dpkg --configure -a >/dev/null 2>&1 || true
  $sudo apt-get update -qq >/dev/null &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

_apt_whole() {
  # _apt_whole PACKAGE: the package is installed and set up (not left half-way by an
  # install cut short); true where there is no dpkg to ask.
  command -v dpkg-query >/dev/null 2>&1 || return 0
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

need_apt() {
  # need_apt COMMAND PACKAGE: install a Debian package when its command is missing, or
  # when an earlier install of it was cut short.
  command -v "$1" >/dev/null 2>&1 && _apt_whole "$2" && return 0
  apt_install "$2" || true
  command -v "$1" >/dev/null 2>&1 || { _say "could not install $2 (for $1)"; return 1; }
}

need_postgresql() {
  # Debian's PostgreSQL server for the back end's tests and benchmarks (tools/host/pgserver.py
  # runs its own server from these binaries). An install cut short leaves dpkg half done
  # (files unpacked, the postgres user not made): dpkg --configure -a finishes it first.
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  if [ "$(dpkg-query -W -f='${Status}' postgresql 2>/dev/null)" = "install ok installed" ] &&
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && id postgres >/dev/null 2>&1; then
    return 0
  fi
  DEBIAN_FRONTEND=noninteractive $sudo dpkg --configure -a >/dev/null 2>&1 || true
  apt_install postgresql || true
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && id postgres >/dev/null 2>&1 ||
    { _say "could not install postgresql (for the back end's PostgreSQL tests)"; return 1; }
}

_venv_stamp() {
  # The stamp of a complete .venv (16 hex digits), or nothing for an incomplete one.
  local stamp
  stamp=$(cat "$VENV/.onetill-stamp" 2>/dev/null) || return 0
  [[ $stamp =~ ^[0-9a-f]{16}$ ]] && [ -x "$PY" ] && printf '%s' "$stamp"
  return 0
}

_pip_progress() {
  # _pip_progress LOG TOTAL STEP: reads pip's output and shows how far it is, one line
  # rewritten in place on a terminal, a line every fifth of the packages otherwise. Keeps
  # pip's whole output in LOG for a failure.
  local log=$1 total=$2 step=$3 count=0 next=0 line name tty=0 open=0
  [ -t 2 ] && tty=1
  while IFS= read -r line; do
    printf '%s\n' "$line" >>"$log"
    case $line in
      Collecting\ * | Processing\ * | Requirement\ already\ satisfied:\ *)
        count=$((count + 1))
        name=${line#* } # pip names a package, or gives a wheel's path, after its verb
        name=${name#already satisfied: }
        name=${name%% *}
        name=${name##*/}
        name=${name%%==*}
        name=${name%%-[0-9]*}
        if [ "$tty" = 1 ]; then
          printf '\rtools: %s found %d of %d: %-40.40s' "$step" "$count" "$total" "$name" >&2
          open=1
        elif [ "$count" -ge "$next" ] || [ "$count" = "$total" ]; then
          _say "$step found $count of $total: $name"
          next=$((count + (total + 4) / 5))
        fi
        ;;
      Installing\ collected\ packages:*)
        [ "$open" = 1 ] && printf '\n' >&2 && open=0
        _say "$step unpacking $count packages into place (quiet for a while)"
        ;;
      WARNING:\ Retrying*) # a slow or broken network: say so at once (errors come at the end)
        [ "$open" = 1 ] && printf '\n' >&2 && open=0
        printf '%s\n' "$line" >&2
        ;;
    esac
  done
  [ "$open" = 1 ] && printf '\n' >&2
  return 0
}

_pip() {
  # _pip STEP TOTAL PIP-ARGS...: pip install with progress; on failure shows pip's last lines.
  local step=$1 total=$2 log status
  shift 2
  log=$(mktemp)
  PYTHONUNBUFFERED=1 "$PY" -m pip install --disable-pip-version-check --progress-bar off "$@" \
    2>&1 | _pip_progress "$log" "$total" "$step"
  status=${PIPESTATUS[0]}
  if [ "$status" != 0 ]; then
    grep -v "^WARNING: Location" "$log" | tail -n 15 >&2
  fi
  rm -f "$log"
  return "$status"
}

_build_venv() {
  # _build_venv WANT: make .venv complete for the requirements whose stamp is WANT.
  local want=$1 have python started=$SECONDS packages stubs
  have=$(_venv_stamp)
  [ "$have" = "$want" ] && return 0
  if [ -L "$VENV" ]; then
    # A worktree that shares another checkout's venv: never change someone else's. A whole
    # one for other requirements is used as it is (the other checkout may be a step ahead).
    if [ -n "$have" ]; then
      _say ".venv links to $(readlink "$VENV"), built for other requirements: using it as" \
        "it is (rm .venv, the link only, to build your own)"
      return 0
    fi
    _say ".venv links to $(readlink "$VENV"), which is incomplete: remove the link" \
      "(rm .venv) and run again to build a .venv of your own"
    return 1
  fi
  packages=$(grep -cv '^\s*\(#\|$\)' "$ROOT/requirements.txt")
  stubs=$(grep -cv '^\s*\(#\|$\)' "$ROOT/requirements-stubs.txt")
  if [ -n "$have" ]; then
    # A complete venv for older requirements: update it in place, but take its stamp away
    # first, so that an update cut short is seen as incomplete next time.
    _say "requirements changed: updating .venv"
    rm -f "$VENV/.onetill-stamp"
  else
    if [ -e "$VENV" ]; then
      _say "removing an incomplete .venv (an earlier set-up was cut short)"
      rm -rf "$VENV"
    fi
    if ! python=$(_find_python311); then
      apt_install python3 python3-venv # Debian 12's python3 is 3.11
      python=$(_find_python311) || { _say "Python 3.11 is required"; return 1; }
    fi
    _say "setting up .venv and typings/ (once; about 2 minutes; Ctrl-C is safe: the next" \
      "tools/ command starts it again)"
    _say "[1/3] creating .venv with $python"
    "$python" -m venv "$VENV" || { _say "python -m venv failed"; return 1; }
  fi
  _say "[2/3] installing $packages pinned packages (requirements.txt) into .venv"
  _pip "[2/3]" "$packages" -r "$ROOT/requirements.txt" || {
    _say "pip install failed"
    return 1
  }
  _say "[3/3] installing the ESP32 type stubs (requirements-stubs.txt) into typings/"
  rm -rf "$ROOT/typings"
  _pip "[3/3]" "$stubs" --target "$ROOT/typings" -r "$ROOT/requirements-stubs.txt" || {
    _say "stub install failed"
    return 1
  }
  # Everything on disk before the stamp says so, or a power cut could leave a stamp over
  # files that never reached the disk.
  sync -f "$VENV/pyvenv.cfg" 2>/dev/null || sync
  printf '%s\n' "$want" >"$VENV/.onetill-stamp.new"
  mv -f "$VENV/.onetill-stamp.new" "$VENV/.onetill-stamp"
  _say ".venv ready in $((SECONDS - started)) s"
}

_ensure_venv() {
  local want lock status=0
  want=$(cat "$ROOT/requirements.txt" "$ROOT/requirements-stubs.txt" | sha256sum | cut -c1-16)
  [ "$(_venv_stamp)" = "$want" ] && return 0
  if command -v flock >/dev/null 2>&1; then
    exec {lock}>"$ROOT/.venv.lock"
    if ! flock -n "$lock"; then
      _say "another tools/ command is setting up .venv: waiting for it"
      flock "$lock"
    fi
  fi
  trap '_say "set-up cut short: the next tools/ command starts it again"; exit 130' INT
  trap '_say "set-up cut short: the next tools/ command starts it again"; exit 143' TERM
  _build_venv "$want" || status=$?
  trap - INT TERM
  [ -n "${lock:-}" ] && exec {lock}>&-
  return "$status"
}

_ensure_venv || exit 1
export PATH="$VENV/bin:$PATH"
