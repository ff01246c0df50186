#!/usr/bin/env bash
# README command 1: set up the environment and run the main job on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/bootstrap.sh
exec .venv/bin/farslip demo "$@"
