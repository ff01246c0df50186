"""Dense forward and the dense-attention variants, against independent per-head loop computations."""
from __future__ import annotations

import json

import open_clip
import pytest
import torch
import torch.nn.functional as F

import farslip_ext
from farslip_ext.models import DenseFeatureExtractor, dense_forward
from farslip_ext.registry import DENSE_ATTN

VARIANTS = ["vanilla", "MaskCLIP", "SCLIP", "ClearCLIP", "SegEarth", "NACLIP"]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = open_clip.create_model("farslip-test-tiny").eval()
    # make every weight non-trivial (LayerNorms and biases too) so that mistakes cannot hide
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def _prior(h, w, std=1.0):
    n = h * w
    om = torch.zeros(n + 1, n + 1)
    for a in range(n):
        for b in range(n):
            ya, xa, yb, xb = a // w, a % w, b // w, b % w
            om[a + 1, b + 1] = torch.exp(torch.tensor(-((ya - yb) ** 2 + (xa - xb) ** 2) / (2 * std ** 2)))
    return om


def _reference_last_block(visual, x, variant, grid, ignore_residual):
    """Explicit per-image, per-head loops (no SDPA, no batching): the modified last block, ln_post, proj."""
    blk = visual.transformer.resblocks[-1]
    W, bias = blk.attn.in_proj_weight, blk.attn.in_proj_bias
    heads = blk.attn.num_heads
    width = x.shape[-1]
    hd = width // heads
    s = hd ** -0.5
    outs = []
    for bi in range(x.shape[0]):
        y = F.layer_norm(x[bi], (width,), blk.ln_1.weight, blk.ln_1.bias, blk.ln_1.eps)
        q_all = y @ W[:width].T + bias[:width]
        k_all = y @ W[width:2 * width].T + bias[width:2 * width]
        v_all = y @ W[2 * width:].T + bias[2 * width:]
        per_head = []
        for h in range(heads):
            q, k, v = (t[:, h * hd:(h + 1) * hd] for t in (q_all, k_all, v_all))
            sm = lambda a, b: torch.softmax((a @ b.T) * s, dim=-1)  # noqa: E731
            if variant == "vanilla":
                A = sm(q, k)
            elif variant == "MaskCLIP":
                A = torch.eye(q.shape[0])
            elif variant == "SCLIP":
                A = sm(q, q) + sm(k, k)
            elif variant == "ClearCLIP":
                A = sm(q, q)
            elif variant == "SegEarth":
                A = sm(q, q) + sm(k, k) + sm(v, v)
            elif variant == "NACLIP":
                A = torch.softmax((k @ k.T) * s + _prior(*grid), dim=-1)
            per_head.append(A @ v)
        o = torch.cat(per_head, dim=-1) @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias
        if not ignore_residual:
            r = x[bi] + o
            o = r + blk.mlp(blk.ln_2(r))
        o = F.layer_norm(o, (width,), visual.ln_post.weight, visual.ln_post.bias, visual.ln_post.eps) @ visual.proj
        outs.append(o)
    return torch.stack(outs)


def _trunk(visual, images):
    x = visual._embeds(images)
    for blk in visual.transformer.resblocks[:-1]:
        x = blk(x)
    return x


@pytest.mark.parametrize("ignore_residual", [True, False])
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_matches_per_head_loops(tiny, variant, ignore_residual):
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = dense_forward(tiny, images, variant, ignore_residual=ignore_residual)
        ref = _reference_last_block(tiny.visual, _trunk(tiny.visual, images), variant, out.grid, ignore_residual)
    assert out.grid == (4, 4) and out.patch_tokens.shape == (2, 16, 32)
    torch.testing.assert_close(out.patch_tokens, ref[:, 1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.cls_token, ref[:, 0], rtol=1e-5, atol=1e-5)


def test_segearth_rows_are_not_renormalised(tiny):
    """The SegEarth output with identical q=k=v rows equals 3·v (each softmax row sums to 1)."""
    from farslip_ext.models.dense_attn import SegEarthAttention

    v = torch.randn(1, 2, 5, 4)
    same = v[:, :, :1].expand_as(v).contiguous()  # all tokens identical -> uniform softmax
    out = SegEarthAttention().mix(same, same, same, (2, 2))
    torch.testing.assert_close(out, 3 * same)


def test_naclip_prior_matches_hand_computation():
    from farslip_ext.models.dense_attn import naclip_prior

    torch.testing.assert_close(naclip_prior((2, 3)), _prior(2, 3), rtol=0, atol=1e-6)
    assert naclip_prior((2, 3))[0].abs().sum() == 0 and naclip_prior((2, 3))[:, 0].abs().sum() == 0


@pytest.mark.parametrize("arch", ["farslip-test-tiny", "farslip-vitb16", "farslip-vitb32"])
def test_image_embed_equals_encode_image_exactly(arch):
    torch.manual_seed(3)
    model = open_clip.create_model(arch).eval()
    size = model.visual.image_size[0]
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        out = dense_forward(model, images)
        want = model.encode_image(images)
    assert torch.equal(out.image_embed, want)
    n = (size // model.visual.patch_size[0]) ** 2
    assert out.patch_tokens.shape == (2, n, model.visual.output_dim)


def test_branches_can_be_skipped(tiny):
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        only_img = dense_forward(tiny, images, return_dense=False)
        only_dense = dense_forward(tiny, images, return_image_embed=False)
        both = dense_forward(tiny, images)
    assert only_img.patch_tokens is None and only_dense.image_embed is None
    assert torch.equal(only_img.image_embed, both.image_embed)
    assert torch.equal(only_dense.patch_tokens, both.patch_tokens)


def test_any_input_size_interpolates_positions(tiny, tmp_path):
    """At 96x128 the image embedding equals stock open_clip's for a model built at that size with the
    bicubically resized positional table, and the dense map has the 6x8 grid."""
    from farslip_ext.models.dense import interpolate_pos_embed

    images = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        out = dense_forward(tiny, images)
    assert out.grid == (6, 8) and out.patch_map().shape == (2, 32, 6, 8)
    big = open_clip.create_model("farslip-test-tiny", force_image_size=(96, 128)).eval()
    sd = dict(tiny.state_dict())
    pe = tiny.visual.positional_embedding.detach()
    sd["visual.positional_embedding"] = interpolate_pos_embed(pe, (4, 4), (6, 8))
    big.load_state_dict(sd)
    with torch.no_grad():
        torch.testing.assert_close(out.image_embed, big.encode_image(images), rtol=0, atol=1e-6)
    # the bicubic resize keeps the CLS row and reproduces a constant table exactly
    const = torch.ones(17, 5)
    torch.testing.assert_close(interpolate_pos_embed(const, (4, 4), (6, 8)), torch.ones(49, 5))


def test_gradient_checkpointing_gives_same_outputs_and_grads():
    torch.manual_seed(4)
    a = open_clip.create_model("farslip-test-tiny").train()
    b = open_clip.create_model("farslip-test-tiny").train()
    b.load_state_dict(a.state_dict())
    b.visual.set_grad_checkpointing(True)
    images = torch.randn(2, 3, 64, 64)
    outs = []
    for m in (a, b):
        o = dense_forward(m, images)
        (o.image_embed.sum() + o.patch_tokens.square().sum()).backward()
        outs.append((o, m.visual.conv1.weight.grad.clone()))
    torch.testing.assert_close(outs[0][0].patch_tokens, outs[1][0].patch_tokens)
    torch.testing.assert_close(outs[0][1], outs[1][1])


def test_all_variants_registered_and_buildable():
    names = DENSE_ATTN.names()
    for v in VARIANTS:
        assert v in names
        assert DENSE_ATTN.build(dict(type=v, ignore_residual=False)).ignore_residual is False
    with pytest.raises(KeyError, match="SegEarth"):
        DENSE_ATTN.build(dict(type="SegEarht"))


def test_unsupported_tower_fails_at_build_time(tmp_path):
    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "farslip-test-rn.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path)
    rn = open_clip.create_model("farslip-test-rn")
    with pytest.raises(TypeError, match="ModifiedResNet.*timm towers"):
        DenseFeatureExtractor(rn)


def test_extractor_module_matches_function(tiny):
    ext = DenseFeatureExtractor(tiny, attn=dict(type="SCLIP"))
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ext(images).patch_tokens, dense_forward(tiny, images, "SCLIP").patch_tokens)
    assert farslip_ext.models.DenseFeatureExtractor is DenseFeatureExtractor
