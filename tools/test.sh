#!/usr/bin/env bash
# README command 2: set up the environment and run the test suite (CPU, offline).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/bootstrap.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest -q "$@"
