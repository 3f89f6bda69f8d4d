#!/usr/bin/env bash
# Set up everything on a fresh machine: a venv with pinned packages (CPU torch 2.13.0, ROS 2
# Kilted from PyPI), this package in editable mode, and the colcon build of the ROS interfaces.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first and pinned: an unpinned torch would pull several GB of CUDA wheels.
python -m pip install -q torch==2.13.0
python -m pip install -q -r requirements.txt
python -m pip install -q --no-deps -e .
echo "[setup] python packages ready"
bash scripts/build_ros.sh
echo "[setup] done: . .venv/bin/activate && . scripts/ros_env.sh"
