"""Argument groups and helpers shared by ``farslip zeroshot`` and ``farslip retrieval``."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from farslip_ext.precision import PRECISIONS

logger = logging.getLogger(__name__)


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True,
                   help="farslip-vitb16/-vitb32, a stock open_clip name (ViT-B-32), hf-hub:org/repo or local-dir:PATH")
    g.add_argument("--pretrained", default=None,
                   help="tag (s1, s2, openai, ...) or checkpoint file in any FarSLIP container; default: none")
    g.add_argument("--device", default="auto", help="cuda, cuda:1, cpu; default: cuda if available")
    g.add_argument("--precision", default="amp", choices=PRECISIONS,
                   help="amp = fp16 autocast on CUDA as the reference (default; fp32 on a CPU), amp_bf16 = bf16 autocast, "
                        "fp32, or low-precision weights fp16/bf16")
    g.add_argument("--batch-size", type=int, default=128, help="images (or texts) per forward pass (default: 128); lower it when memory runs out")
    g.add_argument("--workers", type=int, default=4, help="data-loader processes")


def add_data_args(p: argparse.ArgumentParser, default_datasets: str, known: Sequence[str]) -> argparse._ArgumentGroup:
    g = p.add_argument_group("data")
    g.add_argument("--data-root", default=None,
                   help="benchmark folder in the SkyScript layout (see docs/evaluation.md)")
    g.add_argument("--datasets", default=default_datasets,
                   help=f"comma-separated names, or 'all' ({', '.join(known)}); default: {default_datasets}")
    g.add_argument("--image-root", default=None,
                   help="folder the CSVs' filepath values are relative to; default: --data-root (--csv: its folder)")
    g.add_argument("--csv", default=None, help="evaluate one CSV of your own instead of the named benchmarks")
    g.add_argument("--name", default=None, help="dataset name for --csv (default: from the file name)")
    g.add_argument("--img-key", default="filepath", help="image column of --csv")
    g.add_argument("--sep", default=",", help="separator of --csv")
    g.add_argument("--on-bad-row", default="error", choices=("error", "skip"),
                   help="a missing image or unknown class: stop with an error (default) or skip and count it")
    return g


def add_output_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--output-dir", default=None,
                   help="write one CLIP_benchmark JSON per dataset here (clip_benchmark build DIR reads them) and a summary "
                        "JSON and markdown table in DIR/report/")
    g.add_argument("--compare", default="auto",
                   help="paper row to print beside the results: 'auto' (from --model/--pretrained), 'none', "
                        "or BACKBONE:METHOD such as B/16:FarSLIP-s2")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: when stderr is a terminal)")


def split_names(spec: str, known: Sequence[str]) -> List[str]:
    if spec.strip().lower() == "all":
        return list(known)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise ValueError(f"--datasets {spec!r} names no dataset; choose from {list(known)} or 'all'")
    return names


def resolve_compare(spec: str, task: str, model: str, pretrained: Optional[str]
                    ) -> Tuple[Optional[Tuple[str, str]], Optional[Dict[str, float]]]:
    """``(row, numbers)`` of the paper to compare with, or ``(None, None)``."""
    from farslip_ext.evaluation.report import infer_published_row, published_numbers

    if spec.lower() == "none":
        return None, None
    if spec.lower() == "auto":
        row = infer_published_row(model, pretrained)
        if row is None:
            logger.info("no paper row for %s (%s); pass --compare BACKBONE:METHOD to compare", model, pretrained)
            return None, None
        try:
            return row, published_numbers(task, *row)
        except KeyError as e:
            logger.info("no paper numbers to compare with: %s", e)
            return None, None
    if ":" not in spec:
        raise ValueError(f"--compare {spec!r}: expected 'auto', 'none' or BACKBONE:METHOD (e.g. B/16:FarSLIP-s2)")
    backbone, method = spec.split(":", 1)
    return (backbone, method), published_numbers(task, backbone, method)


def write_outputs(output_dir: Optional[str], task: str, records: List[Dict[str, Any]], summary: Dict[str, Any],
                  markdown: str) -> List[Path]:
    """Records in ``output_dir`` (``clip_benchmark build output_dir`` reads them), the summary JSON and the
    markdown table in ``output_dir/report/`` (a JSON without ``metrics`` beside the records breaks ``build``)."""
    from farslip_ext.evaluation.report import REPORT_DIR, write_records
    from farslip_ext.io import atomic_path

    if not output_dir:
        return []
    out = Path(output_dir)
    paths = write_records(records, out)
    sp = out / REPORT_DIR / f"{task}_summary.json"
    with atomic_path(sp) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    mp = out / REPORT_DIR / f"{task}.md"
    with atomic_path(mp) as tmp:
        tmp.write_text(markdown, encoding="utf-8")
    return paths + [sp, mp]


def publish(output_dir: Optional[str], task: str, records: List[Dict[str, Any]], summary: Dict[str, Any],
            markdown: str) -> int:
    """Write the outputs, print the markdown table and the written paths; the commands' exit code."""
    import sys

    paths = write_outputs(output_dir, task, records, summary, markdown)
    sys.stdout.write(markdown)
    for p in paths:
        print(f"wrote {p}")
    return 0
