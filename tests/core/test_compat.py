"""Every private-API touch has a feature probe; each probe passes on the pinned stack."""
from __future__ import annotations

import pytest

from farslip_ext import compat
from farslip_ext.errors import CompatibilityError


@pytest.mark.parametrize("name", sorted(compat.PROBES))
def test_probe(name):
    compat.PROBES[name]()


def test_every_private_touch_is_probed():
    expected = {"tag_normalization", "pretrained_table", "weight_hooks", "vit_internals", "tensor_version",
                "parse_to", "compiled_wrapper", "foreach_lerp", "registry_table", "global_state", "timm_vit_structure"}
    assert set(compat.PROBES) == expected


def test_a_failing_probe_names_the_dependency(monkeypatch):
    from open_clip import pretrained

    monkeypatch.setattr(pretrained, "_PRETRAINED", None)
    with pytest.raises(CompatibilityError,
                       match=r"open_clip 3\.\d+\.\d+: open_clip.pretrained._PRETRAINED .* is gone.*compat.py"):
        compat.PROBES["pretrained_table"]()
