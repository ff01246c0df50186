"""``farslip ovss`` (run the OVSS benchmarks), ``farslip ovss-convert`` and ``farslip ovss-check``
(issue #5; ovss-protocol.md). mmseg is imported only when a command runs."""
from __future__ import annotations

import argparse
import ast
import json
import sys
from typing import Any, Dict, List


#: The benchmark keys (== farslip_ext.segmentation.benchmarks.BENCHMARK_ORDER; tests keep them equal).
DATASET_KEYS = ("openearthmap", "loveda", "potsdam", "vaihingen", "udd5", "vdd", "uavid", "isaid")


def _parse_sets(items: List[str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: write KEY=VALUE, e.g. --set cls_token_lambda=-0.3")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k.strip()] = v
    return out


def _run(args: argparse.Namespace) -> int:
    from farslip_ext.segmentation.evaluate import format_markdown, run_ovss

    overrides = _parse_sets(args.set)
    for key in ("device", "precision", "batch_size", "num_workers", "resize_long_side"):
        val = getattr(args, key)
        if val is not None:
            overrides[key] = val
    if args.save_predictions:
        overrides["save_predictions"] = True
    if args.compare:
        overrides["compare"] = args.compare
    if args.class_names:
        overrides["class_names"] = args.class_names
    try:
        results = run_ovss(args.model, args.pretrained, datasets=args.datasets, data_root=args.data_root,
                           work_dir=args.work_dir, preset=args.preset, **overrides)
    except TypeError as e:  # an unknown --set key: report it like the other usage errors
        raise ValueError(str(e)) from None
    from pathlib import Path

    md = Path(args.work_dir) / "ovss_results.md"
    print(md.read_text(encoding="utf-8") if md.is_file() else format_markdown(results, []))
    print(f"wrote {Path(args.work_dir) / 'ovss_results.json'} and {md}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from farslip_ext.segmentation.converters import convert_dataset

    report = convert_dataset(args.dataset, args.src, args.data_root, overwrite=args.overwrite,
                             progress=not args.no_progress)
    print(report.summary())
    return 0


def _check(args: argparse.Namespace) -> int:
    from farslip_ext.segmentation.benchmarks import resolve_benchmarks
    from farslip_ext.segmentation.converters import validate_layout

    out = {}
    for b in resolve_benchmarks(args.datasets):
        out[b.name] = validate_layout(b.key, args.data_root, limit=args.limit, progress=not args.no_progress)
    print(json.dumps(out, indent=2))
    return 0


def register(sub) -> None:
    # no farslip_ext.segmentation import here: it imports mmseg, and building the parser must stay cheap
    names = ", ".join(DATASET_KEYS)
    p = sub.add_parser("ovss", help="open-vocabulary semantic segmentation on the 8 RS benchmarks (mmseg)",
                       description="Run FarSLIPSeg under mmseg's Runner.test() on one or all eight OVSS benchmarks "
                                   "and write ovss_results.json / ovss_results.md (beside the published numbers).")
    p.add_argument("--model", default="farslip-vitb16",
                   help="farslip name, stock open_clip name, hf-hub:ORG/REPO, local-dir:PATH or a checkpoint file")
    p.add_argument("--pretrained", default=None, help="tag (s1, s2, openai, ...) or checkpoint path")
    p.add_argument("--datasets", default="all", help=f"'all' or a comma-separated list of: {names}")
    p.add_argument("--data-root", default="data", help="folder holding OpenEarthMap/, LoveDA/, potsdam/, ...")
    p.add_argument("--work-dir", default="work_dirs/ovss")
    p.add_argument("--preset", default="farslip", choices=["farslip", "segearth"],
                   help="farslip: the protocol of the published FarSLIP numbers; segearth: SegEarth-OV settings")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:1")
    p.add_argument("--precision", default=None, help="auto (fp16 on CUDA, fp32 on CPU), fp32, fp16, bf16, amp")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None)
    p.add_argument("--num-workers", dest="num_workers", type=int, default=None)
    p.add_argument("--resize-long-side", dest="resize_long_side", type=int, default=None)
    p.add_argument("--class-names", dest="class_names", default=None,
                   help="a class-name file for a single dataset (default: the shipped catalogue file)")
    p.add_argument("--compare", action="append", default=None,
                   help="published row BACKBONE:METHOD to print beside the results (repeatable), e.g. B/16:FarSLIP2")
    p.add_argument("--save-predictions", action="store_true", help="write predicted label PNGs per dataset")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any FarSLIPSeg setting, e.g. --set cls_token_lambda=-0.3 --set slide_stride=224")
    p.set_defaults(func=_run)

    c = sub.add_parser("ovss-convert", help="convert an OVSS benchmark's official release to the evaluated layout",
                       description="Convert the official release of one OVSS benchmark into the layout `farslip ovss` "
                                   "evaluates; labels are written as single-channel 'L' images and range-checked.")
    c.add_argument("dataset", help=names)
    c.add_argument("src", help="folder (or zip) of the official release")
    c.add_argument("--data-root", default="data")
    c.add_argument("--overwrite", action="store_true")
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=_convert)

    k = sub.add_parser("ovss-check", help="validate evaluated OVSS dataset folders (layout, label modes and values)")
    k.add_argument("--datasets", default="all")
    k.add_argument("--data-root", default="data")
    k.add_argument("--limit", type=int, default=None, help="check at most this many labels per dataset")
    k.add_argument("--no-progress", action="store_true")
    k.set_defaults(func=_check)


if __name__ == "__main__":  # pragma: no cover
    from farslip_ext.cli import main

    sys.exit(main(["ovss", *sys.argv[1:]]))
