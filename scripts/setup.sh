#!/usr/bin/env bash
# One-command pip-mode setup for mine_robot (no ROS install needed).
#   - installs the Debian packages the tests use (when root or with sudo),
#   - creates .venv/ with pinned ROS 2 Kilted wheels and the Python dependencies,
#   - installs mine_robot in editable mode.
# Idempotent: a second run with unchanged requirements only checks a stamp and exits.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${MINE_ROBOT_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
APT_PACKAGES=(liburdfdom-tools)

log() { printf '[setup] %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo "$@"
  else return 1
  fi
}

apt_install() {
  command -v apt-get >/dev/null 2>&1 || { log "no apt-get: skipping Debian packages ($*)"; return 0; }
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
    as_root apt-get update -qq >/dev/null 2>&1 || true
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
      || log "WARNING: could not install ${missing[*]} (not root?); tests needing them will skip"
  fi
}

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else 1)' \
  || { echo "mine_robot needs Python >= 3.11 (found: $("$PYTHON" --version 2>&1))" >&2; exit 1; }

# python3-venv is a separate package on Debian/Ubuntu.
if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  pyver="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
  apt_install "python${pyver}-venv" || apt_install python3-venv
fi
apt_install "${APT_PACKAGES[@]}"

# The stamp covers everything that changes what pip installs, including the node list
# (console scripts are generated from mine_robot/nodes/*.py).
stamp_input() {
  cat requirements.txt constraints.txt setup.py setup.cfg package.xml
  ls mine_robot/nodes/*.py 2>/dev/null || true
  "$PYTHON" --version 2>&1
}
want="$(stamp_input | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.mine_robot_setup_stamp"
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  log "environment up to date ($VENV)"
  exit 0
fi

[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
log "installing pinned dependencies (ROS 2 Kilted wheels + Python libraries)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
log "installing mine_robot (editable)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
"$VENV/bin/mine-robot" --help >/dev/null
echo "$want" > "$stamp"
log "done: activate with 'source .venv/bin/activate', or call .venv/bin/mine-robot directly"
