"""The built-in farslip_ext plugin: registers the package's own catalogue and components through the
same hooks a third-party plugin uses (see :mod:`farslip_ext.plugins.hookspecs`)."""
from __future__ import annotations

import importlib
from typing import Any, Dict, List, Mapping

from farslip_ext.plugins.hookspecs import hookimpl

#: Subpackages whose import registers the built-in components (``@REGISTRY.register_module()`` runs at
#: import). Each subpackage's ``__init__`` imports its component modules.
COMPONENT_PACKAGES: List[str] = [
    "farslip_ext.models",
    "farslip_ext.losses",
    "farslip_ext.heads",
    "farslip_ext.teachers",
    "farslip_ext.data",
    "farslip_ext.train",
    "farslip_ext.evaluation",
]


@hookimpl
def farslip_register_components(registries: Mapping[str, Any]) -> None:
    for mod in COMPONENT_PACKAGES:
        importlib.import_module(mod)


@hookimpl
def farslip_model_config_paths() -> List[str]:
    from farslip_ext.catalogue import model_config_dir

    return [str(model_config_dir())]


@hookimpl
def farslip_pretrained_cfgs() -> Dict[str, Dict[str, Dict[str, Any]]]:
    from farslip_ext.catalogue import load_pretrained_manifest

    return load_pretrained_manifest()
