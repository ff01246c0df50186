"""pluggy hook specifications: the whole plugin API of farslip_ext.

A plugin is a module (or an object instance) with functions named like the specs below, marked with
:data:`farslip_ext.hookimpl`, and advertised in its package metadata under the entry-point group
``farslip_ext``::

    # setup.cfg of a third-party package
    [options.entry_points]
    farslip_ext =
        my_plugin = my_package.farslip_plugin

The built-in plugin (:mod:`farslip_ext.plugins.builtin`) goes through these same hooks. A function
marked ``@hookimpl`` whose name is not a spec below is an error (``PluginValidationError``), so a
misspelled hook never goes unnoticed.

When the hooks run:

* the *catalogue* hooks (model configs, pretrained tags) run when farslip_ext is imported, so a
  plugin's architectures are in ``open_clip.list_models()`` right away — keep the plugin module
  itself light (import heavy code inside the hooks);
* :func:`farslip_register_components` runs the first time any farslip_ext registry is searched;
* the path hooks (recipes, OVSS configs, class names) run when a command looks for those files.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Mapping

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from farslip_ext.registry import FarSLIPRegistry

PROJECT_NAME = "farslip_ext"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def farslip_model_config_paths() -> List[str]:
    """Return paths (JSON files or folders of them) of OpenCLIP model configs. File stems are the model
    names; prefix them with your project name (a name that clashes with another config is an error)."""


@hookspec
def farslip_pretrained_cfgs() -> Dict[str, Dict[str, Dict[str, Any]]]:
    """Return ``{arch: {tag: entry}}`` pretrained-weight entries in the format of
    ``registry/pretrained.json`` (a source: ``hf_hub_id`` + ``hf_hub_filename``, ``url``, ``file`` or
    ``manual``; plus ``sha256``, ``quick_gelu``, ``context_length``, ``license``, ...). They become
    open_clip pretrained tags."""


@hookspec
def farslip_register_components(registries: "Mapping[str, FarSLIPRegistry]") -> None:
    """Register components (losses, heads, teachers, dense-attention variants, datasets, ...).

    Args:
        registries: ``{"LOSSES": ..., "HEADS": ..., "TEACHERS": ..., "DENSE_ATTN": ...,
            "TRAIN_DATASETS": ..., "EVAL_DATASETS": ..., "SAMPLE_TRANSFORMS": ..., "TASKS": ...,
            "TEMPLATES": ...}``. Either import the modules whose ``@REGISTRY.register_module()``
            decorators register your classes, or call ``registries["LOSSES"].register_module(module=MyLoss)``.
            If the hook raises, everything it registered is removed again and the error names the plugin.
    """


@hookspec
def farslip_recipe_paths() -> List[str]:
    """Return training recipe files (mmengine ``.py`` configs) or folders of them; a recipe's name is its
    file stem (``farslip train <name>``). A name that another plugin already provides is an error."""


@hookspec
def farslip_ovss_config_paths() -> List[str]:
    """Return folders of OVSS benchmark configs (mmengine ``.py`` files, one benchmark each; the file stem
    is the benchmark key used by ``farslip ovss``)."""


@hookspec
def farslip_classname_paths() -> List[str]:
    """Return folders of class-name files (``cls_<dataset>.txt``: one class per line, synonyms separated
    by commas) that configs may name as ``classnames:<file>``."""
