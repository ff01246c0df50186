"""Exported Hub folders load in *stock* open_clip (a process that never imports farslip_ext)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import torch

import farslip_ext
from tests.helpers.checkpoints import make_hub_cache, random_state_dict, save_container, to_long_clip_two_table

_STOCK = textwrap.dedent("""
    import json, sys, torch, open_clip
    name = sys.argv[1]
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    tok = open_clip.get_tokenizer(name)
    model.eval()
    torch.manual_seed(0)
    img = torch.randn(2, 3, *model.visual.image_size)
    with torch.no_grad():
        i = model.encode_image(img)
        t = model.encode_text(tok(['a satellite image of a river', 'a satellite image of farmland']))
    assert 'farslip_ext' not in sys.modules
    print(json.dumps({'img': i.tolist(), 'txt': t.tolist(), 'ctx': tok.context_length,
                      'mean': list(preprocess.transforms[-1].mean)}))
""")


def _stock(name, **env):
    e = dict(os.environ, **env)
    out = subprocess.run([sys.executable, "-c", _STOCK, name], capture_output=True, text=True, timeout=180, env=e)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _expected(model, ctx):
    import open_clip

    model.eval()
    torch.manual_seed(0)
    img = torch.randn(2, 3, *model.visual.image_size)
    tok = open_clip.get_tokenizer("", context_length=ctx) if ctx != 77 else open_clip.get_tokenizer("ViT-B-32")
    with torch.no_grad():
        return model.encode_image(img), model.encode_text(tok(["a satellite image of a river", "a satellite image of farmland"]))


def test_export_long_clip_model_loads_in_stock_open_clip(tmp_path):
    sd = random_state_dict("farslip-test-tiny-long", seed=11)
    two, _ = to_long_clip_two_table(sd)
    path = save_container(two, tmp_path / "ckpt.pt", "training")
    model = farslip_ext.create_model("farslip-test-tiny-long", pretrained=str(path))
    out = farslip_ext.export_hub_folder(model, tmp_path / "farslip-tiny-hub", arch="farslip-test-tiny-long",
                                        source="test fabricated", license="mit")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.md", "open_clip_config.json", "open_clip_model.safetensors"]
    card = (out / "README.md").read_text()
    assert "license: mit" in card and "test fabricated" in card and "mean" in card
    want_i, want_t = _expected(model, 248)

    r = _stock(f"local-dir:{out}")
    assert r["ctx"] == 248
    torch.testing.assert_close(torch.tensor(r["img"]), want_i, rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.tensor(r["txt"]), want_t, rtol=0, atol=1e-5)

    cache = tmp_path / "hub"
    make_hub_cache(cache, "someone/farslip-tiny", {p.name: p for p in out.iterdir()})
    r = _stock("hf-hub:someone/farslip-tiny", HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache))
    torch.testing.assert_close(torch.tensor(r["txt"]), want_t, rtol=0, atol=1e-5)
