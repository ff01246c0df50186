#!/usr/bin/env python
"""Reproduce the paper's tables for one checkpoint and check every number against them.

A thin call of ``farslip benchmark`` (:func:`farslip_ext.evaluation.leaderboard.run_benchmark`) with one
model, the published protocol of each task family, missing inputs as errors and a tolerance check:
zero-shot classification (8 SkyScript sets, top-1 and their mean; docs/reference/paper-results.md §1.3), retrieval
(RSICD/RSITMD/UCM mean recall per direction; docs/reference/paper-results.md §1.4) and open-vocabulary segmentation (8 datasets and their
mean, mIoU; docs/reference/paper-results.md §1.2, via ``farslip_ext.segmentation.run_ovss``).

    python benchmarks/reproduce.py --model farslip-vitb16 --pretrained s2 \\
        --data-root /data/skyscript_benchmark --ovss-data-root /data/ovss --output-dir outputs/reproduce

Output: the CLIP_benchmark records in ``--output-dir``; ``report/reproduce.json`` (every number, its
deviation and verdict), ``report/reproduce.md`` and the leaderboard files in ``--output-dir/report/``.
Finished cells are reused by a rerun with the same model and protocol.

Exit status: 0 all numbers within tolerance; 1 some number outside it (or not produced); 2 usage or data
error (unknown paper row, missing files or weights, segmentation not available).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from farslip_ext.commands import parse_key_values

logger = logging.getLogger("farslip_ext.benchmarks.reproduce")

TASKS = ("cls", "ret", "ovss")
FAMILY = {"cls": "zeroshot", "ret": "retrieval", "ovss": "ovss"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reproduce.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="farslip-vitb16, a zoo alias, hf-hub:..., local-dir:..., a file")
    p.add_argument("--pretrained", default=None, help="tag (s1, s2, openai) or checkpoint file")
    p.add_argument("--tasks", default="cls,ret,ovss", help="comma-separated subset of cls,ret,ovss")
    p.add_argument("--backbone", default=None, help="paper row backbone (B/16, B/32); default: inferred")
    p.add_argument("--method", default=None, help="paper row (FarSLIP-s1, FarSLIP-s2, CLIP, ...); default: inferred")
    p.add_argument("--data-root", default=None, help="SkyScript benchmark folder (classification and retrieval)")
    p.add_argument("--image-root", default=None, help="folder the CSV filepaths are relative to (default: --data-root)")
    p.add_argument("--ovss-data-root", default=None, help="segmentation data folder (passed to run_ovss)")
    p.add_argument("--ovss-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra keyword for run_ovss (JSON values), repeatable")
    p.add_argument("--templates", default="farslip", help="prompt templates for classification (default: farslip)")
    p.add_argument("--tolerance", type=float, default=1.0, help="allowed |ours - paper| in points (default 1.0)")
    p.add_argument("--tol-cls", type=float, default=None, help="tolerance for classification (default: --tolerance)")
    p.add_argument("--tol-ret", type=float, default=None, help="tolerance for retrieval (default: --tolerance)")
    p.add_argument("--tol-ovss", type=float, default=None, help="tolerance for segmentation (default: --tolerance)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="amp", choices=("amp", "amp_bf16", "fp32"))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--on-bad-row", default="error", choices=("error", "skip"))
    p.add_argument("--output-dir", default="outputs/reproduce")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _spec(args: argparse.Namespace):
    """The model spec with the paper row to compare with (given, or inferred from the names)."""
    from dataclasses import replace

    from farslip_ext.evaluation.report import _ovss_method, infer_published_row
    from farslip_ext.evaluation.zoo import TASK_FAMILIES, ModelSpec, parse_model_spec, paper_rows
    from farslip_ext.published import TASK_TABLES, PaperRow

    if args.pretrained is None:
        spec = parse_model_spec(args.model)
    else:
        from farslip_ext.evaluation.zoo import find_zoo_alias

        spec = ModelSpec(f"{args.model}:{args.pretrained}", args.model, args.model, args.pretrained,
                         alias=find_zoo_alias(args.model, args.pretrained))
    if args.backbone or args.method:
        inferred = infer_published_row(spec.model, spec.pretrained)
        backbone = args.backbone or (inferred[0] if inferred else None)
        method = args.method or (inferred[1] if inferred else None)
        if not backbone or not method:
            raise ValueError("pass both --backbone (B/16, B/32) and --method (FarSLIP-s1, FarSLIP-s2, CLIP, ...)")
        rows = {t: PaperRow(TASK_TABLES[t], backbone, _ovss_method(method) if t == "ovss" else method)
                for t in TASK_FAMILIES}
        return replace(spec, row_override=rows), rows
    rows = paper_rows(spec)
    if all(r is None for r in rows.values()):
        raise ValueError(f"cannot tell which row of the paper {args.model!r} (pretrained={args.pretrained!r}) "
                         f"reproduces; pass --backbone (B/16, B/32) and --method (FarSLIP-s1, FarSLIP-s2, CLIP, ...)")
    return spec, rows


def run(args: argparse.Namespace) -> int:
    from farslip_ext.evaluation.leaderboard import BenchmarkConfig, run_benchmark
    from farslip_ext.evaluation.report import REPORT_DIR, deviations_markdown
    from farslip_ext.published import published_row

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise ValueError(f"--tasks {args.tasks!r}: unknown {bad}; choose from {list(TASKS)}")
    spec, rows = _spec(args)
    if "ovss" in tasks:  # fail before the long runs
        from farslip_ext.evaluation.leaderboard import load_run_ovss

        load_run_ovss()
    for t in tasks:  # every requested table must have the row (KeyError names the rows it has)
        if rows[FAMILY[t]] is None:
            raise KeyError(f"the paper's {FAMILY[t]} table has no row for {spec.text!r}; pass --backbone/--method")
        published_row(rows[FAMILY[t]])
    if ("cls" in tasks or "ret" in tasks) and not args.data_root:
        raise ValueError("classification and retrieval need --data-root (the SkyScript benchmark folder)")
    if "ovss" in tasks and not args.ovss_data_root:
        raise ValueError("segmentation needs --ovss-data-root")
    tol = {"cls": args.tol_cls, "ret": args.tol_ret, "ovss": args.tol_ovss}
    tol = {FAMILY[t]: (args.tolerance if v is None else v) for t, v in tol.items() if t in tasks}
    if any(v < 0 for v in tol.values()):
        raise ValueError(f"tolerances must be >= 0, got {tol}")
    ovss_overrides = parse_key_values(args.ovss_arg, "--ovss-arg", "slide_stride=112")
    cfg = BenchmarkConfig(models=[spec], tasks=[FAMILY[t] for t in tasks], output_dir=args.output_dir,
                          data_root=args.data_root, image_root=args.image_root, ovss_data_root=args.ovss_data_root,
                          templates=args.templates, ovss_overrides=ovss_overrides, device=args.device,
                          precision=args.precision, batch_size=args.batch_size, workers=args.workers,
                          on_bad_row=args.on_bad_row, on_missing="error", progress=args.progress, tolerance=tol)
    result = run_benchmark(cfg)
    short = {v: k for k, v in FAMILY.items()}
    for d in result.deviations:
        d.task = short[d.task]
    board = result.leaderboard
    numbers = {short[t]: dict(v["rows"][0]["values"], **({"mean" if t == "zeroshot" else "Mean": v["rows"][0]["mean"]}
                                                       if v["rows"][0].get("mean") is not None else {}))
               for t, v in board["tasks"].items()}
    head = rows[FAMILY[tasks[0]]]
    report = {"model": args.model, "pretrained": args.pretrained, "paper_row": [head.backbone, _method(rows)],
              "tasks": tasks, "tolerance": {short[k]: v for k, v in tol.items()}, "results": numbers,
              "deviations": [d.as_dict() for d in result.deviations], "ok": result.ok}
    out = Path(args.output_dir) / REPORT_DIR
    (out / "reproduce.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = (Path(result.files[0]).read_text(encoding="utf-8") + "\n" +
            deviations_markdown(result.deviations, f"Reproduction of {report['paper_row'][1]} "
                                                   f"{report['paper_row'][0]} (tolerance in pp)"))
    (out / "reproduce.md").write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    n_bad = sum(not d.ok for d in result.deviations)
    if n_bad:
        logger.error("%d of %d numbers are outside the tolerance; see %s", n_bad, len(result.deviations),
                     out / "reproduce.md")
        return 1
    return 0


def _method(rows: Dict[str, Any]) -> str:
    """The row's method as the classification/retrieval tables name it (FarSLIP-s2, not FarSLIP2)."""
    for t in ("zeroshot", "retrieval", "ovss"):
        if rows.get(t) is not None:
            return rows[t].method
    return ""


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from farslip_ext.errors import FarSLIPError

    try:
        return run(args)
    except (FarSLIPError, FileNotFoundError, KeyError, ValueError, RuntimeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"reproduce.py: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
