"""`farslip list`: every registered architecture and tag (the packaged demo weights too), test-only ones marked."""
from __future__ import annotations

import json

from farslip_ext.catalogue import CATALOGUE
from farslip_ext.cli import main


def test_json_lists_every_arch_and_tag(capsys):
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    archs = {a["name"]: a for a in data["architectures"]}
    assert set(CATALOGUE.arch_names()) <= set(archs)
    tags = {p["name"] for p in data["pretrained"]}
    assert tags == {f"{a}:{t}" for a, t in CATALOGUE.list_pretrained()}
    assert "farslip-demo-tiny:demo" in tags
    assert archs["farslip-demo-tiny"]["tags"] == ["demo"] and archs["farslip-demo-tiny"]["test_only"] is False
    assert archs["farslip-test-tiny"]["test_only"] is True and archs["farslip-test-tiny-long"]["test_only"] is True
    assert archs["farslip-vitb16"]["text_context"] == 248 and archs["farslip-vitb32"]["text_context"] == 77
    assert "GlobalITCLoss" in data["registries"]["LOSSES"]
    # stock open_clip architectures with a zoo tag show open_clip's own config, not "?"
    assert archs["ViT-B-32"]["text_context"] == 77 and archs["ViT-B-32"]["image_size"] == 224
    assert "remoteclip" in archs["ViT-B-32"]["tags"] and archs["ViT-B-32"]["test_only"] is False


def test_table_marks_test_only_architectures(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  farslip-")}
    assert "test only" in lines["farslip-test-tiny"] and "test only" not in lines["farslip-vitb16"]
    assert "farslip-demo-tiny:demo" in lines and "demo_clip.safetensors" in lines["farslip-demo-tiny:demo"]


def test_a_tag_registered_later_is_listed(capsys):
    CATALOGUE.add_pretrained({"farslip-test-tiny": {"mine": {"file": "assets/none.safetensors", "license": "mit"}}})
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (mine,) = [p for p in data["pretrained"] if p["name"] == "farslip-test-tiny:mine"]
    assert mine["test_only"] is True and mine["location"] == "farslip_ext/assets/none.safetensors"
