"""Test-wide settings: offline hub, isolated caches, and no global state leaking between tests."""
from __future__ import annotations

import os
import tempfile

# Must be set before huggingface_hub is imported anywhere (it reads them at import).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
_SESSION_TMP = tempfile.mkdtemp(prefix="farslip-tests-")
os.environ["FARSLIP_CACHE"] = os.path.join(_SESSION_TMP, "farslip-cache")
os.environ["HF_HUB_CACHE"] = os.path.join(_SESSION_TMP, "hf-empty-cache")

import pytest  # noqa: E402

import farslip_ext  # noqa: E402,F401
from farslip_ext.plugins import ensure_components_registered  # noqa: E402

# Register the built-in components once, before any test snapshots the registries: a test that
# clears a registry must not lose the built-ins for the tests after it.
ensure_components_registered()


@pytest.fixture(autouse=True)
def _isolate_global_state(monkeypatch):
    """Snapshot and restore open_clip's config/tag tables, farslip_ext's bridge tables, the
    registries' contents and mmengine's DefaultScope, so tests cannot depend on their order."""
    import open_clip
    from mmengine.registry import DefaultScope
    from open_clip import factory as oc_factory
    from open_clip import pretrained as oc_pretrained

    from farslip_ext import _openclip
    from farslip_ext.registry import ALL_REGISTRIES

    paths = list(oc_factory._MODEL_CONFIG_PATHS)
    configs = dict(oc_factory._MODEL_CONFIGS)
    tags = {k: dict(v) for k, v in oc_pretrained._PRETRAINED.items()}
    ours = {k: dict(v) for k, v in _openclip._PRETRAINED.items()}
    added, names = list(_openclip._ADDED_PATHS), list(_openclip._MODEL_NAMES)
    modules = {k: dict(r._module_dict) for k, r in ALL_REGISTRIES.items()}
    scopes = dict(DefaultScope._instance_dict)
    yield
    oc_factory._MODEL_CONFIG_PATHS[:] = paths
    oc_factory._MODEL_CONFIGS.clear()
    oc_factory._MODEL_CONFIGS.update(configs)
    oc_pretrained._PRETRAINED.clear()
    oc_pretrained._PRETRAINED.update(tags)
    _openclip._PRETRAINED.clear()
    _openclip._PRETRAINED.update(ours)
    _openclip._ADDED_PATHS[:] = added
    _openclip._MODEL_NAMES[:] = names
    for k, r in ALL_REGISTRIES.items():
        r._module_dict.clear()
        r._module_dict.update(modules[k])
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(scopes)
    assert "farslip-vitb16" in open_clip.list_models()


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty, private Hugging Face cache folder that hf_hub_download (offline) resolves from."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def farslip_cache(tmp_path, monkeypatch):
    d = tmp_path / "farslip-cache"
    monkeypatch.setenv("FARSLIP_CACHE", str(d))
    return d
