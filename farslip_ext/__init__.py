"""farslip_ext: FarSLIP (arXiv 2511.14901) as a plugin framework on top of OpenCLIP and MMSegmentation.

``import farslip_ext`` registers the FarSLIP model configs (``farslip-vitb16``, ``farslip-vitb32`` and
tiny test architectures) and pretrained tags (``s1``, ``s2``) with open_clip, so that
``open_clip.create_model("farslip-vitb16", pretrained="s2")`` works. It does not import mmseg/mmcv,
touch the network, build models or load third-party plugins (those load lazily).
"""
from __future__ import annotations

from farslip_ext.version import __version__
from farslip_ext.plugins.hookspecs import hookimpl
from farslip_ext._openclip import (
    ContextLengthMismatch,
    create_model,
    create_model_and_transforms,
    farslip_model_names,
    get_tokenizer,
    registered_pretrained,
    setup,
)
from farslip_ext.convert import CheckpointFormatError, convert_checkpoint_file, convert_state_dict
from farslip_ext.export import export_hub_folder
from farslip_ext.hub import ChecksumError, WeightsNotAvailableError

__all__ = [
    "__version__",
    "hookimpl",
    "setup",
    "create_model",
    "create_model_and_transforms",
    "get_tokenizer",
    "farslip_model_names",
    "registered_pretrained",
    "convert_state_dict",
    "convert_checkpoint_file",
    "export_hub_folder",
    "CheckpointFormatError",
    "ContextLengthMismatch",
    "ChecksumError",
    "WeightsNotAvailableError",
    "list_models",
    "list_pretrained",
]


def list_models() -> list:
    """FarSLIP architecture names registered with open_clip."""
    return farslip_model_names()


def list_pretrained() -> list:
    """``[(arch, tag), ...]`` of the registered FarSLIP weights."""
    return [(a, t) for a, tags in registered_pretrained().items() for t in tags]


setup()
