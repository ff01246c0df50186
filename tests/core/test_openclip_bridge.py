"""`import farslip_ext` makes the FarSLIP architectures, tokenizers and tags available in open_clip."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import open_clip
import pytest
import torch

import farslip_ext
from farslip_ext import _openclip


def test_models_listed_and_tags_registered():
    models = open_clip.list_models()
    for name in ("farslip-vitb16", "farslip-vitb32", "farslip-test-tiny", "farslip-test-tiny-long"):
        assert name in models
    assert set(open_clip.list_pretrained_tags_by_model("farslip-vitb16")) == {"s1", "s2"}
    assert set(open_clip.list_pretrained_tags_by_model("farslip-vitb32")) == {"s1", "s2"}
    assert ("farslip-vitb16", "s2") in farslip_ext.list_pretrained()


@pytest.mark.parametrize("arch,patch,ctx", [("farslip-vitb16", 16, 248), ("farslip-vitb32", 32, 77)])
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
    before_paths = len(open_clip.factory._MODEL_CONFIG_PATHS)
    farslip_ext.setup()
    farslip_ext.setup()
    _openclip.add_model_config_path(_openclip._ADDED_PATHS[0])
    assert len(open_clip.factory._MODEL_CONFIG_PATHS) == before_paths


def test_config_that_would_shadow_another_is_an_error(tmp_path):
    import json

    cfg = open_clip.get_model_config("ViT-B-32")
    cfg["embed_dim"] = 256
    (tmp_path / "ViT-B-32.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="silently replace"):
        _openclip.add_model_config_path(tmp_path)


def test_config_missing_keys_is_an_error(tmp_path):
    (tmp_path / "farslip-broken.json").write_text('{"embed_dim": 8}')
    with pytest.raises(ValueError, match="vision_cfg"):
        _openclip.add_model_config_path(tmp_path)


def test_unknown_tag_error_lists_tags():
    with pytest.raises(RuntimeError, match="not a known tag"):
        open_clip.create_model("farslip-test-tiny", pretrained="s9")
    with pytest.raises(KeyError, match="available tags"):
        from farslip_ext.catalogue import pretrained_entry

        pretrained_entry("farslip-vitb16", "s9")


def test_tokenizer_follows_built_model():
    model = farslip_ext.create_model("farslip-test-tiny", force_context_length=248)
    tok = farslip_ext.get_tokenizer(model, "farslip-test-tiny")
    assert tok.context_length == 248
    with torch.no_grad():
        assert model.encode_text(tok(["a river"])).shape == (1, 32)
