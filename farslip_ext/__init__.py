"""farslip_ext: FarSLIP (arXiv 2511.14901) as a plugin framework on top of OpenCLIP and MMSegmentation.

``import farslip_ext`` registers the FarSLIP model configs and pretrained tags (and those of installed
plugins) with open_clip, so that ``open_clip.create_model("farslip-vitb16", pretrained="s2")`` works.
It does not import mmseg/mmcv, touch the network or build models.

The one loader is :func:`load`::

    lm = farslip_ext.load("farslip-vitb16", "s2", device="auto", precision="auto")
    lm.model, lm.preprocess, lm.tokenizer, lm.context_length
"""
from __future__ import annotations

from farslip_ext.version import __version__
from farslip_ext.catalogue import CATALOGUE, PretrainedEntry
from farslip_ext.convert import convert_checkpoint_file, convert_state_dict
from farslip_ext.errors import (
    CheckpointFormatError,
    ChecksumError,
    ConfigError,
    ContextLengthMismatch,
    DestinationExistsError,
    FarSLIPError,
    NonFiniteWeightsError,
    WeightsNotAvailableError,
)
from farslip_ext.export import export_hub_folder
from farslip_ext.loading import LoadedModel, create_model, create_model_and_transforms, get_tokenizer, load
from farslip_ext.plugins.hookspecs import hookimpl
from farslip_ext.plugins.manager import setup
from farslip_ext.precision import PRECISIONS, Precision, parse_precision

__all__ = [
    "__version__",
    "load",
    "LoadedModel",
    "Precision",
    "PRECISIONS",
    "parse_precision",
    "create_model",
    "create_model_and_transforms",
    "get_tokenizer",
    "list_models",
    "list_pretrained",
    "CATALOGUE",
    "PretrainedEntry",
    "convert_state_dict",
    "convert_checkpoint_file",
    "export_hub_folder",
    "hookimpl",
    "setup",
    "FarSLIPError",
    "ConfigError",
    "CheckpointFormatError",
    "NonFiniteWeightsError",
    "ContextLengthMismatch",
    "ChecksumError",
    "WeightsNotAvailableError",
    "DestinationExistsError",
]


def list_models() -> list:
    """Architecture names registered by farslip_ext and its plugins."""
    return CATALOGUE.arch_names()


def list_pretrained() -> list:
    """``[(arch, tag), ...]`` of the registered weights."""
    return CATALOGUE.list_pretrained()


setup()
