"""The paper's published result tables, as data (``registry/published_results.json``).

Kept apart from the model catalogue: a leaderboard or report joins its own numbers to these by key
(table, backbone, method, dataset). The zoo aliases of ``registry/pretrained.json`` name the row each
model is compared with; :func:`rows_without_weights` lists the rows no public OpenCLIP weights reproduce.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, Iterator, Optional, Tuple

from farslip_ext.catalogue import catalogue_dir

__all__ = ["load_published_results", "TABLES", "TASK_TABLES", "PaperRow", "published_row", "iter_rows",
           "rows_without_weights"]

#: table key -> what its values are
TABLES: Dict[str, str] = {
    "ovss_miou": "OVSS mIoU % (8 datasets + Mean)",
    "zeroshot_top1": "zero-shot scene classification top-1 % (8 datasets + mean)",
    "retrieval_mean_recall": "retrieval mean recall of R@1/5/10 % per direction (<set>_i2t, <set>_t2i)",
}
#: task family (``farslip benchmark --tasks``) -> table key
TASK_TABLES: Dict[str, str] = {"ovss": "ovss_miou", "zeroshot": "zeroshot_top1", "retrieval": "retrieval_mean_recall"}


@lru_cache(maxsize=1)
def _load() -> str:
    return (catalogue_dir() / "published_results.json").read_text(encoding="utf-8")


def load_published_results() -> Dict[str, Any]:
    """``{"ovss_miou" | "zeroshot_top1" | "retrieval_mean_recall": {backbone: {method: {dataset: value}}}}``.

    Backbones are ``"B/16"``/``"B/32"``; FarSLIP rows are ``FarSLIP1``/``FarSLIP2`` (OVSS) and
    ``FarSLIP-s1``/``FarSLIP-s2`` (classification, retrieval), as printed in the paper. Keys starting
    with ``_`` are notes. A fresh copy on every call.
    """
    return json.loads(_load())


@dataclass(frozen=True)
class PaperRow:
    """One row of a published table."""

    table: str
    backbone: str
    method: str

    @property
    def label(self) -> str:
        return f"{self.method} {self.backbone}"


def published_row(row: PaperRow) -> Dict[str, float]:
    """The numbers (percent) of ``row``; an unknown table, backbone or method is a ``KeyError`` naming what exists."""
    data = load_published_results()
    if row.table not in TABLES:
        raise KeyError(f"unknown published table {row.table!r}; choose one of {sorted(TABLES)}")
    table = data[row.table]
    if row.backbone not in table:
        raise KeyError(f"the paper's {row.table} table has no backbone {row.backbone!r}; it has {sorted(table)}")
    if row.method not in table[row.backbone]:
        raise KeyError(f"the paper's {row.table} table has no row {row.method!r} for {row.backbone}; it has "
                       f"{sorted(table[row.backbone])}")
    return {k: float(v) for k, v in table[row.backbone][row.method].items()}


def iter_rows(table: Optional[str] = None) -> Iterator[Tuple[PaperRow, Dict[str, float]]]:
    """Every ``(row, numbers)`` of one table (or of all three), in the paper's order."""
    data = load_published_results()
    for t in ([table] if table else list(TABLES)):
        for backbone, methods in data[t].items():
            for method, numbers in methods.items():
                yield PaperRow(t, backbone, method), {k: float(v) for k, v in numbers.items()}


def rows_without_weights() -> Dict[str, str]:
    """``{"B/16:GeoRSCLIP": reason, ...}``: published rows that no public OpenCLIP weights reproduce."""
    return dict(load_published_results().get("_rows_without_weights", {}))
