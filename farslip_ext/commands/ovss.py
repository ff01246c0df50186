"""``farslip ovss`` (run OVSS benchmarks or your own mmseg config), ``farslip ovss-convert`` and
``farslip ovss-check`` (docs/ovss.md). mmseg is imported only when a command runs."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict


def _overrides(args: argparse.Namespace) -> Dict[str, Any]:
    from farslip_ext.commands import parse_key_values

    overrides = parse_key_values(args.set, "--set", "cls_token_lambda=-0.3")
    for key in ("device", "precision", "batch_size", "num_workers", "resize_long_side", "class_names", "compare"):
        val = getattr(args, key)
        if val is not None:
            overrides[key] = val
    if args.save_predictions:
        overrides["save_predictions"] = True
    if args.cfg_options:
        overrides["cfg_options"] = dict(args.cfg_options)
    overrides["progress"] = False if args.no_progress else None
    overrides["log_level"] = "INFO" if getattr(args, "verbosity", 0) >= 1 else "WARNING"
    return overrides


def _list() -> int:
    from farslip_ext.ovss.benchmarks import list_benchmarks
    from farslip_ext.ovss.presets import list_presets

    print("benchmarks (farslip ovss --datasets KEY,...):")
    for b in list_benchmarks():
        print(f"  {b.key:14s} {b.name:14s} {b.num_classes:3d} classes  {b.config_file}")
    print("presets (--preset NAME):")
    for p in list_presets().values():
        print(f"  {p.name:14s} {p.description}")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.list:
        return _list()
    from farslip_ext.segmentation.evaluate import run_config, run_ovss

    pretrained = args.pretrained
    if args.model is not None and pretrained is None:
        from farslip_ext.commands.segment import default_tag

        pretrained = default_tag(args.model)  # the released s2 weights of the architecture, else s1
    if pretrained is not None and pretrained.lower() == "none":
        pretrained = "random"
    overrides = _overrides(args)
    if args.config:
        if args.datasets is not None:
            raise ValueError("--config runs one config; --datasets selects shipped benchmarks. Pass one of them")
        results = run_config(args.config, args.model, pretrained, data_root=args.data_root, work_dir=args.work_dir,
                             preset=args.preset, **overrides)
    else:
        results = run_ovss(args.model, pretrained, datasets=args.datasets or "all", data_root=args.data_root or "data",
                           work_dir=args.work_dir, preset=args.preset or "farslip", **overrides)
    md = Path(args.work_dir) / "ovss_results.md"
    if md.is_file():
        print(md.read_text(encoding="utf-8"))
        print(f"wrote {Path(args.work_dir) / 'ovss_results.json'} and {md}")
    else:  # pragma: no cover - write_report=False is not reachable from the CLI
        print(json.dumps(results, indent=2))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from farslip_ext.ovss.converters import convert_dataset

    report = convert_dataset(args.dataset, args.src, args.data_root, overwrite=args.overwrite,
                             progress=not args.no_progress)
    print(report.summary())
    return 0


def _check(args: argparse.Namespace) -> int:
    from farslip_ext.ovss.benchmarks import resolve_benchmarks
    from farslip_ext.ovss.converters import validate_layout

    out = {}
    for b in resolve_benchmarks(args.datasets):
        out[b.name] = validate_layout(b.key, args.data_root, limit=args.limit, progress=not args.no_progress)
    print(json.dumps(out, indent=2))
    return 0


def register(sub) -> None:
    # nothing heavy here: building the parser must not import mmseg (or read the configs)
    from mmengine.config import DictAction

    p = sub.add_parser(
        "ovss", help="open-vocabulary semantic segmentation benchmarks, or your own mmseg config (mmseg Runner.test)",
        description="Run FarSLIPSeg under mmseg's Runner.test() on the shipped OVSS benchmarks (--datasets) or on "
                    "your own config (--config), and write ovss_results.json / ovss_results.md beside the published "
                    "numbers. Shows a progress bar over the images and the results table; -v adds mmengine's log.",
        epilog="examples: farslip ovss --datasets loveda,potsdam --data-root data ; "
               "farslip ovss --config my_config.py --cfg-options model.slide_stride=224 ; farslip ovss --list")
    p.add_argument("--config", default=None,
                   help="an mmseg config to run instead of the shipped benchmarks (a full config, or a short one "
                        "completed from the base config: model.class_names + test_dataloader.dataset)")
    p.add_argument("--cfg-options", dest="cfg_options", nargs="+", action=DictAction, default=None, metavar="KEY=VALUE",
                   help="mmengine-style overrides merged into every config run, e.g. model.clip.pretrained=s1 "
                        "test_dataloader.batch_size=4")
    p.add_argument("--datasets", default=None,
                   help="shipped/plugin benchmarks: 'all' (default), 'paper' (the eight of the FarSLIP table) or keys "
                        "separated by commas, e.g. loveda,potsdam (see --list)")
    p.add_argument("--list", action="store_true", help="list the registered benchmarks and presets, then exit")
    p.add_argument("--model", default=None,
                   help="the CLIP: farslip name, stock open_clip name, hf-hub:ORG/REPO, local-dir:PATH or a checkpoint "
                        "file (default: the config's, farslip-vitb16)")
    p.add_argument("--pretrained", default=None,
                   help="its weights: tag (s1, s2, openai, ...) or checkpoint path; default s2 for the farslip models; "
                        "'random' = random weights on purpose")
    p.add_argument("--data-root", dest="data_root", default=None,
                   help="folder holding the dataset folders (OpenEarthMap/, LoveDA/, potsdam/, ...; default 'data'); "
                        "with --config: the dataset's root (or its parent when the config has a benchmark dict)")
    p.add_argument("--work-dir", dest="work_dir", default="work_dirs/ovss",
                   help="where logs, predictions and ovss_results.{json,md} go (default work_dirs/ovss)")
    p.add_argument("--preset", default=None,
                   help="settings overlay: farslip (default for --datasets; the protocol of the published FarSLIP "
                        "numbers), segearth (SegEarth-OV settings) or a plugin's; with --config only when given")
    p.add_argument("--device", default=None, help="where the model runs: auto (default), cpu, cuda, cuda:1")
    p.add_argument("--precision", default=None,
                   help="model precision: auto (fp16 on CUDA, fp32 on CPU), fp32, fp16, bf16, amp")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None,
                   help="images per batch (default: the config's; 8, or 2 for the large UDD5/VDD/OpenEarthMap images)")
    p.add_argument("--num-workers", dest="num_workers", type=int, default=None,
                   help="data-loader worker processes (default: what fits this machine, at most the config's 4)")
    p.add_argument("--resize-long-side", dest="resize_long_side", type=int, default=None,
                   help="long side of the pipeline's keep-ratio resize (default 448, the protocol's)")
    p.add_argument("--class-names", dest="class_names", default=None,
                   help="class names for the dataset(s) run: a file (one class per line), classnames:<file> or "
                        "'a,b;c' (default: each benchmark's own file)")
    p.add_argument("--compare", action="append", default=None,
                   help="published row BACKBONE:METHOD to print beside the results (repeatable), e.g. B/16:FarSLIP2 "
                        "(default: the row matching --model/--pretrained)")
    p.add_argument("--save-predictions", action="store_true",
                   help="write predicted label PNGs per dataset under WORK_DIR/<dataset>/predictions")
    p.add_argument("--no-progress", dest="no_progress", action="store_true",
                   help="no progress output (default: a bar on a terminal, periodic log lines otherwise)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any segmentor setting, e.g. --set cls_token_lambda=-0.3 --set slide_stride=224")
    p.set_defaults(func=_run)

    c = sub.add_parser("ovss-convert", help="convert an OVSS benchmark's official release to the evaluated layout",
                       description="Convert the official release of one OVSS benchmark into the layout `farslip ovss` "
                                   "evaluates; labels are written as single-channel 'L' images and range-checked.")
    c.add_argument("dataset", help="benchmark key: openearthmap, loveda, potsdam, vaihingen, udd5, vdd, uavid, isaid")
    c.add_argument("src", help="folder (or zip) of the official release")
    c.add_argument("--data-root", default="data", help="where the converted dataset folder is written (default data)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing converted folder")
    c.add_argument("--no-progress", action="store_true", help="no progress output")
    c.set_defaults(func=_convert)

    k = sub.add_parser("ovss-check", help="validate evaluated OVSS dataset folders (layout, label modes and values)")
    k.add_argument("--datasets", default="all", help="'all', 'paper' or benchmark keys separated by commas")
    k.add_argument("--data-root", default="data", help="folder holding the dataset folders (default data)")
    k.add_argument("--limit", type=int, default=None, help="check at most this many labels per dataset")
    k.add_argument("--no-progress", action="store_true", help="no progress output")
    k.set_defaults(func=_check)


if __name__ == "__main__":  # pragma: no cover
    from farslip_ext.cli import main

    sys.exit(main(["ovss", *sys.argv[1:]]))
