"""Importing this module registers the third-party plugins' components (idempotent).

It is listed in the ``locations`` of every farslip_ext registry, so mmengine imports it — and with it
runs :func:`~farslip_ext.plugins.manager.register_plugin_components` — the first time a registry is
searched. If a plugin fails, the import fails with its :class:`~farslip_ext.errors.PluginError` and is
retried on the next lookup.
"""
from farslip_ext.plugins.manager import register_plugin_components

register_plugin_components()
