"""The plugin manager: built-in and third-party plugins, their catalogue and their components.

* :func:`setup` (run by ``import farslip_ext``) builds the manager — the built-in plugin plus every
  entry point of the group ``farslip_ext`` unless ``FARSLIP_DISABLE_PLUGIN_AUTOLOAD=1`` — and runs the
  catalogue hooks into :data:`~farslip_ext.catalogue.CATALOGUE`, then syncs it into open_clip. If a
  plugin's catalogue is invalid, nothing of it is kept and the error names the plugin.
* :func:`register_plugin_components` runs every plugin's ``farslip_register_components`` once, the first
  time a registry is searched (mmengine imports :mod:`farslip_ext.plugins.components`, listed in every
  registry's ``locations``). A plugin that fails is rolled back and named; the next lookup tries again.
* :func:`hook_paths` collects the path hooks (recipes, OVSS configs, class names) in plugin order.
"""
from __future__ import annotations

import logging
import os
import threading
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Dict, List, Optional

import pluggy

from farslip_ext.catalogue import CATALOGUE
from farslip_ext.errors import PluginError
from farslip_ext.plugins import builtin, hookspecs
from farslip_ext.plugins.hookspecs import PROJECT_NAME

__all__ = [
    "ENTRY_POINT_GROUP",
    "DISABLE_AUTOLOAD_ENV",
    "new_plugin_manager",
    "get_plugin_manager",
    "setup",
    "register_plugin_components",
    "hook_paths",
    "reset_plugin_manager",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = PROJECT_NAME
DISABLE_AUTOLOAD_ENV = "FARSLIP_DISABLE_PLUGIN_AUTOLOAD"

_LOCK = threading.RLock()
_PM: Optional[pluggy.PluginManager] = None
_CATALOGUE_DONE = False
_COMPONENTS_DONE = False


def _autoload_disabled() -> bool:
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def new_plugin_manager(autoload: Optional[bool] = None) -> pluggy.PluginManager:
    """A fresh, validated manager with the built-in plugin and (unless disabled) the entry points."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(builtin, name="builtin")
    if autoload is None:
        autoload = not _autoload_disabled()
    if autoload:
        # One entry point at a time (instead of pm.load_setuptools_entrypoints) so that a plugin that fails
        # to import is named in the error.
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as e:
                raise PluginError(f"farslip_ext plugin {ep.name!r} ({ep.value}) failed to import: {type(e).__name__}: "
                                  f"{e}. Fix or uninstall it, or set {DISABLE_AUTOLOAD_ENV}=1 to skip plugins.") from e
            pm.register(plugin, name=ep.name)
    # A hookimpl with no matching spec (a typo) raises PluginValidationError here.
    pm.check_pending()
    return pm


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (created on first use)."""
    global _PM
    with _LOCK:
        if _PM is None:
            _PM = new_plugin_manager()
        return _PM


def _impls(hook: Any) -> list:
    """The plain implementations of ``hook`` in registration order — the built-in plugin first, then the entry
    points (pluggy's own call order is the reverse; ``tryfirst``/``trylast`` still move an implementation).
    Hook wrappers are not supported here."""
    return [i for i in hook.get_hookimpls() if not (i.hookwrapper or getattr(i, "wrapper", False))]


def _call(impl: Any, **kwargs: Any) -> Any:
    """Call one implementation with the arguments it declares (pluggy lets it take a subset)."""
    return impl.function(*[kwargs[a] for a in impl.argnames])


def _call_each(hook: Any, **kwargs: Any):
    """``(plugin_name, result)`` of every implementation of ``hook``, one at a time, so that a failure can
    be attributed to its plugin (``pm.hook.X()`` would only give the exception)."""
    for impl in _impls(hook):
        yield impl.plugin_name, _call(impl, **kwargs)


def setup() -> None:
    """Fill the catalogue from every plugin and sync it into open_clip (idempotent)."""
    global _CATALOGUE_DONE
    from farslip_ext.openclip_bridge import sync

    with _LOCK:
        if _CATALOGUE_DONE:
            return
        pm = get_plugin_manager()
        for name, paths in _call_each(pm.hook.farslip_model_config_paths):
            snap = CATALOGUE.snapshot()
            try:
                for p in paths or []:
                    CATALOGUE.add_model_configs(p)
                sync(CATALOGUE)
            except Exception as e:
                CATALOGUE.restore(snap)
                raise PluginError(f"farslip_ext plugin {name!r}: its model configs could not be added: {e}") from e
        for name, table in _call_each(pm.hook.farslip_pretrained_cfgs):
            snap = CATALOGUE.snapshot()
            try:
                CATALOGUE.add_pretrained(table or {})
                sync(CATALOGUE)
            except Exception as e:
                CATALOGUE.restore(snap)
                raise PluginError(f"farslip_ext plugin {name!r}: its pretrained entries could not be added: {e}") from e
        _CATALOGUE_DONE = True


def register_plugin_components() -> None:
    """Run every plugin's ``farslip_register_components`` once per process (see the module doc)."""
    global _COMPONENTS_DONE
    from farslip_ext.compat import unregister
    from farslip_ext.registry import ALL_REGISTRIES

    with _LOCK:
        if _COMPONENTS_DONE:
            return
        pm = get_plugin_manager()
        for impl in _impls(pm.hook.farslip_register_components):
            before = {k: set(r.module_dict) for k, r in ALL_REGISTRIES.items()}
            try:
                _call(impl, registries=ALL_REGISTRIES)
            except Exception as e:
                for k, r in ALL_REGISTRIES.items():
                    unregister(r, sorted(set(r.module_dict) - before[k]))
                raise PluginError(f"farslip_ext plugin {impl.plugin_name!r} failed to register its components "
                                  f"({type(e).__name__}: {e}); nothing of it was kept") from e
        _COMPONENTS_DONE = True


def hook_paths(hook_name: str) -> List[Path]:
    """Paths returned by every plugin for a path hook (``farslip_recipe_paths``, ...), built-in first."""
    pm = get_plugin_manager()
    out: List[Path] = []
    for _, paths in _call_each(getattr(pm.hook, hook_name)):
        out.extend(Path(p) for p in paths or [])
    return out


def reset_plugin_manager() -> None:
    """Forget the process-wide manager (tests). Registered components and catalogue entries stay."""
    global _PM, _CATALOGUE_DONE, _COMPONENTS_DONE
    with _LOCK:
        _PM = None
        _CATALOGUE_DONE = False
        _COMPONENTS_DONE = False


def plugin_names() -> Dict[str, str]:
    """``{name: module or object repr}`` of the registered plugins."""
    pm = get_plugin_manager()
    return {name: getattr(p, "__name__", repr(p)) for name, p in pm.list_name_plugin()}
