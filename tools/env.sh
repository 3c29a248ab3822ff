# Source this file (bash) to get the environment `make` uses:
#   . tools/env.sh
# the project virtual environment (unless a system ROS 2 is sourced), the
# colcon install space, and loopback-only DDS discovery.
_S2M_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${ROS_DISTRO:-}" ] || [ -n "${S2M_VENV_ACTIVE:-}" ]; then
    # tools/bootstrap.sh makes ./.venv a symlink to the real venv (outside the tree)
    _S2M_VENV="${S2M_VENV:-$(readlink -f "$_S2M_ROOT/.venv" 2>/dev/null)}"
    if [ -f "$_S2M_VENV/bin/activate" ]; then
        . "$_S2M_VENV/bin/activate"
        export AMENT_PREFIX_PATH="$_S2M_VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
        export S2M_VENV_ACTIVE=1
    fi
fi
# colcon's setup.bash fails under `set -u`
case $- in *u*) _S2M_HAD_U=1; set +u;; *) _S2M_HAD_U=;; esac
if [ -f "$_S2M_ROOT/install/setup.bash" ]; then
    . "$_S2M_ROOT/install/setup.bash"
fi
[ -n "$_S2M_HAD_U" ] && set -u
# Never leave the machine: discovery on loopback only (ROS_LOCALHOST_ONLY is ignored by Kilted).
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export ROS_LOG_DIR="${ROS_LOG_DIR:-$_S2M_ROOT/log/ros}"
# Large messages (images, clouds) through shared memory instead of lossy fragmented UDP.
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$_S2M_ROOT/config/fastdds_localhost.xml}"
mkdir -p "$ROS_LOG_DIR"
unset _S2M_ROOT _S2M_VENV _S2M_HAD_U
# Do not put the current directory first on sys.path: from the repository root
# the source tree's s2m_ros/ (without the generated s2m_ros.msg) would shadow
# the installed package. (Python >= 3.11; harmless before.)
export PYTHONSAFEPATH=1
