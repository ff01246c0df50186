"""`farslip segment` without --pretrained uses a tag the model really has (farslip-vitb32 has no s2)."""
from __future__ import annotations

from farslip_ext.catalogue import CATALOGUE
from farslip_ext.commands.segment import default_tag


def test_default_tag_is_registered_for_the_model():
    assert default_tag("farslip-vitb16") == "s2"
    assert default_tag("farslip-vitb32") == "s1"
    assert default_tag("farslip-vitb32-ctx248") == "s2"
    assert default_tag("ViT-B-32") is None and default_tag("farslip-test-tiny") is None
    for arch, tags in CATALOGUE.entries().items():
        tag = default_tag(arch)
        assert tag is None or tag in tags, arch
