"""``farslip train CONFIG [--cfg-options key=value ...] [--print-config]`` (also under ``torchrun``)."""
from __future__ import annotations

import argparse
import json


def _run(args: argparse.Namespace) -> int:
    from farslip_ext.train.config import describe_config, load_config

    options = dict(args.cfg_options or {})
    if args.work_dir:
        options["train.work_dir"] = args.work_dir
    if args.resume:
        options["train.resume"] = args.resume
    if args.resume_allow_changes:
        options["train.resume_allow_changes"] = list(args.resume_allow_changes)
    cfg = load_config(args.config, options)
    if args.print_config:
        print(describe_config(cfg))
        return 0
    from farslip_ext.train.loop import train

    result = train(cfg)
    print(json.dumps(result, default=str))
    return 0


def register(sub) -> None:
    from mmengine.config import DictAction

    s = sub.add_parser("train", help="train with a recipe (stage1, stage2, clip_baseline, plugin recipes) or a "
                                     "config file",
                       description="Precedence: built-in defaults < CONFIG < --cfg-options. Recipes: stage1, stage2, "
                                   "clip_baseline and any a plugin adds (farslip_recipe_paths); an unknown name is an "
                                   "error that lists them. Multi-GPU/multi-node: "
                                   "torchrun --nproc-per-node N -m farslip_ext.cli train CONFIG ...")
    s.add_argument("config", help="a config file or a recipe name")
    s.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                   help="override any config value, e.g. optim.lr=1e-5 data.batch_size=64 task.losses.distill.weight=0.2")
    s.add_argument("--work-dir", default=None, help="shortcut for train.work_dir")
    s.add_argument("--resume", default=None, help="'auto' (default: latest in work_dir), 'none' or a checkpoint path")
    s.add_argument("--resume-allow-changes", nargs="+", default=None, metavar="KEY",
                   help="resume although these config keys (or prefixes, e.g. data.batch_size, data, task, world_size) "
                        "differ from the checkpoint's; the resume is then not exact (docs/training.md)")
    s.add_argument("--print-config", action="store_true",
                   help="print the resolved config (defaults < CONFIG < --cfg-options) with every component's "
                        "defaults filled in — every key --cfg-options can set — and exit without training")
    s.set_defaults(func=_run)
