#!/usr/bin/env bash
# The live part of `make demo`: both installed nodes over DDS (see s2m_ros/cli/selfcheck.py).
set -eo pipefail
exec python -m s2m_ros.cli.selfcheck "$@"
