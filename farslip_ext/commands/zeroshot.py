"""``farslip zeroshot``: zero-shot scene classification on the SkyScript benchmark layouts (docs/evaluation.md).

    farslip zeroshot --model farslip-vitb16 --pretrained s2 --data-root /data/benchmark --output-dir results/
    farslip zeroshot --model ViT-B-32 --pretrained openai --data-root /data/benchmark --datasets aid,eurosat
    farslip zeroshot --model hf-hub:org/repo --csv my.csv --classnames classes.txt --templates openai
"""
from __future__ import annotations

import argparse

from farslip_ext.evaluation.csv_datasets import PUBLISHED_CLASSIFICATION


def _run(args: argparse.Namespace) -> int:
    from farslip_ext.evaluation import _cli
    from farslip_ext.evaluation.csv_datasets import SceneClassificationCsv
    from farslip_ext.evaluation.report import (
        TASK_CLASSIFICATION,
        clip_benchmark_record,
        zeroshot_markdown,
        zeroshot_percent,
    )
    from farslip_ext.evaluation.templates import build_templates
    from farslip_ext.evaluation.zeroshot import mean_over_datasets, run_zeroshot_benchmarks
    from farslip_ext.loading import load

    templates = build_templates(args.templates)
    if args.csv:
        if not args.classnames:
            raise ValueError("--csv needs --classnames (a text file with one class name per line)")
        datasets = [SceneClassificationCsv(args.csv, args.classnames, image_root=args.image_root, img_key=args.img_key,
                                           label_key=args.label_key, sep=args.sep, label_mode=args.label_mode,
                                           on_bad_row=args.on_bad_row, name=args.name)]
    else:
        if not args.data_root:
            raise ValueError("give --data-root (the benchmark folder) or --csv with --classnames")
        names = _cli.split_names(args.datasets, PUBLISHED_CLASSIFICATION)
        # Read every CSV (and check every image) before the model is built: bad data fails fast.
        datasets = [SceneClassificationCsv.from_benchmark(n, args.data_root, image_root=args.image_root,
                                                          on_bad_row=args.on_bad_row) for n in names]
    row, published = _cli.resolve_compare(args.compare, "cls", args.model, args.pretrained)
    lm = load(args.model, args.pretrained, device=args.device, precision=args.precision)
    results = run_zeroshot_benchmarks(lm.model, lm.tokenizer, lm.preprocess, datasets, args.data_root,
                                      image_root=args.image_root, templates=templates, on_bad_row=args.on_bad_row,
                                      device=lm.device, precision=lm.precision, batch_size=args.batch_size,
                                      workers=args.workers, progress=args.progress)
    records = [clip_benchmark_record(d, args.model, args.pretrained, TASK_CLASSIFICATION, m)
               for d, m in results.items()]
    md = zeroshot_markdown(results, args.model, args.pretrained, published, row)
    summary = {"model": args.model, "pretrained": args.pretrained, "task": TASK_CLASSIFICATION,
               "templates": templates.name, "precision": str(lm.precision), "device": str(lm.device),
               "datasets": results, "mean": mean_over_datasets(results),
               "percent": zeroshot_percent(results),
               "published_row": list(row) if row else None, "published": published}
    return _cli.publish(args.output_dir, TASK_CLASSIFICATION, records, summary, md)


def register(sub) -> None:
    from farslip_ext.commands import plain_text
    from farslip_ext.evaluation import _cli

    s = sub.add_parser("zeroshot", help="zero-shot scene classification (top-1/top-5) on the SkyScript benchmarks",
                       description=plain_text(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    _cli.add_model_args(s)
    g = _cli.add_data_args(s, "all", PUBLISHED_CLASSIFICATION)
    g.add_argument("--classnames", default=None, help="class-name list for --csv (one per line)")
    g.add_argument("--label-key", default="label", help="label column of --csv")
    g.add_argument("--label-mode", default="auto", choices=("auto", "name", "index"),
                   help="labels are class names, 0-based indices, or auto-detected (default)")
    s.add_argument("--templates", default="farslip",
                   help="prompt templates: farslip (default: the two satellite prompts), skyscript, openai, "
                        "or a TEMPLATES registry name")
    _cli.add_output_args(s)
    s.set_defaults(func=_run)
