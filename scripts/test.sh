#!/usr/bin/env bash
# The whole test suite: sets up (idempotent), lints with ruff, then runs pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k planner).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/setup.sh"
VENV="${MINE_ROBOT_VENV:-$ROOT/.venv}"

# DDS discovery never leaves this machine; each run gets its own domain (test/conftest.py
# also derives a per-run domain when none is given).
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 100) + 1 ))}"
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp

echo "[test] ruff check"
"$VENV/bin/ruff" check .
echo "[test] pytest (ROS_DOMAIN_ID=$ROS_DOMAIN_ID)"
exec "$VENV/bin/python" -m pytest "$@"
