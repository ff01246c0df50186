"""Result files and reports: CLIP_benchmark JSON records, markdown tables beside the published numbers
(``farslip_ext.published.load_published_results``, docs/reference/paper-results.md §1.2-1.4), and the per-number
deviation check used by ``benchmarks/reproduce.py``.

JSON records follow CLIP_benchmark (``{"dataset", "model", "pretrained", "task", "metrics", "language"}``,
metric values as fractions); markdown tables and deviations are in percent, like the paper.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from farslip_ext.evaluation.csv_datasets import CLASSIFICATION_BENCHMARKS, PUBLISHED_CLASSIFICATION

__all__ = [
    "TASK_CLASSIFICATION",
    "TASK_RETRIEVAL",
    "TASK_OVSS",
    "REPORT_DIR",
    "PUBLISHED_TABLES",
    "clip_benchmark_record",
    "result_filename",
    "write_records",
    "infer_published_row",
    "published_numbers",
    "zeroshot_percent",
    "retrieval_percent",
    "zeroshot_markdown",
    "retrieval_markdown",
    "Deviation",
    "compare_to_published",
    "deviations_markdown",
]

TASK_CLASSIFICATION = "zeroshot_classification"
TASK_RETRIEVAL = "zeroshot_retrieval"
#: not a CLIP_benchmark task; its records have the same shape (``metrics``: ``miou`` as a fraction)
TASK_OVSS = "open_vocabulary_segmentation"
TASKS = (TASK_CLASSIFICATION, TASK_RETRIEVAL, TASK_OVSS)
#: the folder, inside an output folder, for everything that is not a CLIP_benchmark record
REPORT_DIR = "report"
#: our task -> key of ``load_published_results()``
PUBLISHED_TABLES = {"cls": "zeroshot_top1", "ret": "retrieval_mean_recall", "ovss": "ovss_miou"}


# ------------------------------------------------------------------------------------------ records
def clip_benchmark_record(dataset: str, model: str, pretrained: Optional[str], task: str,
                          metrics: Mapping[str, Any], language: str = "en", **extra: Any) -> Dict[str, Any]:
    """One result in CLIP_benchmark's JSON format (``extra`` keys are added at the top level, as
    CLIP_benchmark's own ``classnames``/``templates``).

    ``pretrained`` is always a string (``""`` when there is none): ``clip_benchmark build`` concatenates
    ``model + ' ' + pretrained``.
    """
    if task not in TASKS:
        raise ValueError(f"task={task!r}; choose one of {list(TASKS)}")
    return {"dataset": dataset, "model": model, "pretrained": pretrained or "", "task": task,
            "metrics": dict(metrics), "language": language, **extra}


def _slug(s: Optional[str], basename: bool = False) -> str:
    s = "none" if not s else s
    if basename and ("/" in s or "\\" in s) and Path(s).name:
        s = Path(s).name
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", s).strip("_") or "none"


def result_filename(record: Mapping[str, Any]) -> str:
    """CLIP_benchmark's default name: ``{dataset}_{pretrained}_{model}_{language}_{task}.json`` (a checkpoint
    path contributes its file name; other characters outside ``[A-Za-z0-9._+-]`` become ``_``)."""
    parts = [_slug(record["dataset"]), _slug(record["pretrained"], basename=True), _slug(record["model"]),
             _slug(record["language"]), _slug(record["task"])]
    return "_".join(parts) + ".json"


def write_records(records: Sequence[Mapping[str, Any]], output_dir: Union[str, Path]) -> List[Path]:
    """Write each record to ``output_dir/<result_filename>`` (atomically); returns the paths.

    Only records go into ``output_dir`` itself, so ``clip_benchmark build output_dir`` reads every
    ``*.json`` there as a result (summaries live in ``output_dir/report/``).
    """
    from farslip_ext.io import atomic_path

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in records:
        p = out / result_filename(r)
        with atomic_path(p) as tmp:
            tmp.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
        paths.append(p)
    return paths


# ------------------------------------------------------------------------------- published numbers
def infer_published_row(model: str, pretrained: Optional[str]) -> Optional[Tuple[str, str]]:
    """``(backbone, method)`` of the paper's tables for a model, or ``None`` when it is not one of them.

    ``farslip-vitb16`` + ``s2`` -> ``("B/16", "FarSLIP-s2")``; a file ``FarSLIP1_ViT-B-32.pt`` ->
    ``("B/32", "FarSLIP-s1")``; ``ViT-B-16`` + ``openai`` -> ``("B/16", "CLIP")``.
    """
    tag = (pretrained or "").strip()
    base = Path(tag).name.lower() if tag else ""
    text = f"{model} {base}".lower()
    backbone = "B/16" if re.search(r"b[-_/]?16", text) else "B/32" if re.search(r"b[-_/]?32", text) else None
    method = None
    if tag.lower().replace("-", "_") in ("s1", "s2"):
        method = f"FarSLIP-{tag.lower()}"
    elif re.search(r"farslip[-_ ]?s?([12])", base):
        method = f"FarSLIP-s{re.search(r'farslip[-_ ]?s?([12])', base).group(1)}"
    elif tag.lower() == "openai":
        method = "CLIP"
    if backbone is None or method is None:
        return None
    return backbone, method


def _ovss_method(method: str) -> str:
    m = re.fullmatch(r"FarSLIP-s([12])", method)
    return f"FarSLIP{m.group(1)}" if m else method


def published_numbers(task: str, backbone: str, method: str) -> Dict[str, float]:
    """The paper's numbers (percent) for ``task`` in ``cls``/``ret``/``ovss`` and one table row.

    OVSS rows are named ``FarSLIP1``/``FarSLIP2`` in the paper; ``FarSLIP-s1``/``-s2`` are mapped.
    """
    from farslip_ext.published import load_published_results

    if task not in PUBLISHED_TABLES:
        raise KeyError(f"unknown task {task!r}; choose one of {sorted(PUBLISHED_TABLES)}")
    table = load_published_results()[PUBLISHED_TABLES[task]]
    if backbone not in table:
        raise KeyError(f"the paper's {PUBLISHED_TABLES[task]} table has no backbone {backbone!r}; "
                       f"it has {sorted(table)}")
    rows = table[backbone]
    key = _ovss_method(method) if task == "ovss" else method
    if key not in rows:
        raise KeyError(f"the paper's {PUBLISHED_TABLES[task]} table has no row {key!r} for {backbone}; "
                       f"it has {sorted(rows)}")
    return {k: float(v) for k, v in rows[key].items()}


def zeroshot_percent(results: Mapping[str, Mapping[str, float]]) -> Dict[str, float]:
    """Top-1 in percent per dataset, plus ``mean`` when exactly the paper's 8 datasets were run."""
    out = {d: 100.0 * float(r["acc1"]) for d, r in results.items()}
    if set(results) == set(PUBLISHED_CLASSIFICATION):
        out["mean"] = sum(out[d] for d in PUBLISHED_CLASSIFICATION) / len(PUBLISHED_CLASSIFICATION)
    return out


def retrieval_percent(results: Mapping[str, Mapping[str, float]]) -> Dict[str, float]:
    """``{dataset}_i2t`` / ``{dataset}_t2i`` mean recall in percent (the paper's keys)."""
    out: Dict[str, float] = {}
    for d, r in results.items():
        out[f"{d}_i2t"] = 100.0 * float(r["text_retrieval_mean_recall"])
        out[f"{d}_t2i"] = 100.0 * float(r["image_retrieval_mean_recall"])
    return out


# ---------------------------------------------------------------------------------------- markdown
def _f(x: Optional[float], nd: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _d(ours: Optional[float], ref: Optional[float]) -> str:
    return "–" if ours is None or ref is None else f"{ours - ref:+.2f}"


def _weights(pretrained: Optional[str]) -> str:
    return f"`{pretrained}`" if pretrained else "no pretrained weights"


def _row_label(row: Optional[Tuple[str, str]]) -> str:
    return f"{row[1]} {row[0]}" if row else ""


def zeroshot_markdown(results: Mapping[str, Mapping[str, float]], model: str, pretrained: Optional[str],
                      published: Optional[Mapping[str, float]] = None,
                      published_row: Optional[Tuple[str, str]] = None) -> str:
    """A markdown table: top-1/top-5 (%) per dataset and mean, beside the paper's top-1 when given."""
    label = _row_label(published_row)
    head = f"| dataset | split | images | skipped | top-1 % | top-5 % | paper top-1 % {label} | Δ |"
    lines = [f"### Zero-shot classification: `{model}` ({_weights(pretrained)})", "", head,
             "|---|---|---|---|---|---|---|---|"]
    pub = published or {}
    for d, r in results.items():
        split = CLASSIFICATION_BENCHMARKS[d].split if d in CLASSIFICATION_BENCHMARKS else "custom"
        t1 = 100 * r["acc1"]
        lines.append(f"| {d} | {split} | {int(r.get('n_samples', 0))} | {int(r.get('n_skipped', 0))} | {_f(t1)} | "
                     f"{_f(100 * r['acc5'])} | {_f(pub.get(d))} | {_d(t1, pub.get(d))} |")
    if results:
        m1 = sum(100 * r["acc1"] for r in results.values()) / len(results)
        m5 = sum(100 * r["acc5"] for r in results.values()) / len(results)
        full = set(results) == set(PUBLISHED_CLASSIFICATION)
        ref = pub.get("mean") if full else None
        lines.append(f"| **mean** ({len(results)} sets) | | | | {_f(m1)} | {_f(m5)} | {_f(ref)} | {_d(m1, ref)} |")
        if pub and not full:
            lines += ["", "The paper's mean is over its 8 datasets; it is compared only when all 8 are run."]
    return "\n".join(lines) + "\n"


def retrieval_markdown(results: Mapping[str, Mapping[str, float]], model: str, pretrained: Optional[str],
                       published: Optional[Mapping[str, float]] = None,
                       published_row: Optional[Tuple[str, str]] = None) -> str:
    """A markdown table: R@1/5/10/100 and mean recall (%) per direction, beside the paper's mean recall."""
    label = _row_label(published_row)
    lines = [f"### Zero-shot retrieval: `{model}` ({_weights(pretrained)})", "",
             "| dataset | images | captions | skipped | I2T R@1 | R@5 | R@10 | R@100 | **I2T mR** | "
             "T2I R@1 | R@5 | R@10 | R@100 | **T2I mR** | mean mR | "
             f"paper I2T mR {label} | Δ | paper T2I mR | Δ |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    pub = published or {}
    for d, r in results.items():
        i2t = [100 * r[f"text_retrieval_recall@{k}"] for k in (1, 5, 10, 100)]
        t2i = [100 * r[f"image_retrieval_recall@{k}"] for k in (1, 5, 10, 100)]
        mi, mt = 100 * r["text_retrieval_mean_recall"], 100 * r["image_retrieval_mean_recall"]
        pi, pt = pub.get(f"{d}_i2t"), pub.get(f"{d}_t2i")
        counts = " | ".join(str(int(r.get(k, 0))) for k in ("n_images", "n_texts", "n_skipped"))
        lines.append(f"| {d} | {counts} | "
                     + " | ".join(_f(x) for x in i2t) + f" | **{_f(mi)}** | "
                     + " | ".join(_f(x) for x in t2i) + f" | **{_f(mt)}** | {_f(100 * r['mean_recall'])} | "
                     f"{_f(pi, 1)} | {_d(mi, pi)} | {_f(pt, 1)} | {_d(mt, pt)} |")
    lines += ["", "mR = mean of R@1, R@5, R@10 per direction (the paper's retrieval number, "
              "docs/reference/paper-results.md §1.4). I2T = image→text, T2I = text→image."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------- deviations
@dataclass
class Deviation:
    """One reproduced number against the paper (percent / percentage points)."""

    task: str
    key: str
    ours: Optional[float]
    published: float
    tolerance: float

    @property
    def deviation(self) -> Optional[float]:
        return None if self.ours is None else self.ours - self.published

    @property
    def ok(self) -> bool:
        return self.ours is not None and not math.isnan(self.ours) and abs(self.ours - self.published) <= self.tolerance

    def as_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "deviation": self.deviation, "ok": self.ok}


def compare_to_published(task: str, ours: Mapping[str, float], published: Mapping[str, float],
                         tolerance: float, keys: Optional[Sequence[str]] = None) -> List[Deviation]:
    """One :class:`Deviation` per published key (or per ``keys``); a key we did not produce fails."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    keys = list(keys) if keys is not None else list(published)
    return [Deviation(task, k, None if ours.get(k) is None else float(ours[k]), float(published[k]), tolerance)
            for k in keys]


def deviations_markdown(devs: Sequence[Deviation], title: str = "Reproduction against the paper") -> str:
    """A markdown table of every compared number with its deviation and verdict."""
    lines = [f"### {title}", "", "| task | number | ours % | paper % | Δ (pp) | tolerance | ok |",
             "|---|---|---|---|---|---|---|"]
    for d in devs:
        lines.append(f"| {d.task} | {d.key} | {_f(d.ours)} | {_f(d.published)} | "
                     f"{'missing' if d.ours is None else f'{d.deviation:+.2f}'} | ±{d.tolerance:g} | "
                     f"{'yes' if d.ok else '**NO**'} |")
    n_bad = sum(not d.ok for d in devs)
    lines += ["", f"{len(devs) - n_bad}/{len(devs)} numbers within tolerance."]
    return "\n".join(lines) + "\n"
