"""Dense features on every supported vision-tower family: open_clip ViT (OpenAI-style), timm ViT trunks
with a class token and with attention pooling (SigLIP-like), timm Eva (EVA02, rotary positions).

Independent references: the tokens entering the last block and its rotary embedding are captured with
forward hooks while timm's own ``forward_features`` runs; the last block is then recomputed per image and
per head from its weights; the per-token map is written out (norm, the attention pool's value path,
the heads). With the unmodified attention and the residual kept, the dense path must reproduce the
tower's own image embedding.
"""
from __future__ import annotations

import json

import open_clip
import pytest
import torch
import torch.nn.functional as F

from farslip_ext.models import dense_forward
from farslip_ext.models.dense_attn import check_supported_tower
from farslip_ext.models.towers import UnsupportedTowerError, tower_of
from farslip_ext.registry import DENSE_ATTN
from tests.helpers import tiny_towers
from tests.helpers.contracts import BUILTIN_WEIGHTS

TIMM = ["timm_vit", "siglip", "eva"]


@pytest.fixture(autouse=True)
def _towers():
    tiny_towers.register()


def _model(family: str, seed: int = 0):
    torch.manual_seed(seed)
    m = open_clip.create_model(tiny_towers.FAMILIES[family]).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # every weight non-trivial (norms, biases, layer scales, latent query)
        for p in m.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return m


def _images(n=2, seed=3):
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def _capture_last_block_input(trunk, images):
    """(tokens, kwargs) the last block receives during timm's own forward_features."""
    seen = {}

    def hook(module, args, kwargs):
        seen["x"], seen["kwargs"] = args[0].detach().clone(), dict(kwargs)

    h = trunk.blocks[-1].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        trunk.forward_features(images)
    finally:
        h.remove()
    return seen["x"], seen["kwargs"]


def _ln(x, m):
    return F.layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps) if isinstance(m, torch.nn.LayerNorm) else m(x)


def _reference_qkv(blk, y, rope, prefix):
    """Per-head q, k, v lists of one image's normed tokens y (T, C), from the block's weights."""
    attn = blk.attn
    heads = attn.num_heads
    if getattr(attn, "qkv", None) is not None:
        w = attn.qkv.weight
        bias = attn.qkv.bias if attn.qkv.bias is not None else torch.zeros(w.shape[0])
        c = w.shape[0] // 3
        q, k, v = (y @ w[i * c:(i + 1) * c].T + bias[i * c:(i + 1) * c] for i in range(3))
    else:  # Eva: separate projections, no key bias
        q = y @ attn.q_proj.weight.T + attn.q_proj.bias
        k = y @ attn.k_proj.weight.T
        v = y @ attn.v_proj.weight.T + attn.v_proj.bias
    hd = q.shape[-1] // heads
    out = []
    for h in range(heads):
        qh, kh, vh = (t[:, h * hd:(h + 1) * hd] for t in (q, k, v))
        qh, kh = _ln(qh, attn.q_norm), _ln(kh, attn.k_norm)
        if rope is not None:  # rotary positions on the patch tokens only (timm's own rotation)
            from timm.layers import apply_rot_embed_cat

            qh = torch.cat([qh[:prefix], apply_rot_embed_cat(qh[prefix:], rope)])
            kh = torch.cat([kh[:prefix], apply_rot_embed_cat(kh[prefix:], rope)])
        out.append((qh, kh, vh))
    return out


def _reference_dense(model, images, variant, ignore_residual):
    """The modified last block, per image and per head, then the per-token map, written out."""
    trunk = model.visual.trunk
    x_all, kwargs = _capture_last_block_input(trunk, images)
    rope = kwargs.get("rope")
    prefix = trunk.num_prefix_tokens
    blk = trunk.blocks[-1]
    grid = (images.shape[-2] // 16, images.shape[-1] // 16)
    outs = []
    for x in x_all:
        y = _ln(x, blk.norm1)
        mixed = torch.cat([BUILTIN_WEIGHTS[variant](q, k, v, grid) @ v for q, k, v in
                           _reference_qkv(blk, y, rope, prefix)], dim=-1)
        o = _ln(mixed, blk.attn.norm) @ blk.attn.proj.weight.T + blk.attn.proj.bias
        if not ignore_residual:
            g1 = getattr(blk, "gamma_1", None)
            g1 = g1 if g1 is not None else getattr(getattr(blk, "ls1", None), "gamma", None)
            r = x + (g1 * o if g1 is not None else o)
            m = blk.mlp(_ln(r, blk.norm2))
            g2 = getattr(blk, "gamma_2", None)
            g2 = g2 if g2 is not None else getattr(getattr(blk, "ls2", None), "gamma", None)
            o = r + (g2 * m if g2 is not None else m)
        outs.append(o)
    dense = _ln(torch.stack(outs), trunk.norm)
    pool = getattr(trunk, "attn_pool", None)
    if pool is not None:  # each token alone through the pool: its value path, proj, + mlp(norm(.))
        c = dense.shape[-1]
        v = dense @ pool.kv.weight[c:].T + pool.kv.bias[c:]
        t = v @ pool.proj.weight.T + pool.proj.bias
        tokens = t + pool.mlp(_ln(t, pool.norm))
    else:
        tokens = dense
    tokens = _ln(tokens, trunk.fc_norm)
    if isinstance(trunk.head, torch.nn.Linear):
        tokens = tokens @ trunk.head.weight.T + (trunk.head.bias if trunk.head.bias is not None else 0)
    for layer in model.visual.head:
        if isinstance(layer, torch.nn.Linear):
            tokens = tokens @ layer.weight.T + (layer.bias if layer.bias is not None else 0)
    return tokens[:, prefix:], tokens


@pytest.mark.parametrize("family", list(tiny_towers.FAMILIES))
def test_image_embedding_is_bit_identical_to_encode_image(family):
    model = _model(family)
    with torch.no_grad():
        out = dense_forward(model, _images())
        want = model.encode_image(_images())
    assert torch.equal(out.image_embed, want)
    assert out.grid == (4, 4) and out.patch_tokens.shape[:2] == (2, 16)
    assert out.patch_map().shape == (2, out.patch_tokens.shape[-1], 4, 4)


@pytest.mark.parametrize("family", TIMM)
def test_unmodified_attention_with_residual_reproduces_the_tower(family):
    """vanilla + residual is the tower's own last block: its global token is the image embedding."""
    model = _model(family)
    with torch.no_grad():
        out = dense_forward(model, _images(), "vanilla", ignore_residual=False)
        want = model.encode_image(_images())
    torch.testing.assert_close(out.cls_token, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ignore_residual", [True, False])
@pytest.mark.parametrize("variant", sorted(BUILTIN_WEIGHTS))
@pytest.mark.parametrize("family", TIMM)
def test_variants_on_timm_towers_match_per_head_loops(family, variant, ignore_residual):
    model = _model(family)
    with torch.no_grad():
        out = dense_forward(model, _images(), variant, ignore_residual=ignore_residual)
        ref_patches, ref_all = _reference_dense(model, _images(), variant, ignore_residual)
    torch.testing.assert_close(out.patch_tokens, ref_patches, rtol=1e-5, atol=1e-5)
    if tower_of(model).has_class_token:
        torch.testing.assert_close(out.cls_token, ref_all[:, 0], rtol=1e-5, atol=1e-5)


def test_tower_facts():
    facts = {f: (tower_of(_model(f)).num_prefix_tokens, tower_of(_model(f)).has_class_token) for f in tiny_towers.FAMILIES}
    assert facts == {"openai": (1, True), "timm_vit": (1, True), "siglip": (1, False), "eva": (1, True)}
    eva = _model("eva").visual.trunk
    assert eva.rope is not None and eva.blocks[-1].attn.qkv is None  # rotary, separate q/k/v: the EVA02 layout
    assert _model("siglip").visual.trunk.attn_pool is not None


@pytest.mark.parametrize("family", TIMM)
def test_gradients_flow_through_timm_dense_features(family):
    model = _model(family).train()
    out = dense_forward(model, _images(), "SegEarth")
    (out.patch_tokens.square().mean() + out.image_embed.square().mean()).backward()
    trunk = model.visual.trunk
    assert trunk.patch_embed.proj.weight.grad.abs().sum() > 0
    assert trunk.blocks[-1].attn.proj.weight.grad.abs().sum() > 0


def test_check_supported_tower_gives_timm_towers_a_patch_size():
    vis = _model("siglip").visual
    assert not hasattr(vis, "patch_size")
    check_supported_tower(vis)
    assert tuple(vis.patch_size) == (16, 16)


def _config(tmp_path, name, vision):
    cfg = {"embed_dim": 16, "vision_cfg": vision,
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path)
    return open_clip.create_model(name)


def test_convolutional_towers_are_a_clear_error(tmp_path):
    rn = _config(tmp_path, "farslip-test-rn", {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16})
    cnx = _config(tmp_path, "farslip-test-convnext", {"image_size": 64, "timm_model_name": "test_convnext",
                                                       "timm_model_pretrained": False, "timm_pool": "avg",
                                                       "timm_proj": "linear"})
    for model, what in ((rn, "ModifiedResNet"), (cnx, "timm ConvNeXt")):
        with pytest.raises(UnsupportedTowerError, match=f"{what}.*Supported families") as err:
            dense_forward(model, torch.zeros(1, 3, 64, 64))
        assert isinstance(err.value, TypeError) and "SigLIP" in str(err.value) and "EVA02" in str(err.value)


def test_a_fixed_size_timm_tower_at_another_size_is_a_clear_error():
    model = _model("siglip")  # built without dynamic_img_size
    with pytest.raises(ValueError, match="dynamic_img_size=False"):
        dense_forward(model, torch.zeros(1, 3, 96, 96))
    # the dynamic one (class-token ViT) runs at 96 px with a 6x6 grid
    out = dense_forward(_model("timm_vit"), torch.zeros(1, 3, 96, 96))
    assert out.grid == (6, 6) and out.patch_tokens.shape[1] == 36


def test_every_registered_variant_runs_on_every_family():
    names = DENSE_ATTN.names()
    for family in tiny_towers.FAMILIES:
        model = _model(family)
        for name in names:
            with torch.no_grad():
                out = dense_forward(model, _images(1), name)
            assert torch.isfinite(out.patch_tokens).all(), (family, name)
