"""The OVSS report: per-dataset mIoU beside the published numbers (``ovss_results.json`` / ``.md``).

The published table is read with :func:`farslip_ext.published.load_published_results` and joined to a
run by dataset name; datasets the paper does not have get "—".
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

__all__ = ["parse_comparison", "default_comparison", "format_markdown", "write_report"]


def _table() -> Dict[str, Dict[str, Dict[str, float]]]:
    from farslip_ext.published import load_published_results

    return load_published_results()["ovss_miou"]


def parse_comparison(items: Optional[Sequence[str]]) -> List[Tuple[str, str]]:
    """``["B/16:FarSLIP2", ...]`` → ``[("B/16", "FarSLIP2"), ...]`` checked against the published table."""
    table = _table()
    out = []
    for item in items or []:
        if ":" not in item:
            raise ValueError(f"compare={item!r}: write BACKBONE:METHOD, e.g. 'B/16:FarSLIP2'")
        bb, method = (s.strip() for s in item.split(":", 1))
        if bb not in table or method not in table[bb]:
            known = [f"{b}:{m}" for b, ms in table.items() for m in ms]
            raise ValueError(f"compare={item!r} is not in the published OVSS table; choose from {known}")
        out.append((bb, method))
    return out


def default_comparison(model: str, pretrained: Optional[str]) -> List[Tuple[str, str]]:
    """Published rows to print beside a run: the matching FarSLIP row for ``farslip-vitb{16,32}`` +
    ``s1``/``s2`` (or a ``FarSLIP{1,2}_ViT-B-{16,32}.pt`` file), CLIP for ``openai``, else both FarSLIP rows
    of the backbone when it can be read from the names."""
    table = _table()
    text = f"{model} {pretrained or ''}".lower()
    backbone = "B/16" if re.search(r"b-?16|vitb16", text) else "B/32" if re.search(r"b-?32|vitb32", text) else None
    p = str(pretrained or "").lower()
    method = None
    if p == "s1" or "farslip1" in text:
        method = "FarSLIP1"
    elif p == "s2" or "farslip2" in text:
        method = "FarSLIP2"
    elif p == "openai" or re.search(r"(?<![a-z0-9])openai(?![a-z0-9])", text):
        method = "CLIP"
    elif re.search(r"(?<![a-z0-9])s1(?![a-z0-9])", text):
        method = "FarSLIP1"
    elif re.search(r"(?<![a-z0-9])s2(?![a-z0-9])", text):
        method = "FarSLIP2"
    if backbone is None:
        return []
    if method and method in table.get(backbone, {}):
        return [(backbone, method)]
    return [(backbone, m) for m in ("FarSLIP1", "FarSLIP2") if m in table.get(backbone, {})]


def _fmt(v: Optional[float]) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def format_markdown(results: Dict[str, float], rows: Sequence[Tuple[str, str]], label: str = "this run") -> str:
    """A markdown table: one line per dataset (+ Mean), our mIoU, each published row and the difference.
    The published mean is the paper's when the run covers exactly its datasets, else the mean of the
    published values of the datasets run (and "—" when the paper has none of them)."""
    table = _table()
    names = [n for n in results if n != "Mean"]
    head = ["dataset", label] + [f"{m} {b} (published)" for b, m in rows] + [f"Δ vs {m} {b}" for b, m in rows]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    full = bool(rows) and all(set(names) == set(table[b][m]) - {"Mean"} for b, m in rows)
    for n in names + ["Mean"]:
        ours = results.get(n)
        pubs: List[Optional[float]] = []
        for b, m in rows:
            ref = table[b][m]
            if n != "Mean":
                pubs.append(ref.get(n))
            elif full:
                pubs.append(ref["Mean"])
            else:
                have = [ref[x] for x in names if x in ref]
                pubs.append(round(sum(have) / len(have), 2) if have and len(have) == len(names) else None)
        deltas = [None if (p is None or ours is None) else ours - p for p in pubs]
        shown = n if n != "Mean" or full or not rows else f"Mean ({len(names)} datasets)"
        lines.append("| " + " | ".join([shown, _fmt(ours)] + [_fmt(p) for p in pubs] +
                                        [("—" if d is None else f"{d:+.2f}") for d in deltas]) + " |")
    return "\n".join(lines) + "\n"


def write_report(results: Dict[str, float], work_dir: Union[str, Path], meta: Dict[str, Any],
                 rows: Sequence[Tuple[str, str]]) -> Tuple[Path, Path]:
    """Write ``ovss_results.json`` and ``ovss_results.md`` into ``work_dir``."""
    from farslip_ext.io import atomic_path

    wd = Path(work_dir)
    wd.mkdir(parents=True, exist_ok=True)
    table = _table()
    payload = dict(meta, miou=results, published={f"{b}:{m}": table[b][m] for b, m in rows})
    jp, mp = wd / "ovss_results.json", wd / "ovss_results.md"
    with atomic_path(jp) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    label = f"{meta.get('model')}" + (f" ({meta.get('pretrained')})" if meta.get("pretrained") else "")
    md = (f"# OVSS mIoU (%) — {label}, preset {meta.get('preset')}\n\n"
          + format_markdown(results, rows, label="this run")
          + "\nPublished: the FarSLIP OVSS table (docs/reference/paper-results.md).\n")
    with atomic_path(mp) as tmp:
        tmp.write_text(md, encoding="utf-8")
    return jp, mp
