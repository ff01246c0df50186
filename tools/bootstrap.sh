#!/usr/bin/env bash
# Create (or reuse) the project virtual environment from the pinned requirement files and install
# farslip_ext into it in editable mode. Reused as long as the requirement files are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${FARSLIP_VENV:-.venv}"
PY="${PYTHON:-python3}"
stamp_src="$(cat requirements/*.txt setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)"
stamp_file="$VENV/.farslip-requirements.sha256"
if [ -x "$VENV/bin/python" ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp_src" ]; then
  exit 0
fi
log="$(mktemp)"
pip_install() {
  if ! "$VENV/bin/python" -m pip install --quiet "$@" >"$log" 2>&1; then
    grep -v "is ignored: it is neither a file nor a directory" "$log" >&2
    echo "[bootstrap] pip install $* failed" >&2
    exit 1
  fi
}
echo "[bootstrap] creating $VENV from requirements/test.txt (pinned, with pip; ~2 min on a fresh machine)" >&2
start=$(date +%s)
"$PY" -m venv "$VENV"
pip_install -r requirements/test.txt
pip_install --no-deps -e .
"$VENV/bin/python" -c "import farslip_ext, open_clip, mmseg, torchvision"
echo "$stamp_src" > "$stamp_file"
echo "[bootstrap] environment ready in $(( $(date +%s) - start )) s" >&2
