"""The plugin module named by the entry point: hook implementations only."""
from pathlib import Path

from farslip_ext import hookimpl


@hookimpl
def farslip_register_components(registries):
    from farslip_example_plugin import losses  # noqa: F401  (the decorator registers)


@hookimpl
def farslip_model_config_paths():
    return [str(Path(__file__).parent / "model_configs")]
