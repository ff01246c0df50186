"""`import farslip_ext` makes the FarSLIP architectures, tokenizers and tags available in open_clip."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import open_clip
import pytest
import torch

import farslip_ext
from farslip_ext.catalogue import CATALOGUE, CatalogueError
from farslip_ext.openclip_bridge import sync


def test_models_listed_and_tags_registered():
    models = open_clip.list_models()
    for name in ("farslip-vitb16", "farslip-vitb16-ctx77", "farslip-vitb32", "farslip-vitb32-ctx248",
                 "farslip-test-tiny", "farslip-test-tiny-long", "farslip-demo-tiny"):
        assert name in models
    # each released file has its exact architecture (text context included)
    assert open_clip.list_pretrained_tags_by_model("farslip-vitb16") == ["s2"]
    assert open_clip.list_pretrained_tags_by_model("farslip-vitb16-ctx77") == ["s1"]
    assert open_clip.list_pretrained_tags_by_model("farslip-vitb32") == ["s1"]
    assert open_clip.list_pretrained_tags_by_model("farslip-vitb32-ctx248") == ["s2"]
    assert open_clip.list_pretrained_tags_by_model("farslip-demo-tiny") == ["demo"]
    for arch, tag in farslip_ext.list_pretrained():
        entry = CATALOGUE.entry(arch, tag)
        ctx = open_clip.get_model_config(arch)["text_cfg"]["context_length"]
        assert entry.context_length == ctx, (arch, tag)
    assert ("farslip-vitb16", "s2") in farslip_ext.list_pretrained()


@pytest.mark.parametrize("arch,patch,ctx", [("farslip-vitb16", 16, 248), ("farslip-vitb16-ctx77", 16, 77),
                                            ("farslip-vitb32", 32, 77), ("farslip-vitb32-ctx248", 32, 248)])
def test_architecture_matches_released_checkpoints(arch, patch, ctx):
    model = open_clip.create_model(arch)
    sd = model.state_dict()
    assert sd["visual.conv1.weight"].shape == (768, 3, patch, patch)
    assert sd["visual.positional_embedding"].shape == ((224 // patch) ** 2 + 1, 768)
    assert sd["visual.proj"].shape == (768, 512)
    assert sd["positional_embedding"].shape == (ctx, 512)
    assert sd["text_projection"].shape == (512, 512)
    assert len(model.visual.transformer.resblocks) == 12 and len(model.transformer.resblocks) == 12
    # OpenAI-style ViT with QuickGELU in both towers
    assert type(model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    assert type(model.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    tok = open_clip.get_tokenizer(arch)
    assert tok(["a satellite image of farmland"]).shape == (1, ctx)


@pytest.mark.parametrize("first", ["open_clip", "farslip_ext"])
def test_import_order_does_not_matter(first):
    other = "farslip_ext" if first == "open_clip" else "open_clip"
    code = textwrap.dedent(f"""
        import {first}, {other}
        import open_clip
        assert 'farslip-vitb16' in open_clip.list_models(), open_clip.list_models()[-5:]
        m = open_clip.create_model('farslip-test-tiny')
        print(open_clip.get_tokenizer('farslip-vitb16').context_length)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "248"


def test_setup_is_idempotent():
    from farslip_ext.compat import snapshot_global_state

    before = snapshot_global_state()
    farslip_ext.setup()
    farslip_ext.setup()
    CATALOGUE.add_model_configs(CATALOGUE.config_paths()[0])
    sync()
    after = snapshot_global_state()
    assert after["config_paths"] == before["config_paths"]
    assert after["tags"].keys() == before["tags"].keys()


def test_config_that_would_shadow_another_is_an_error(tmp_path):
    import json

    cfg = open_clip.get_model_config("ViT-B-32")
    cfg["embed_dim"] = 256
    (tmp_path / "ViT-B-32.json").write_text(json.dumps(cfg))
    CATALOGUE.add_model_configs(tmp_path)
    with pytest.raises(CatalogueError, match="silently replace"):
        sync()
    # and two catalogue paths that define one name differently
    (tmp_path / "b").mkdir()
    ours = open_clip.get_model_config("farslip-test-tiny")
    ours["embed_dim"] = 16
    (tmp_path / "b" / "farslip-test-tiny.json").write_text(json.dumps(ours))
    with pytest.raises(CatalogueError, match="differs from the one already registered"):
        CATALOGUE.add_model_configs(tmp_path / "b")


def test_config_missing_keys_is_an_error(tmp_path):
    (tmp_path / "farslip-broken.json").write_text('{"embed_dim": 8}')
    with pytest.raises(CatalogueError, match="vision_cfg"):
        CATALOGUE.add_model_configs(tmp_path)


def test_unknown_tag_error_lists_tags():
    with pytest.raises(RuntimeError, match="not a known tag"):
        open_clip.create_model("farslip-test-tiny", pretrained="s9")
    with pytest.raises(KeyError, match="available tags"):
        CATALOGUE.entry("farslip-vitb16", "s9")
    with pytest.raises(farslip_ext.WeightsNotAvailableError, match=r"registered for \['farslip-vitb16-ctx77:s1', 'farslip-vitb32:s1'\]"):
        farslip_ext.load("farslip-vitb16", "s1")


def test_tokenizer_follows_built_model():
    model = farslip_ext.create_model("farslip-test-tiny", force_context_length=248)
    tok = farslip_ext.get_tokenizer(model, "farslip-test-tiny")
    assert tok.context_length == 248
    with torch.no_grad():
        assert model.encode_text(tok(["a river"])).shape == (1, 32)
