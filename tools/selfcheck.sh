#!/usr/bin/env bash
# `make demo` for now: a self-check of the installed nodes (see s2m_ros/cli/selfcheck.py).
set -eo pipefail
exec python -m s2m_ros.cli.selfcheck "$@"
