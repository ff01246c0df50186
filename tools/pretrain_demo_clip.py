"""Regenerate the demo's small CLIP: farslip_ext/assets/demo_clip.safetensors (+ demo_clip.json).

Seeded synthetic image-caption pairs -> the project's training loop from random init
(farslip_ext/demo/pretrain_config.py) -> fp16 safetensors in open_clip keys -> held-out zero-shot
classification and retrieval with the real evaluators -> a JSON record with the sha256.

    python tools/pretrain_demo_clip.py                       # the shipped file (about 10 CPU minutes)
    python tools/pretrain_demo_clip.py --quick --out /tmp/tiny.safetensors --work-dir /tmp/pretrain
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without an install

from farslip_ext.demo.pretrain import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
