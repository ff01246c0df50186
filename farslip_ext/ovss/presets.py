"""Evaluation presets are config overlays (docs/reference/ovss-evaluation.md#17-segearth-ov-versus-rs-ovss).

A preset is ``<config folder>/presets/<name>.py`` with a ``description`` and a ``model`` dict of
settings laid over the base config; a benchmark may add its own values for a preset in
``benchmark.presets[<name>]`` (SegEarth-OV's per-dataset ``prob_thd``/``bg_idx``,
docs/reference/ovss-evaluation.md#18-per-dataset-settings).

* ``farslip`` (default): the base config unchanged — the RS-OVSS protocol that produced the published
  FarSLIP numbers.
* ``segearth``: SegEarth-OV's settings without SimFeatUp (λ = −0.3, windows at their own size, the
  per-dataset thresholds).

Plugins add presets by shipping a ``presets/`` folder next to their benchmark configs.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from farslip_ext.errors import ConfigError

__all__ = ["Preset", "DEFAULT_PRESET", "PIPELINE_KEYS", "list_presets", "get_preset", "preset_settings",
           "apply_preset", "pipeline_long_side"]

DEFAULT_PRESET = "farslip"
#: Keys of :func:`preset_settings` that describe the data pipeline (the mmseg ``Resize``) rather than FarSLIPSeg.
PIPELINE_KEYS = ("resize_long_side",)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    file: Path
    model: Mapping[str, Any] = field(default_factory=dict)


def list_presets() -> Dict[str, Preset]:
    """Every preset of every config folder (built-in first; a later file of the same name is an error)."""
    from farslip_ext.ovss.benchmarks import benchmark_dirs, read_config

    out: Dict[str, Preset] = {}
    for d in benchmark_dirs():
        for p in sorted((d / "presets").glob("*.py")) if (d / "presets").is_dir() else []:
            if p.name.startswith("_"):
                continue
            if p.stem in out:
                raise ConfigError(f"two OVSS presets are called {p.stem!r}: {out[p.stem].file} and {p}")
            cfg = read_config(p)
            unknown = sorted(set(cfg) - {"description", "model"})
            if unknown:
                raise ConfigError(f"preset {p} sets {unknown}; a preset holds only 'description' and 'model' "
                                  f"(segmentor settings)")
            out[p.stem] = Preset(p.stem, str(cfg.get("description", "")), p, dict(cfg.get("model") or {}))
    return out


def get_preset(name: str) -> Preset:
    presets = list_presets()
    if name not in presets:
        close = difflib.get_close_matches(str(name), list(presets), n=2, cutoff=0.4)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise KeyError(f"unknown OVSS preset {name!r}{hint}; choose one of {sorted(presets)}")
    return presets[name]


def _overlay(preset: str, dataset: Optional[str]) -> Dict[str, Any]:
    from farslip_ext.ovss.settings import SegSettings, unknown_setting

    p = get_preset(preset)
    over = dict(p.model)
    if dataset is not None:
        from farslip_ext.ovss.benchmarks import get_benchmark

        b = get_benchmark(dataset)
        over.update(b.presets.get(preset, {}))
    for k in over:
        if k not in SegSettings.names():
            raise unknown_setting(k, f"preset {preset!r}")
    return over


def pipeline_long_side(cfg: Optional[Mapping[str, Any]] = None) -> Optional[int]:
    """The long side of the ``Resize`` in a config's ``test_pipeline`` (default: the base config's)."""
    from farslip_ext.ovss.settings import base_config

    cfg = base_config() if cfg is None else cfg
    for t in cfg.get("test_pipeline") or []:
        if t.get("type") == "Resize" and t.get("keep_ratio", False):
            scale = t.get("scale")
            return int(max(scale)) if isinstance(scale, (list, tuple)) else int(scale)
    return None


def preset_settings(preset: str = DEFAULT_PRESET, dataset: Optional[str] = None) -> Dict[str, Any]:
    """The segmentor settings of ``preset`` (for ``dataset`` when it has its own values), with
    ``resize_long_side`` = the pipeline's long side (448), as used for arrays outside mmseg."""
    from farslip_ext.ovss.settings import default_settings

    out = default_settings()
    out.update(_overlay(preset, dataset))
    out["resize_long_side"] = pipeline_long_side()
    return out


def apply_preset(cfg: Mapping[str, Any], preset: str, dataset: Optional[str] = None) -> Dict[str, Any]:
    """``cfg`` with the preset's (and the dataset's preset) settings merged into ``cfg['model']``."""
    from farslip_ext.ovss.benchmarks import merge_dicts

    return merge_dicts(cfg, {"model": _overlay(preset, dataset)})


def describe_presets() -> List[str]:
    return [f"{p.name}: {p.description}" for p in list_presets().values()]
