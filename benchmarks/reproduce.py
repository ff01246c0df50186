#!/usr/bin/env python
"""Reproduce the paper's tables for one checkpoint and check every number against them.

Runs zero-shot classification (8 SkyScript sets, top-1; published-results.md §1.3), retrieval
(RSICD/RSITMD/UCM mean recall per direction; §1.4) and open-vocabulary segmentation (8 datasets, mIoU;
§1.2, via ``farslip_ext.segmentation.evaluate.run_ovss``), compares each number with
``farslip_ext.catalogue.load_published_results()`` and exits non-zero when any is outside the tolerance.

    python benchmarks/reproduce.py --model farslip-vitb16 --pretrained s2 \\
        --data-root /data/skyscript_benchmark --ovss-data-root /data/ovss --output-dir outputs/reproduce

Exit status: 0 all numbers within tolerance; 1 some number outside it (or not produced); 2 usage or data
error (unknown paper row, missing files, segmentation not available).
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

logger = logging.getLogger("farslip_ext.benchmarks.reproduce")

TASKS = ("cls", "ret", "ovss")
OVSS_MODULE = "farslip_ext.segmentation.evaluate"


def _parse_kv(items: Sequence[str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for it in items:
        if "=" not in it:
            raise ValueError(f"--ovss-arg {it!r}: expected KEY=VALUE")
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _align_keys(result: Dict[str, float], wanted: Sequence[str]) -> Dict[str, float]:
    """Rename ``result`` keys that match a paper key up to case and punctuation (``openearthmap`` ->
    ``OpenEarthMap``); other keys are kept as they are."""
    def norm(k: str) -> str:
        return "".join(ch for ch in k.lower() if ch.isalnum())

    by_norm = {norm(w): w for w in wanted}
    return {by_norm.get(norm(k), k): v for k, v in result.items()}


def load_run_ovss() -> Callable[..., Dict[str, float]]:
    """``run_ovss`` from the segmentation package, imported only when OVSS is requested."""
    try:
        mod = importlib.import_module(OVSS_MODULE)
        fn = getattr(mod, "run_ovss")
    except (ImportError, AttributeError) as e:
        raise RuntimeError(
            f"segmentation evaluation is not available ({OVSS_MODULE}.run_ovss: {type(e).__name__}: {e}). "
            f"It needs the segmentation extra (pip install 'farslip-ext[seg]') and issue #5's evaluator; "
            f"run without it with --tasks cls,ret.") from e
    return fn


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reproduce.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="farslip-vitb16, farslip-vitb32, hf-hub:..., local-dir:..., ...")
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


def run(args: argparse.Namespace) -> int:
    from farslip_ext.evaluation.csv_datasets import PUBLISHED_CLASSIFICATION, PUBLISHED_RETRIEVAL
    from farslip_ext.evaluation.report import (
        TASK_CLASSIFICATION,
        TASK_RETRIEVAL,
        Deviation,
        clip_benchmark_record,
        compare_to_published,
        deviations_markdown,
        infer_published_row,
        published_numbers,
        retrieval_markdown,
        retrieval_percent,
        write_records,
        zeroshot_markdown,
        zeroshot_percent,
    )

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise ValueError(f"--tasks {args.tasks!r}: unknown {bad}; choose from {list(TASKS)}")
    row = infer_published_row(args.model, args.pretrained)
    backbone = args.backbone or (row[0] if row else None)
    method = args.method or (row[1] if row else None)
    if not backbone or not method:
        raise ValueError(f"cannot tell which row of the paper {args.model!r} (pretrained={args.pretrained!r}) "
                         f"reproduces; pass --backbone (B/16, B/32) and --method (FarSLIP-s1, FarSLIP-s2, CLIP, ...)")
    published = {t: published_numbers(t, backbone, method) for t in tasks}  # KeyError names the rows
    tol = {"cls": args.tol_cls, "ret": args.tol_ret, "ovss": args.tol_ovss}
    tol = {t: args.tolerance if v is None else v for t, v in tol.items()}
    run_ovss = load_run_ovss() if "ovss" in tasks else None  # fail before the long runs
    if ("cls" in tasks or "ret" in tasks) and not args.data_root:
        raise ValueError("classification and retrieval need --data-root (the SkyScript benchmark folder)")
    if "ovss" in tasks and not args.ovss_data_root:
        raise ValueError("segmentation needs --ovss-data-root")

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    devs: List[Deviation] = []
    raw: Dict[str, Any] = {}
    md: List[str] = []
    records: List[Dict[str, Any]] = []
    # Read every CSV and check every image before the model is built: bad data fails fast.
    from farslip_ext.evaluation.csv_datasets import ImageTextRetrievalCsv, SceneClassificationCsv

    kw = dict(image_root=args.image_root, on_bad_row=args.on_bad_row)
    cls_sets = [SceneClassificationCsv.from_benchmark(n, args.data_root, **kw)
                for n in PUBLISHED_CLASSIFICATION] if "cls" in tasks else []
    ret_sets = [ImageTextRetrievalCsv.from_benchmark(n, args.data_root, **kw)
                for n in PUBLISHED_RETRIEVAL] if "ret" in tasks else []
    lm = None
    if "cls" in tasks or "ret" in tasks:
        from farslip_ext.loading import load

        lm = load(args.model, args.pretrained, device=args.device, precision=args.precision)
    common = dict(batch_size=args.batch_size, workers=args.workers, progress=args.progress)
    if "cls" in tasks:
        from farslip_ext.evaluation.zeroshot import run_zeroshot_benchmarks

        res = run_zeroshot_benchmarks(lm.model, lm.tokenizer, lm.preprocess, cls_sets, templates=args.templates,
                                      device=lm.device, precision=lm.precision, **common)
        raw["cls"] = res
        records += [clip_benchmark_record(d, args.model, args.pretrained, TASK_CLASSIFICATION, m)
                    for d, m in res.items()]
        devs += compare_to_published("cls", zeroshot_percent(res), published["cls"], tol["cls"])
        md.append(zeroshot_markdown(res, args.model, args.pretrained, published["cls"], (backbone, method)))
    if "ret" in tasks:
        from farslip_ext.evaluation.retrieval import run_retrieval_benchmarks

        res = run_retrieval_benchmarks(lm.model, lm.tokenizer, lm.preprocess, ret_sets, device=lm.device,
                                       precision=lm.precision, **common)
        raw["ret"] = res
        records += [clip_benchmark_record(d, args.model, args.pretrained, TASK_RETRIEVAL, m) for d, m in res.items()]
        devs += compare_to_published("ret", retrieval_percent(res), published["ret"], tol["ret"])
        md.append(retrieval_markdown(res, args.model, args.pretrained, published["ret"], (backbone, method)))
    if "ovss" in tasks:
        names = [k for k in published["ovss"] if k != "Mean"]
        res = run_ovss(model=args.model, pretrained=args.pretrained, datasets=names, data_root=args.ovss_data_root,
                       work_dir=str(out / "ovss"), **_parse_kv(args.ovss_arg))
        raw["ovss"] = _align_keys({k: float(v) for k, v in res.items()}, list(published["ovss"]))
        if "Mean" not in raw["ovss"] and all(n in raw["ovss"] for n in names):
            raw["ovss"]["Mean"] = sum(raw["ovss"][n] for n in names) / len(names)
        devs += compare_to_published("ovss", raw["ovss"], published["ovss"], tol["ovss"])

    write_records(records, out)
    report = {"model": args.model, "pretrained": args.pretrained, "paper_row": [backbone, method],
              "tasks": tasks, "tolerance": {t: tol[t] for t in tasks}, "results": raw,
              "deviations": [d.as_dict() for d in devs], "ok": all(d.ok for d in devs)}
    with open(out / "reproduce.json", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    text = "\n".join(md + [deviations_markdown(devs, f"Reproduction of {method} {backbone} (tolerance in pp)")])
    (out / "reproduce.md").write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    n_bad = sum(not d.ok for d in devs)
    if n_bad:
        logger.error("%d of %d numbers are outside the tolerance; see %s", n_bad, len(devs), out / "reproduce.md")
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as e:
        print(f"reproduce.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
