"""``farslip retrieval``: zero-shot image-text retrieval on RSICD, RSITMD, UCM-captions, SkyScript (docs/evaluation.md).

    farslip retrieval --model farslip-vitb16 --pretrained s2 --data-root /data/benchmark --output-dir results/
    farslip retrieval --model farslip-vitb32 --pretrained s1 --data-root /data/benchmark --datasets RSICD,UCM
    farslip retrieval --model ViT-B-32 --pretrained openai --csv pairs.csv --caption-key caption
"""
from __future__ import annotations

import argparse

from farslip_ext.evaluation.csv_datasets import RETRIEVAL_BENCHMARKS


def _run(args: argparse.Namespace) -> int:
    from farslip_ext.evaluation import _cli
    from farslip_ext.evaluation.csv_datasets import ImageTextRetrievalCsv
    from farslip_ext.evaluation.report import (
        TASK_RETRIEVAL,
        clip_benchmark_record,
        retrieval_markdown,
        retrieval_percent,
    )
    from farslip_ext.evaluation.retrieval import run_retrieval_benchmarks
    from farslip_ext.loading import load

    if args.csv:
        datasets = [ImageTextRetrievalCsv(args.csv, image_root=args.image_root, caption_key=args.caption_key,
                                          caption_prefix=args.caption_prefix, img_key=args.img_key, sep=args.sep,
                                          on_bad_row=args.on_bad_row, name=args.name)]
    else:
        if not args.data_root:
            raise ValueError("give --data-root (the benchmark folder) or --csv")
        names = _cli.split_names(args.datasets, list(RETRIEVAL_BENCHMARKS))
        # Read every CSV (and check every image) before the model is built: bad data fails fast.
        datasets = [ImageTextRetrievalCsv.from_benchmark(n, args.data_root, image_root=args.image_root,
                                                         on_bad_row=args.on_bad_row) for n in names]
    row, published = _cli.resolve_compare(args.compare, "ret", args.model, args.pretrained)
    lm = load(args.model, args.pretrained, device=args.device, precision=args.precision)
    results = run_retrieval_benchmarks(lm.model, lm.tokenizer, lm.preprocess, datasets, args.data_root,
                                       image_root=args.image_root, on_bad_row=args.on_bad_row, device=lm.device,
                                       precision=lm.precision, batch_size=args.batch_size, workers=args.workers,
                                       progress=args.progress)
    records = [clip_benchmark_record(d, args.model, args.pretrained, TASK_RETRIEVAL, m) for d, m in results.items()]
    md = retrieval_markdown(results, args.model, args.pretrained, published, row)
    summary = {"model": args.model, "pretrained": args.pretrained, "task": TASK_RETRIEVAL,
               "precision": str(lm.precision), "device": str(lm.device), "datasets": results,
               "percent": retrieval_percent(results),
               "published_row": list(row) if row else None, "published": published}
    return _cli.publish(args.output_dir, TASK_RETRIEVAL, records, summary, md)


def register(sub) -> None:
    from farslip_ext.commands import plain_text
    from farslip_ext.evaluation import _cli

    s = sub.add_parser("retrieval", help="zero-shot image-text retrieval (R@1/5/10/100, mean recall)",
                       description=plain_text(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    _cli.add_model_args(s)
    g = _cli.add_data_args(s, "all", list(RETRIEVAL_BENCHMARKS))
    g.add_argument("--caption-key", default="title", help="caption column of --csv")
    g.add_argument("--caption-prefix", default="", help="text put before every caption of --csv "
                                                        "(the benchmarks: 'a satellite image. ' for RSICD/RSITMD/UCM)")
    _cli.add_output_args(s)
    s.set_defaults(func=_run)
