"""``farslip benchmark``: the remote-sensing CLIP zoo on the paper's three task families, one leaderboard.

    farslip benchmark --models farslip-vitb16:s2,remoteclip-vitb32,georsclip-vitb32 \\
        --tasks ovss,zeroshot,retrieval --data-root /data/benchmark --ovss-data-root /data/ovss \\
        --output-dir outputs/benchmark
    farslip benchmark --list-models

Model specs: a zoo alias (remoteclip-vitb32), ARCH:TAG (farslip-vitb16:s2), ARCH:FILE, a checkpoint
FILE, hf-hub:ORG/NAME or local-dir:FOLDER; LABEL=SPEC names one. Every (model, dataset) cell is written as
a CLIP_benchmark record in OUTPUT_DIR as soon as it is done and reused by a rerun (the run resumes);
cells whose data or weights are missing are skipped and listed. The leaderboard (markdown, JSON, PNG)
is in OUTPUT_DIR/report/. Exit status: 0; 1 when --tolerance is given and a number is outside it.
"""
from __future__ import annotations

import argparse
import sys
from typing import List


def _names(spec: str) -> List[str]:
    return [s.strip() for s in spec.split(",") if s.strip()]


def _run(args: argparse.Namespace) -> int:
    from farslip_ext.errors import ConfigError
    from farslip_ext.evaluation.leaderboard import BenchmarkConfig, parse_tasks, run_benchmark
    from farslip_ext.evaluation.zoo import list_zoo_markdown, parse_model_spec

    if args.list_models:
        sys.stdout.write(list_zoo_markdown())
        return 0
    if not args.models:
        raise ConfigError("give --models (comma-separated specs; farslip benchmark --list-models shows the zoo)")
    specs = [parse_model_spec(s) for s in _names(args.models)]
    tasks = parse_tasks(args.tasks)
    datasets = {t: _names(v) for t, v in (("zeroshot", args.zeroshot_datasets), ("retrieval", args.retrieval_datasets),
                                          ("ovss", args.ovss_datasets)) if v}
    tolerance = None
    if args.tolerance is not None:
        tolerance = {t: args.tolerance for t in tasks}
    from farslip_ext.commands import parse_key_values

    ovss_overrides = parse_key_values(args.ovss_arg, "--ovss-arg", "slide_stride=112")
    cfg = BenchmarkConfig(models=specs, tasks=tasks, output_dir=args.output_dir, data_root=args.data_root,
                          image_root=args.image_root, ovss_data_root=args.ovss_data_root, datasets=datasets,
                          templates=args.templates, ovss_preset=args.ovss_preset,
                          ovss_overrides=ovss_overrides, device=args.device,
                          precision=args.precision, batch_size=args.batch_size, workers=args.workers,
                          on_bad_row=args.on_bad_row, on_missing="error" if args.strict else "skip",
                          resume=not args.rerun, progress=args.progress, figure=args.figure, tolerance=tolerance)
    run = run_benchmark(cfg)
    sys.stdout.write((run.files[0]).read_text(encoding="utf-8"))
    print(f"{run.computed} cells evaluated, {run.reused} reused, {run.skipped} skipped")
    for p in run.files:
        print(f"wrote {p}")
    return 0 if run.ok else 1


def register(sub) -> None:
    from farslip_ext.commands import plain_text
    from farslip_ext.precision import PRECISIONS

    s = sub.add_parser("benchmark", help="the RS CLIP zoo on OVSS, zero-shot classification and retrieval: one "
                                         "resumable leaderboard beside the paper's numbers",
                       description=plain_text(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--models", default=None,
                   help="comma-separated model specs: zoo aliases, ARCH:TAG, ARCH:FILE, FILE, hf-hub:/local-dir:, "
                        "LABEL=SPEC")
    s.add_argument("--list-models", action="store_true", help="print the zoo (aliases, sources, licences) and exit")
    s.add_argument("--tasks", default="ovss,zeroshot,retrieval", help="comma-separated: ovss, zeroshot (cls), "
                                                                      "retrieval (ret); default: all three")
    g = s.add_argument_group("data")
    g.add_argument("--data-root", default=None, help="SkyScript benchmark folder (zeroshot, retrieval)")
    g.add_argument("--image-root", default=None,
                   help="folder the CSVs' filepaths are relative to (default: --data-root)")
    g.add_argument("--ovss-data-root", default=None, help="segmentation data folder (OpenEarthMap/, LoveDA/, ...)")
    g.add_argument("--zeroshot-datasets", default=None, help="subset of the 8 classification sets (default: all)")
    g.add_argument("--retrieval-datasets", default=None,
                   help="subset of RSICD,RSITMD,UCM (default: those three; SkyScript may be added)")
    g.add_argument("--ovss-datasets", default=None, help="subset of the 8 OVSS sets (default: all)")
    g.add_argument("--on-bad-row", default="error", choices=("error", "skip"),
                   help="a missing image or unknown class inside a dataset: error (default) or skip and count")
    p = s.add_argument_group("protocol")
    p.add_argument("--templates", default="farslip", help="classification prompts (default: farslip, the published)")
    p.add_argument("--ovss-preset", default="farslip", help="OVSS preset (default: farslip, the published protocol)")
    p.add_argument("--ovss-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra run_ovss setting (JSON value), repeatable")
    r = s.add_argument_group("run")
    r.add_argument("--device", default="auto", help="cuda, cuda:1, cpu; default: cuda if available")
    r.add_argument("--precision", default="amp", choices=PRECISIONS,
                   help="amp (default: fp16 autocast on CUDA as the reference, fp32 on a CPU), amp_bf16, fp32, ...")
    r.add_argument("--batch-size", type=int, default=128,
                   help="images (or texts) per forward pass (default: 128); lower it when memory runs out")
    r.add_argument("--workers", type=int, default=4, help="data-loader processes")
    r.add_argument("--rerun", action="store_true", help="evaluate every cell again instead of reusing finished ones")
    r.add_argument("--strict", action="store_true",
                   help="missing data, weights or segmentation package is an error instead of a skipped cell")
    r.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: when stderr is a terminal)")
    o = s.add_argument_group("output")
    o.add_argument("--output-dir", default="outputs/benchmark",
                   help="records here (clip_benchmark build DIR reads them), leaderboard in DIR/report/")
    o.add_argument("--tolerance", type=float, default=None,
                   help="check every published number within this many points (exit 1 when one is outside)")
    o.add_argument("--figure", action=argparse.BooleanOptionalAction, default=True, help="write leaderboard.png")
    s.set_defaults(func=_run)
