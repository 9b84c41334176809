# Sourced by the tools/ entry points: makes .venv (Python 3.11, pinned requirements) and the
# ESP32 type stubs on first use, and again whenever a requirements file changes.
# Sets ROOT, VENV and PY. Installs nothing else; Debian packages are asked for with need_apt.

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
  $sudo apt-get update -qq >/dev/null &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

need_apt() {
  # need_apt COMMAND PACKAGE: install a Debian package when its command is missing.
  command -v "$1" >/dev/null 2>&1 && return 0
  apt_install "$2" || true
  command -v "$1" >/dev/null 2>&1 || { _say "could not install $2 (for $1)"; return 1; }
}

_ensure_venv() {
  local stamp_file="$VENV/.onetill-stamp" want have python
  want=$(cat "$ROOT/requirements.txt" "$ROOT/requirements-stubs.txt" | sha256sum | cut -c1-16)
  have=$(cat "$stamp_file" 2>/dev/null || true)
  [ "$want" = "$have" ] && [ -x "$PY" ] && return 0
  if [ ! -x "$PY" ]; then
    if ! python=$(_find_python311); then
      apt_install python3 python3-venv # Debian 12's python3 is 3.11
      python=$(_find_python311) || { _say "Python 3.11 is required"; return 1; }
    fi
    _say "creating .venv with $python"
    "$python" -m venv "$VENV" || return 1
  fi
  _say "installing pinned packages into .venv (first use or requirements changed)"
  "$PY" -m pip install -q --disable-pip-version-check -r "$ROOT/requirements.txt" 2>&1 |
    grep -v "^WARNING: Location" >&2
  [ "${PIPESTATUS[0]}" = 0 ] || { _say "pip install failed"; return 1; }
  rm -rf "$ROOT/typings"
  "$PY" -m pip install -q --disable-pip-version-check --target "$ROOT/typings" \
    -r "$ROOT/requirements-stubs.txt" 2>&1 | grep -v "^WARNING: Location" >&2
  [ "${PIPESTATUS[0]}" = 0 ] || { _say "stub install failed"; return 1; }
  echo "$want" >"$stamp_file"
}

_ensure_venv || exit 1
export PATH="$VENV/bin:$PATH"
