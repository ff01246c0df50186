"""Evaluation presets (ovss-protocol.md §1.7, §1.8).

``farslip`` (default) is the FarSLIP-OVSS protocol that produced the published FarSLIP numbers
(``NJU-LHRS/RS-OVSS`` ``eval_customized.py``): SegEarth last-layer attention without residual/FFN, no
feature upsampler, ``cls_token_lambda=0``, ``prob_thd=0`` / ``bg_idx=0`` for every dataset, logit scale
50, 80 OpenAI ImageNet templates, long side 448, 224/112 sliding windows, and every window that is not
the model's input size resized to it (``window_mode="resize"``).

``segearth`` are SegEarth-OV's settings (``likyoo/SegEarth-OV`` ``eval.py`` + ``configs/cfg_*.py``):
``cls_token_lambda=-0.3`` and the per-dataset ``prob_thd``/``bg_idx`` of §1.8, windows run at their own
size (``window_mode="native"``). SegEarth-OV's SimFeatUp upsampler is not part of it (it needs FeatUp's
CUDA op and unpublished B/16-only weights, §1.4), so these are SegEarth-OV's settings *without*
SimFeatUp.
"""
from __future__ import annotations

import copy
import difflib
from typing import Any, Dict, Optional

from farslip_ext.segmentation.benchmarks import get_benchmark

__all__ = ["PRESETS", "DEFAULT_PRESET", "preset_settings", "PIPELINE_KEYS"]

#: Keys of a preset that configure the data pipeline rather than FarSLIPSeg.
PIPELINE_KEYS = ("resize_long_side",)

_FARSLIP: Dict[str, Any] = dict(
    attn="SegEarth",
    ignore_residual=True,
    cls_token_lambda=0.0,
    prob_thd=0.0,
    bg_idx=0,
    logit_scale=50.0,
    templates="openai",
    slide_crop=224,
    slide_stride=112,
    window_mode="resize",
    resize_long_side=448,
)

PRESETS: Dict[str, Dict[str, Any]] = {
    "farslip": dict(
        description="FarSLIP-OVSS protocol of the published FarSLIP numbers (λ=0, no threshold, 224/112, long side 448)",
        settings=_FARSLIP,
        per_dataset={},
    ),
    "segearth": dict(
        description="SegEarth-OV settings without SimFeatUp (λ=-0.3, per-dataset prob_thd/bg_idx)",
        settings={**_FARSLIP, "cls_token_lambda": -0.3, "window_mode": "native"},
        per_dataset="segearth",  # read from the benchmark table
    ),
}
DEFAULT_PRESET = "farslip"


def preset_settings(preset: str = DEFAULT_PRESET, dataset: Optional[str] = None) -> Dict[str, Any]:
    """The settings of ``preset`` (for ``dataset`` when it has per-dataset values): FarSLIPSeg keyword
    arguments plus ``resize_long_side`` for the pipeline."""
    if preset not in PRESETS:
        close = difflib.get_close_matches(str(preset), list(PRESETS), n=2, cutoff=0.4)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise KeyError(f"unknown OVSS preset {preset!r}{hint}; choose one of {sorted(PRESETS)}")
    spec = PRESETS[preset]
    out = copy.deepcopy(spec["settings"])
    if dataset is not None and spec["per_dataset"] == "segearth":
        b = get_benchmark(dataset)
        out.update(prob_thd=b.segearth_prob_thd, bg_idx=b.segearth_bg_idx)
    elif dataset is not None and isinstance(spec["per_dataset"], dict):
        out.update(spec["per_dataset"].get(get_benchmark(dataset).key, {}))
    return out
