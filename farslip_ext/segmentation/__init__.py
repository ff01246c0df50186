"""The mmseg adapter of open-vocabulary segmentation: ``FarSLIPSeg``, datasets, transforms, hooks, configs,
``run_ovss`` (docs/ovss.md). The maths and everything mmseg-free live in :mod:`farslip_ext.ovss`.

Importing this package imports mmseg (through :mod:`.openmmlab`, the one place that does, and that
filters its import chatter) and registers, in mmseg's registries:

* ``MODELS``: :class:`FarSLIPSeg` and :class:`FarSLIPSegDataPreProcessor`;
* ``DATASETS``: ``OpenEarthMapDataset``, ``UAVidDataset``, ``UDD5Dataset``, ``VDDDataset``;
* ``TRANSFORMS``: ``FarSLIPLoadImageFromFile``, ``FarSLIPLoadAnnotations``;
* ``HOOKS``: ``OVSSCheckHook``, ``OVSSProgressHook``.

The configs in ``configs/`` import it through ``custom_imports``, so a plain mmseg run needs no extra
import. ``import farslip_ext`` alone never imports this package (nor mmseg). The package keeps its old
name because configs, the demo and the benchmarks import it; it is not ``farslip_ext.mmseg`` because
mmengine imports ``<scope>.registry`` modules by scope name, and a package spelled like the library is
easily shadowed or mistaken for it.
"""
from __future__ import annotations

from pathlib import Path

from farslip_ext.segmentation import openmmlab  # noqa: F401  (imports mmseg quietly, first)
from farslip_ext.segmentation import datasets, hooks, segmentor, transforms  # noqa: F401,E402  (registration)
from farslip_ext.ovss.benchmarks import Benchmark, get_benchmark, list_benchmarks  # noqa: E402
from farslip_ext.ovss.classnames import ClassNames, load_class_names  # noqa: E402
from farslip_ext.ovss.presets import preset_settings  # noqa: E402
from farslip_ext.ovss.text import TextEmbeddingCache  # noqa: E402
from farslip_ext.ovss.windows import slide_windows  # noqa: E402
from farslip_ext.segmentation.datasets import OpenEarthMapDataset, UAVidDataset, UDD5Dataset, VDDDataset  # noqa: E402
from farslip_ext.segmentation.evaluate import run_config, run_ovss  # noqa: E402
from farslip_ext.segmentation.hooks import OVSSCheckHook, OVSSProgressHook  # noqa: E402
from farslip_ext.segmentation.segmentor import FarSLIPSeg, FarSLIPSegDataPreProcessor  # noqa: E402

__all__ = [
    "Benchmark",
    "ClassNames",
    "FarSLIPSeg",
    "FarSLIPSegDataPreProcessor",
    "OVSSCheckHook",
    "OVSSProgressHook",
    "OpenEarthMapDataset",
    "TextEmbeddingCache",
    "UAVidDataset",
    "UDD5Dataset",
    "VDDDataset",
    "config_dir",
    "config_file",
    "get_benchmark",
    "list_benchmarks",
    "load_class_names",
    "preset_settings",
    "run_config",
    "run_ovss",
    "slide_windows",
]


def config_dir() -> Path:
    """The folder of the shipped configs (``_base_/farslip_ovss.py``, ``presets/``, one file per benchmark)."""
    return Path(__file__).resolve().parent / "configs"


def config_file(dataset: str) -> Path:
    """The config of one benchmark (e.g. ``config_file("loveda")``; plugins' benchmarks too)."""
    return get_benchmark(dataset).config_file
