"""farslip_ext plugins: hook specifications, the built-in plugin and the plugin manager.

See :mod:`farslip_ext.plugins.hookspecs` for the plugin API and :mod:`farslip_ext.plugins.manager`
for when each hook runs. ``FARSLIP_DISABLE_PLUGIN_AUTOLOAD=1`` loads only the built-in plugin.
"""
from farslip_ext.plugins.hookspecs import hookimpl
from farslip_ext.plugins.manager import (
    DISABLE_AUTOLOAD_ENV,
    ENTRY_POINT_GROUP,
    get_plugin_manager,
    hook_paths,
    new_plugin_manager,
    register_plugin_components,
    reset_plugin_manager,
    setup,
)

__all__ = [
    "hookimpl",
    "ENTRY_POINT_GROUP",
    "DISABLE_AUTOLOAD_ENV",
    "get_plugin_manager",
    "new_plugin_manager",
    "register_plugin_components",
    "hook_paths",
    "reset_plugin_manager",
    "setup",
]
