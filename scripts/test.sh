#!/usr/bin/env bash
# Run the whole test suite (what CI runs) from the venv and the colcon install space.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. .venv/bin/activate
# shellcheck disable=SC1091
. scripts/ros_env.sh
exec python -m pytest -q -ra test/ "$@"
