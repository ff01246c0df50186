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
from farslip_ext.registry import ALL_REGISTRIES  # noqa: E402

# Import every registry's components once, before any test snapshots the registries: a test that
# clears a registry must not lose the built-ins for the tests after it.
for _reg in ALL_REGISTRIES.values():
    _reg.import_from_location()


@pytest.fixture(autouse=True)
def _isolate_global_state():
    """Snapshot and restore open_clip's config/tag tables, mmengine's DefaultScope, the farslip_ext
    catalogue and the registries' contents, so tests cannot depend on their order."""
    import open_clip

    from farslip_ext import compat
    from farslip_ext.catalogue import CATALOGUE

    state = compat.snapshot_global_state()
    catalogue = CATALOGUE.snapshot()
    modules = {k: dict(r.module_dict) for k, r in ALL_REGISTRIES.items()}
    yield
    compat.restore_global_state(state)
    CATALOGUE.restore(catalogue)
    for k, r in ALL_REGISTRIES.items():
        compat.unregister(r, [n for n in r.module_dict if n not in modules[k]])
        for name, cls in modules[k].items():
            if r.module_dict.get(name) is not cls:
                r.register_module(name=name, module=cls, force=True)
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
