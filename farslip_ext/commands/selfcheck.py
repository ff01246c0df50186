"""``farslip selfcheck``: build a model and run one forward pass on the embedded image."""
from __future__ import annotations

import argparse
import json


def _run(args: argparse.Namespace) -> int:
    from farslip_ext.selfcheck import run_selfcheck

    print(json.dumps(run_selfcheck(args.model, pretrained=args.pretrained, device=args.device), indent=2))
    return 0


def register(sub) -> None:
    s = sub.add_parser("selfcheck", help="build a model and run one forward pass on the embedded image",
                       description="Install check: build MODEL, encode the embedded satellite image and four prompts, "
                                   "and print the embedding shapes, the text context and the prompt probabilities "
                                   "(random weights unless --pretrained is given, so the probabilities mean nothing "
                                   "then).")
    s.add_argument("--model", default="farslip-vitb16", help="architecture to build (default: farslip-vitb16)")
    s.add_argument("--pretrained", default=None,
                   help="tag (s1, s2, demo) or checkpoint file; default: random init (no download)")
    s.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1 or auto")
    s.set_defaults(func=_run)
