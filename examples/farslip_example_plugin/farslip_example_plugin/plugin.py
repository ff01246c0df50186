"""The plugin module named by the entry point: hook implementations only (keep it light)."""
from pathlib import Path

from farslip_ext import hookimpl

HERE = Path(__file__).parent


@hookimpl
def farslip_register_components(registries):
    # importing the modules runs their @REGISTRY.register_module() decorators
    from farslip_example_plugin import datasets, dense_attn, heads, losses  # noqa: F401


@hookimpl
def farslip_model_config_paths():
    return [str(HERE / "model_configs")]


@hookimpl
def farslip_recipe_paths():
    return [str(HERE / "recipes")]
