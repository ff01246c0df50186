"""The built-in farslip_ext plugin: registers the package's own catalogue and components through the
same hooks a third-party plugin uses (see :mod:`farslip_ext.plugins.hookspecs`)."""
from __future__ import annotations

import importlib
from typing import Any, Dict, List, Mapping

from farslip_ext.plugins.hookspecs import hookimpl

#: Modules whose import registers the built-in components (decorators at import time).
COMPONENT_MODULES: List[str] = []


@hookimpl
def farslip_register_components(registries: Mapping[str, Any]) -> None:
    for mod in COMPONENT_MODULES:
        importlib.import_module(mod)


@hookimpl
def farslip_model_config_paths() -> List[str]:
    from farslip_ext.catalogue import model_config_dir

    return [str(model_config_dir())]


@hookimpl
def farslip_pretrained_cfgs() -> Dict[str, Dict[str, Dict[str, Any]]]:
    from farslip_ext.catalogue import load_pretrained_manifest

    return load_pretrained_manifest()
