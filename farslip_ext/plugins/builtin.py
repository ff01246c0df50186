"""The built-in farslip_ext plugin: the package's own catalogue and file locations, through the same hooks
a third-party plugin uses (see :mod:`farslip_ext.plugins.hookspecs`).

Built-in *components* need no hook: each registry finds them through mmengine's ``locations``
(:mod:`farslip_ext.registry`), which imports only the subpackage that defines them.
"""
from __future__ import annotations

from typing import Any, Dict, List

from farslip_ext.catalogue import catalogue_dir, load_pretrained_manifest, model_config_dir, package_dir
from farslip_ext.plugins.hookspecs import hookimpl


@hookimpl
def farslip_model_config_paths() -> List[str]:
    return [str(model_config_dir())]


@hookimpl
def farslip_pretrained_cfgs() -> Dict[str, Dict[str, Dict[str, Any]]]:
    return load_pretrained_manifest()


@hookimpl
def farslip_recipe_paths() -> List[str]:
    return [str(package_dir() / "train" / "recipes")]


@hookimpl
def farslip_ovss_config_paths() -> List[str]:
    return [str(package_dir() / "segmentation" / "configs")]


@hookimpl
def farslip_classname_paths() -> List[str]:
    return [str(catalogue_dir() / "classnames")]
