#!/usr/bin/env bash
# The main job on the embedded model: node + played sample bag + recording + questions.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. .venv/bin/activate
# shellcheck disable=SC1091
. scripts/ros_env.sh
exec python -m depthvlm_ros.cli demo "$@"
