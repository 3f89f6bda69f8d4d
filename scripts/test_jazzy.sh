#!/usr/bin/env bash
# Check that depthvlm_ros builds and runs on ROS 2 Jazzy (LTS) from the PyPI wheels, side by side
# with the default Kilted setup and without touching it: its own venv (.venv-jazzy), its own
# colcon folders (build-jazzy/ install-jazzy/ log-jazzy/). Not part of CI.
#
#   bash scripts/test_jazzy.sh              # set up .venv-jazzy if missing, build, run the ROS tests
#   bash scripts/test_jazzy.sh -k live -x   # extra arguments go to pytest
#
# The venv gets torch==2.13.0 (CPU build), the non-ROS pins of requirements.txt and
# requirements-jazzy.txt; a second run only checks that they are installed (set
# DEPTHVLM_JAZZY_REINSTALL=1 to run pip again).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
PYTHON=${PYTHON:-python3}
export DEPTHVLM_VENV=.venv-jazzy DEPTHVLM_BUILD_SUFFIX=-jazzy
VPY="$REPO/.venv-jazzy/bin/python"

if [[ ! -x "$VPY" || -n "${DEPTHVLM_JAZZY_REINSTALL:-}" \
      || ! -f "$REPO/.venv-jazzy/.depthvlm-jazzy-ready" ]]; then
  [[ -x "$VPY" ]] || { echo "[jazzy] creating .venv-jazzy with $($PYTHON --version)"; "$PYTHON" -m venv .venv-jazzy; }
  "$VPY" -m pip install -q --upgrade pip
  # torch first and pinned: an unpinned torch would pull several GB of CUDA wheels.
  "$VPY" -m pip install -q torch==2.13.0
  # requirements.txt without its ROS 2 Kilted wheels (ros-*) and colcon (pinned in both).
  nonros="$(mktemp)"
  trap 'rm -f "$nonros"' EXIT
  grep -vE '^[[:space:]]*(ros-|colcon-)' requirements.txt > "$nonros"
  "$VPY" -m pip install -q -r "$nonros" -r requirements-jazzy.txt
  "$VPY" -m pip install -q --no-deps -e .
  touch "$REPO/.venv-jazzy/.depthvlm-jazzy-ready"
  echo "[jazzy] .venv-jazzy ready"
fi
"$VPY" -c 'import importlib.metadata as m, sys; v = m.version("ros-rclpy"); print("[jazzy] rclpy", v); sys.exit(not v.startswith("7."))' \
  || { echo "[jazzy] .venv-jazzy does not hold Jazzy's rclpy 7.x; remove it and run again" >&2; exit 1; }

bash scripts/build_ros.sh

# A clean environment for the tests: no Kilted venv or install space left on the paths.
unset VIRTUAL_ENV PYTHONPATH AMENT_PREFIX_PATH CMAKE_PREFIX_PATH COLCON_PREFIX_PATH \
      _ROS_WHEELS_BOOTSTRAP_COMPLETE DEPTHVLM_ROS_INSTALL
# shellcheck source=scripts/ros_env.sh
. scripts/ros_env.sh
exec python -m pytest -q -ra \
  test/test_ros_build.py test/test_ros_convert.py test/test_node_live.py test/test_worker.py \
  test/test_config_yaml_launch.py test/test_demo.py "$@"
