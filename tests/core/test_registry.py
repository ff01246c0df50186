"""Registries: dict(type=...) builds, helpful unknown-name errors, duplicates, scope independence."""
from __future__ import annotations

import pytest
import torch
from mmengine.registry import DefaultScope

from farslip_ext.registry import ALL_REGISTRIES, LOSSES, SCOPE


def _register_dummy(force=False, name="DummyScaleLoss"):
    @LOSSES.register_module(name=name, force=force)
    class DummyScaleLoss(torch.nn.Module):
        def __init__(self, weight: float = 1.0):
            super().__init__()
            self.weight = weight

        def forward(self, x):
            return {"dummy_loss": self.weight * x.sum()}

    return DummyScaleLoss


def test_every_registry_has_farslip_scope():
    assert set(ALL_REGISTRIES) == {"LOSSES", "HEADS", "TEACHERS", "DENSE_ATTN", "TRAIN_DATASETS", "EVAL_DATASETS",
                                   "SAMPLE_TRANSFORMS", "TASKS", "TEMPLATES"}
    for reg in ALL_REGISTRIES.values():
        assert reg.scope == SCOPE


def test_build_from_type_dict():
    cls = _register_dummy()
    loss = LOSSES.build(dict(type="DummyScaleLoss", weight=2.0))
    assert isinstance(loss, cls) and loss.weight == 2.0
    assert loss(torch.ones(3))["dummy_loss"].item() == 6.0
    assert isinstance(LOSSES.build(dict(type="farslip_ext.DummyScaleLoss")), cls)


def test_unknown_name_names_registry_close_matches_and_remedy():
    _register_dummy()
    with pytest.raises(KeyError) as err:
        LOSSES.build(dict(type="DummyScaleLos"))
    msg = str(err.value)
    assert "'loss' registry" in msg and "'DummyScaleLoss'" in msg and "register_module" in msg


def test_duplicate_is_error_unless_forced():
    _register_dummy()
    with pytest.raises(KeyError, match="already registered"):
        _register_dummy()
    newer = _register_dummy(force=True)
    assert LOSSES.get("DummyScaleLoss") is newer


def test_build_is_correct_under_another_default_scope():
    """After an mmseg Runner the process has default scope 'mmseg'; our builds must not be redirected."""
    cls = _register_dummy()
    DefaultScope.get_instance("test-mmseg-scope", scope_name="mmseg")
    assert DefaultScope.get_current_instance().scope_name == "mmseg"
    assert isinstance(LOSSES.build(dict(type="DummyScaleLoss")), cls)
    assert DefaultScope.get_current_instance().scope_name == "mmseg"  # restored after the build


def test_bad_config_shapes_are_clear():
    with pytest.raises(TypeError, match="dict with a 'type' key"):
        LOSSES.build("DummyScaleLoss")
    with pytest.raises(KeyError, match="no 'type' key"):
        LOSSES.build(dict(weight=1.0))
