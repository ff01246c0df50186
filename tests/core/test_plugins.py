"""pluggy plugins: hook validation, built-ins through the same hooks, entry-point discovery."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pluggy
import pytest

from farslip_ext import hookimpl
from farslip_ext.plugins import builtin, new_plugin_manager

REPO = Path(__file__).resolve().parents[2]


def test_builtin_plugin_is_registered_through_the_hooks():
    pm = new_plugin_manager(autoload=False)
    assert pm.get_plugin("builtin") is builtin
    paths = [p for ps in pm.hook.farslip_model_config_paths() for p in ps]
    assert any(Path(p).name == "model_configs" for p in paths)
    tables = pm.hook.farslip_pretrained_cfgs()
    assert any("farslip-vitb16" in t for t in tables)


def test_misspelled_hook_is_an_error():
    class Typo:
        @hookimpl
        def farslip_register_component(self, registries):  # missing trailing "s"
            pass

    pm = new_plugin_manager(autoload=False)
    pm.register(Typo())
    with pytest.raises(pluggy.PluginValidationError, match="farslip_register_component"):
        pm.check_pending()


def test_wrong_hook_arguments_are_an_error():
    class BadArgs:
        @hookimpl
        def farslip_register_components(self, registry_map):
            pass

    pm = new_plugin_manager(autoload=False)
    with pytest.raises(pluggy.PluginValidationError):
        pm.register(BadArgs())


@pytest.fixture(scope="module")
def example_plugin_site(tmp_path_factory):
    """The example plugin really installed (pip, entry points in its dist-info) into a target dir."""
    target = tmp_path_factory.mktemp("site")
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target",
         str(target), str(REPO / "examples" / "farslip_example_plugin")],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return target


_PROBE = textwrap.dedent("""
    import json, open_clip, farslip_ext, torch
    from farslip_ext.registry import LOSSES
    res = {'before': 'farslip-example-tiny' in open_clip.list_models()}
    try:
        loss = LOSSES.build(dict(type='ExampleScaledL2Loss', loss_weight=2.0))
        res['loss'] = float(loss(torch.ones(2), torch.zeros(2))['example_l2_loss'])
    except KeyError as e:
        res['loss'] = 'KeyError'
    res['after'] = 'farslip-example-tiny' in open_clip.list_models()
    print(json.dumps(res))
""")


def _probe(site: Path, **env):
    e = dict(os.environ, PYTHONPATH=str(site), **env)
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, env=e)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_entry_point_plugin_is_discovered_at_import(example_plugin_site):
    """Its model configs are in open_clip.list_models() right after `import farslip_ext`; its components
    register on the first registry lookup."""
    r = _probe(example_plugin_site)
    assert r == {"before": True, "loss": 2.0, "after": True}


def test_autoload_can_be_switched_off(example_plugin_site):
    r = _probe(example_plugin_site, FARSLIP_DISABLE_PLUGIN_AUTOLOAD="1")
    assert r == {"before": False, "loss": "KeyError", "after": False}


def test_failing_plugin_is_rolled_back_and_named(monkeypatch):
    from torch import nn

    from farslip_ext.errors import PluginError
    from farslip_ext.plugins import manager
    from farslip_ext.registry import LOSSES

    class Half:
        """Registers one loss, then fails: nothing of it may stay registered."""

        @hookimpl
        def farslip_register_components(self, registries):
            @registries["LOSSES"].register_module()
            class HalfRegisteredLoss(nn.Module):
                pass

            raise RuntimeError("boom in the plugin")

    pm = new_plugin_manager(autoload=False)
    pm.register(Half(), name="half-plugin")
    monkeypatch.setattr(manager, "_PM", pm)
    monkeypatch.setattr(manager, "_COMPONENTS_DONE", False)
    with pytest.raises(PluginError, match=r"plugin 'half-plugin' failed to register its components \(RuntimeError: "
                                          r"boom in the plugin\); nothing of it was kept"):
        manager.register_plugin_components()
    assert "HalfRegisteredLoss" not in LOSSES.module_dict
    assert manager._COMPONENTS_DONE is False  # the next lookup tries again, it does not skip the plugin


def test_plugin_hooks_for_recipes_configs_and_class_names(monkeypatch, tmp_path):
    from farslip_ext.plugins import hook_paths, manager

    class Extra:
        @hookimpl
        def farslip_recipe_paths(self):
            return [str(tmp_path)]

    pm = new_plugin_manager(autoload=False)
    pm.register(Extra(), name="extra")
    monkeypatch.setattr(manager, "_PM", pm)
    assert hook_paths("farslip_recipe_paths")[1:] == [tmp_path]  # built-in first, then the others
    monkeypatch.undo()

    assert [p.name for p in hook_paths("farslip_recipe_paths")] == ["recipes"]
    assert [p.name for p in hook_paths("farslip_ovss_config_paths")] == ["configs"]
    assert [p.name for p in hook_paths("farslip_classname_paths")] == ["classnames"]
    assert all(p.is_dir() for h in ("farslip_recipe_paths", "farslip_classname_paths") for p in hook_paths(h))


def test_a_registry_lookup_imports_only_the_modules_that_define_its_components():
    code = textwrap.dedent("""
        import json, sys
        import farslip_ext
        from farslip_ext.registry import LOSSES
        assert LOSSES.get('GlobalITCLoss') is not None
        print(json.dumps(sorted(m for m in sys.modules if m.startswith('farslip_ext.'))))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, FARSLIP_DISABLE_PLUGIN_AUTOLOAD="1"))
    assert out.returncode == 0, out.stderr[-2000:]
    mods = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "farslip_ext.losses" in mods and "farslip_ext.plugins.components" in mods
    for heavy in ("farslip_ext.train", "farslip_ext.evaluation", "farslip_ext.data", "farslip_ext.segmentation",
                  "farslip_ext.teachers"):
        assert not any(m == heavy or m.startswith(heavy + ".") for m in mods), heavy
