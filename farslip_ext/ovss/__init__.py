"""Open-vocabulary semantic segmentation without mmseg: the core of ``farslip ovss`` and ``farslip segment``.

* :class:`OVSSPredictor` / :func:`build_predictor` — the segmentor's maths on tensors and arrays
  (``pred.segment(rgb)``), with cached text embeddings (:mod:`.text`);
* :mod:`.windows` — sliding windows and patch padding;
* :mod:`.classnames` — class-name files and inline lists (one rule everywhere);
* :mod:`.settings` — the typed settings, whose defaults are the base mmseg config;
* :mod:`.benchmarks` / :mod:`.presets` — benchmarks and presets read from the mmseg config files
  (found through the ``farslip_ovss_config_paths`` plugin hook) without importing mmseg;
* :mod:`.converters` — official releases → the evaluated layout; :mod:`.report` — the results table.

Nothing here imports mmseg or mmcv; the mmseg segmentor ``FarSLIPSeg`` and ``run_ovss`` live in the
adapter :mod:`farslip_ext.segmentation`. (The adapter is not called ``farslip_ext.mmseg``: mmengine
resolves ``<scope>.registry`` modules by name, and a module named like the library would shadow it.)
"""
from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the submodule defining it (imported on first use, so ``import farslip_ext.ovss.classnames``
#: does not pull in torch-heavy modules).
_EXPORTS = {
    "Benchmark": "benchmarks", "DatasetNotFoundError": "benchmarks", "find_dataset_root": "benchmarks",
    "get_benchmark": "benchmarks", "list_benchmarks": "benchmarks", "resolve_benchmarks": "benchmarks",
    "ClassCountMismatchError": "checks", "LabelValueError": "checks",
    "ClassNames": "classnames", "ClassNamesError": "classnames", "load_class_names": "classnames",
    "parse_class_lines": "classnames",
    "OVSSPredictor": "predictor", "Segmentation": "predictor", "build_predictor": "predictor",
    "normalization_stats": "predictor",
    "DEFAULT_PRESET": "presets", "get_preset": "presets", "list_presets": "presets", "preset_settings": "presets",
    "SegSettings": "settings", "UnknownSettingError": "settings", "default_settings": "settings",
    "TextEmbeddingCache": "text", "compute_text_embeddings": "text",
    "slide_windows": "windows",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Benchmark",
    "ClassCountMismatchError",
    "ClassNames",
    "ClassNamesError",
    "DEFAULT_PRESET",
    "DatasetNotFoundError",
    "LabelValueError",
    "OVSSPredictor",
    "SegSettings",
    "Segmentation",
    "TextEmbeddingCache",
    "UnknownSettingError",
    "build_predictor",
    "compute_text_embeddings",
    "default_settings",
    "find_dataset_root",
    "get_benchmark",
    "get_preset",
    "list_benchmarks",
    "list_presets",
    "load_class_names",
    "normalization_stats",
    "parse_class_lines",
    "preset_settings",
    "resolve_benchmarks",
    "slide_windows",
]
