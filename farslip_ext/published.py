"""The paper's published result tables, as data (``registry/published_results.json``).

Kept apart from the model catalogue: a leaderboard or report joins its own numbers to these by key
(task table, backbone, method, dataset).
"""
from __future__ import annotations

import json
from typing import Any, Dict

from farslip_ext.catalogue import catalogue_dir

__all__ = ["load_published_results"]


def load_published_results() -> Dict[str, Any]:
    """``{"ovss_miou" | "zeroshot_top1" | "retrieval_mean_recall": {backbone: {method: {dataset: value}}}}``.

    Backbones are ``"B/16"``/``"B/32"``; FarSLIP rows are ``FarSLIP1``/``FarSLIP2`` (OVSS) and
    ``FarSLIP-s1``/``FarSLIP-s2`` (classification, retrieval), as printed in the paper.
    """
    with open(catalogue_dir() / "published_results.json", "r", encoding="utf-8") as f:
        return json.load(f)
