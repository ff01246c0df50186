"""Open-vocabulary semantic segmentation on MMSegmentation (issue #5; ovss-protocol.md).

Importing this package imports mmseg and registers, in mmseg's registries:

* ``MODELS``: :class:`FarSLIPSeg` (the training-free segmentor) and :class:`FarSLIPSegDataPreProcessor`;
* ``DATASETS``: ``OpenEarthMapDataset``, ``UAVidDataset``, ``UDD5Dataset``, ``VDDDataset``;
* ``TRANSFORMS``: ``FarSLIPLoadImageFromFile``, ``FarSLIPLoadAnnotations``;
* ``HOOKS``: ``OVSSCheckHook``.

The configs in ``configs/`` import it through ``custom_imports``, so a plain mmseg test run needs no
extra import. ``import farslip_ext`` alone never imports this package (nor mmseg).
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

# mmseg prints an informational "Could not import OneDL" to stdout at import; keep stdout clean for the
# JSON that the farslip commands print.
with contextlib.redirect_stdout(sys.stderr):
    from farslip_ext.segmentation import datasets, hooks, segmentor, transforms  # noqa: F401  (registration)
from farslip_ext.segmentation.benchmarks import BENCHMARK_ORDER, BENCHMARKS, Benchmark, get_benchmark
from farslip_ext.segmentation.classnames import ClassNames, load_class_names
from farslip_ext.segmentation.datasets import OpenEarthMapDataset, UAVidDataset, UDD5Dataset, VDDDataset
from farslip_ext.segmentation.hooks import OVSSCheckHook
from farslip_ext.segmentation.presets import PRESETS, preset_settings
from farslip_ext.segmentation.segmentor import FarSLIPSeg, FarSLIPSegDataPreProcessor, slide_windows
from farslip_ext.segmentation.text_cache import TextEmbeddingCache

__all__ = [
    "BENCHMARKS",
    "BENCHMARK_ORDER",
    "Benchmark",
    "ClassNames",
    "FarSLIPSeg",
    "FarSLIPSegDataPreProcessor",
    "OVSSCheckHook",
    "OpenEarthMapDataset",
    "PRESETS",
    "TextEmbeddingCache",
    "UAVidDataset",
    "UDD5Dataset",
    "VDDDataset",
    "config_dir",
    "config_file",
    "get_benchmark",
    "load_class_names",
    "preset_settings",
    "run_ovss",
    "slide_windows",
]


def config_dir() -> Path:
    """The folder of the mmseg configs (``_base_/farslip_ovss.py`` and one file per benchmark)."""
    return Path(__file__).resolve().parent / "configs"


def config_file(dataset: str) -> Path:
    """The mmseg config of one benchmark (e.g. ``config_file("loveda")``)."""
    return get_benchmark(dataset).config_file


def run_ovss(*args, **kwargs):
    """See :func:`farslip_ext.segmentation.evaluate.run_ovss`."""
    from farslip_ext.segmentation.evaluate import run_ovss as _run

    return _run(*args, **kwargs)
