"""pluggy hook specifications: the whole plugin API of farslip_ext.

A plugin is a module (or an object instance) with functions named like the specs below, marked with
:data:`farslip_ext.hookimpl`, and advertised in its package metadata under the entry-point group
``farslip_ext``::

    # setup.cfg of a third-party package
    [options.entry_points]
    farslip_ext =
        my_plugin = my_package.farslip_plugin

The built-in components of farslip_ext are registered by :mod:`farslip_ext.plugins.builtin` through
these same hooks. A function marked ``@hookimpl`` whose name is not a spec below is an error
(``PluginValidationError``), so a misspelled hook never goes unnoticed.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Mapping, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from farslip_ext.registry import FarSLIPRegistry

PROJECT_NAME = "farslip_ext"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def farslip_register_components(registries: "Mapping[str, FarSLIPRegistry]") -> None:
    """Register components into the registries.

    Args:
        registries: ``{"LOSSES": ..., "HEADS": ..., "TEACHERS": ..., "DENSE_ATTN": ..., "DATASETS": ...,
            "TRANSFORMS": ..., "TASKS": ..., "TEMPLATES": ...}``. Typically a plugin imports its modules
            here; their ``@REGISTRY.register_module()`` decorators do the registration. Called once per
            process, the first time any registry is searched.
    """


@hookspec
def farslip_model_config_paths() -> List[str]:
    """Return paths (JSON files or folders of them) of OpenCLIP model configs to add with
    ``open_clip.add_model_config``. File stems are the model names; prefix them with your project
    name to avoid shadowing another plugin's or open_clip's own names (a clash is an error)."""


@hookspec
def farslip_pretrained_cfgs() -> Dict[str, Dict[str, Dict[str, Any]]]:
    """Return ``{arch: {tag: entry}}`` pretrained-weight entries in the format of
    ``registry/pretrained.json`` (``hf_hub_id``, ``hf_hub_filename``, ``revision``, optional
    ``sha256``, ``quick_gelu``, ``long_clip``, ``license``). They become open_clip pretrained tags."""
