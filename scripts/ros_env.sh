# Source this file (bash) to use the colcon install space of this repository:
#
#   bash scripts/build_ros.sh && source scripts/ros_env.sh
#   python -c 'from depthvlm_ros.msg import SpatialQuery'
#   install/depthvlm_ros/lib/depthvlm_ros/depthvlm_node --ros-args -r image:=/camera/image_raw
#
# What it does:
#   * activates ./.venv when no virtual environment is active (the PyPI ROS wheels live there);
#   * puts the venv prefix on AMENT_PREFIX_PATH, where the wheels keep their ament index
#     (a system ROS sourced from /opt/ros/<distro>/setup.bash is left as it is);
#   * sources install/setup.bash, which colcon generates and which works with the wheels too:
#     it prepends install/depthvlm_ros to AMENT_PREFIX_PATH and CMAKE_PREFIX_PATH, its
#     site-packages to PYTHONPATH and its lib/ to LD_LIBRARY_PATH;
#   * sets RMW_IMPLEMENTATION=rmw_fastrtps_cpp unless already set (the only RMW the wheels ship);
#   * points Fast DDS at config/fastdds_large_messages.xml unless a profiles file is already set
#     (camera-sized messages through shared memory rather than fragmented UDP);
#   * with DEPTHVLM_ROS_SOURCE=1, also puts the repository root first on PYTHONPATH, so that the
#     live source tree is imported instead of the copy in install/ (depthvlm_ros/__init__.py
#     extends the package path, so depthvlm_ros.msg still comes from install/).
# Returns non-zero, with a message, when install/ has not been built.
#
# A second ROS distribution built with scripts/build_ros.sh (see there), for example Jazzy:
#   DEPTHVLM_VENV=.venv-jazzy DEPTHVLM_BUILD_SUFFIX=-jazzy source scripts/ros_env.sh
# uses install-jazzy/ and activates .venv-jazzy (instead of the one active, if it differs).

_depthvlm_env() {
  local repo venv_prefix install venv
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
  install="$repo/install${DEPTHVLM_BUILD_SUFFIX:-}"
  if [[ ! -f "$install/setup.bash" ]]; then
    echo "ros_env.sh: $install/setup.bash not found; run: bash $repo/scripts/build_ros.sh" >&2
    return 1
  fi
  if [[ -n "${DEPTHVLM_VENV:-}" ]]; then
    venv="$DEPTHVLM_VENV"
    [[ "$venv" == /* ]] || venv="$repo/$venv"
    if [[ ! -f "$venv/bin/activate" ]]; then
      echo "ros_env.sh: DEPTHVLM_VENV=$DEPTHVLM_VENV: $venv/bin/activate not found" >&2
      return 1
    fi
    if [[ "${VIRTUAL_ENV:-}" != "$(cd "$venv" && pwd)" ]]; then
      # shellcheck disable=SC1091
      source "$venv/bin/activate" || return 1
    fi
  elif [[ -z "${VIRTUAL_ENV:-}" && -f "$repo/.venv/bin/activate" ]]; then
    # shellcheck disable=SC1091
    source "$repo/.venv/bin/activate" || return 1
  fi
  venv_prefix="${VIRTUAL_ENV:-}"
  if [[ -n "$venv_prefix" && -d "$venv_prefix/share/ament_index" ]]; then
    case ":${AMENT_PREFIX_PATH:-}:" in
      *":$venv_prefix:"*) ;;
      *) export AMENT_PREFIX_PATH="$venv_prefix${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
    esac
  fi
  # colcon's scripts read unset variables; callers running under `set -u` must not break.
  local had_nounset=0
  [[ $- == *u* ]] && had_nounset=1 && set +u
  # shellcheck disable=SC1091
  source "$install/setup.bash"
  local rc=$?
  ((had_nounset)) && set -u
  ((rc == 0)) || return "$rc"
  # colcon leaves an empty entry when LD_LIBRARY_PATH was unset; an empty entry means "the
  # current directory" to the dynamic loader, so drop it.
  local part cleaned=""
  local IFS=:
  for part in ${LD_LIBRARY_PATH:-}; do
    [[ -n "$part" ]] && cleaned="${cleaned:+$cleaned:}$part"
  done
  export LD_LIBRARY_PATH="$cleaned"
  export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
  # Camera-sized messages through shared memory instead of fragmented UDP (see the file).
  if [[ -z "${FASTDDS_DEFAULT_PROFILES_FILE:-}${FASTRTPS_DEFAULT_PROFILES_FILE:-}" ]]; then
    export FASTDDS_DEFAULT_PROFILES_FILE="$repo/config/fastdds_large_messages.xml"
    # Fast DDS 2.x (libfastrtps; Humble, Jazzy) reads only the old name, and 3.x logs a
    # deprecation warning in every process when the old name is set: set it only for 2.x.
    # Look where the loader and ament look (a source build keeps fastrtps off ament's path).
    local dir libdirs=()
    for dir in ${LD_LIBRARY_PATH:-}; do libdirs+=("$dir"); done  # IFS is ':' here
    for dir in ${AMENT_PREFIX_PATH:-}; do
      if [[ -n "$dir" ]]; then libdirs+=("$dir/lib"); fi
    done
    for dir in "${libdirs[@]}"; do
      if [[ -n "$dir" ]] && compgen -G "$dir/libfastrtps.so*" >/dev/null; then
        export FASTRTPS_DEFAULT_PROFILES_FILE="$FASTDDS_DEFAULT_PROFILES_FILE"
        break
      fi
    done
  fi
  if [[ "${DEPTHVLM_ROS_SOURCE:-0}" == 1 ]]; then
    export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
  fi
  export DEPTHVLM_ROS_INSTALL="$install"
}
_depthvlm_env
_depthvlm_env_rc=$?
unset -f _depthvlm_env
# Sourced: report through the return status; run directly: through the exit status.
return "$_depthvlm_env_rc" 2>/dev/null || exit "$_depthvlm_env_rc"
