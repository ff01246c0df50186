"""``farslip selfcheck``: build a model and run one forward pass on the embedded image."""
from __future__ import annotations

import argparse
import json


def _run(args: argparse.Namespace) -> int:
    from farslip_ext.selfcheck import run_selfcheck

    print(json.dumps(run_selfcheck(args.model, pretrained=args.pretrained, device=args.device), indent=2))
    return 0


def register(sub) -> None:
    s = sub.add_parser("selfcheck", help="build a model and run one forward pass on the embedded image")
    s.add_argument("--model", default="farslip-vitb16")
    s.add_argument("--pretrained", default=None, help="tag (s1, s2) or checkpoint path; default: random init")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=_run)
