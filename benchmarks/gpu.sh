#!/usr/bin/env bash
# One GPU, < 5 minutes: stage-1 / stage-2 ViT-B/16 bf16 pairs/s + MFU (torch.compile, fused AdamW, with and
# without gradient checkpointing) and OVSS images/s. JSON lines on stdout; arguments go to benchmarks/gpu.py
# (e.g. --batch 256, --eager, --budget-s 240; --tiny --device cpu is the smoke run of the test suite).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then py="$root/.venv/bin/python"; else py="python"; fi
fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
exec "$py" "$here/gpu.py" "$@"
