"""Plugin manager: built-in and third-party components, model configs and pretrained tags.

Third-party plugins are found through the entry-point group ``farslip_ext`` and loaded lazily: the
first time a registry is searched, or when :func:`get_plugin_manager` / :func:`farslip_ext.setup`
with ``load_plugins=True`` is called. Set ``FARSLIP_DISABLE_PLUGIN_AUTOLOAD=1`` to load only the
built-in plugin (plugins can still be registered by hand with ``get_plugin_manager().register``).
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Optional

import pluggy

from farslip_ext.plugins import hookspecs
from farslip_ext.plugins.hookspecs import PROJECT_NAME, hookimpl

__all__ = [
    "ENTRY_POINT_GROUP",
    "DISABLE_AUTOLOAD_ENV",
    "hookimpl",
    "get_plugin_manager",
    "ensure_components_registered",
    "reset_plugin_manager",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = PROJECT_NAME
DISABLE_AUTOLOAD_ENV = "FARSLIP_DISABLE_PLUGIN_AUTOLOAD"

_LOCK = threading.RLock()
_PM: Optional[pluggy.PluginManager] = None
_COMPONENTS_DONE = False


def _autoload_disabled() -> bool:
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def new_plugin_manager(autoload: Optional[bool] = None) -> pluggy.PluginManager:
    """A fresh, validated plugin manager with the built-in plugin and (unless disabled) the entry points."""
    from farslip_ext.plugins import builtin

    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(builtin, name="builtin")
    if autoload is None:
        autoload = not _autoload_disabled()
    if autoload:
        n = pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        logger.debug("loaded %d farslip_ext plugin(s) from entry points", n)
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


def ensure_components_registered() -> None:
    """Run ``farslip_register_components`` of every plugin once per process (idempotent)."""
    global _COMPONENTS_DONE
    with _LOCK:
        if _COMPONENTS_DONE:
            return
        _COMPONENTS_DONE = True
        from farslip_ext.registry import ALL_REGISTRIES

        pm = get_plugin_manager()
        pm.check_pending()
        pm.hook.farslip_register_components(registries=ALL_REGISTRIES)
        # Plugins may add model configs and tags too.
        from farslip_ext import _openclip

        _openclip.apply_plugin_catalogues(pm)


def reset_plugin_manager() -> None:
    """Forget the process-wide manager (tests). Registered components stay registered."""
    global _PM, _COMPONENTS_DONE
    with _LOCK:
        _PM = None
        _COMPONENTS_DONE = False
