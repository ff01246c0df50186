"""``farslip train CONFIG [--cfg-options key=value ...]`` (also under ``torchrun``)."""
from __future__ import annotations

import argparse
import json


def _run(args: argparse.Namespace) -> int:
    from farslip_ext.train.config import load_config
    from farslip_ext.train.loop import train

    options = dict(args.cfg_options or {})
    if args.work_dir:
        options["train.work_dir"] = args.work_dir
    if args.resume:
        options["train.resume"] = args.resume
    cfg = load_config(args.config, options)
    result = train(cfg)
    print(json.dumps(result, default=str))
    return 0


def register(sub) -> None:
    from mmengine.config import DictAction

    from farslip_ext.train.config import list_recipes

    s = sub.add_parser("train", help="train with a recipe (stage1, stage2, clip_baseline) or a config file",
                       description="Precedence: built-in defaults < CONFIG < --cfg-options. "
                                   f"Built-in recipes: {', '.join(list_recipes())}. Multi-GPU/multi-node: "
                                   "torchrun --nproc-per-node N -m farslip_ext.cli train CONFIG ...")
    s.add_argument("config", help="a config file or a built-in recipe name")
    s.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                   help="override any config value, e.g. optim.lr=1e-5 data.batch_size=64")
    s.add_argument("--work-dir", default=None, help="shortcut for train.work_dir")
    s.add_argument("--resume", default=None, help="'auto' (default: latest in work_dir), 'none' or a checkpoint path")
    s.set_defaults(func=_run)
