"""Dense forward and the dense-attention variants, against independent per-head loop computations."""
from __future__ import annotations

import json

import open_clip
import pytest
import torch

import farslip_ext
from farslip_ext.models import DenseFeatureExtractor, build_dense_attention, dense_forward
from farslip_ext.registry import DENSE_ATTN
from tests.helpers.contracts import check_dense_variant, fork_maskclip_tokens, naclip_prior_loops

VARIANTS = ["vanilla", "MaskCLIP", "SCLIP", "ClearCLIP", "SegEarth", "NACLIP"]


@pytest.mark.parametrize("ignore_residual", [True, False])
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_matches_per_head_loops(tiny, variant, ignore_residual):
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    check_dense_variant(variant, DENSE_ATTN, tiny, images, ignore_residual)
    with torch.no_grad():
        out = dense_forward(tiny, images, variant, ignore_residual=ignore_residual)
    assert out.grid == (4, 4) and out.patch_tokens.shape == (2, 16, 32)


def test_maskclip_training_default_is_the_fork_formula(tiny):
    """ignore_residual=None selects each variant's training-fork rule: MaskCLIP keeps residual + MLP,
    x' = x + out_proj(v(ln_1 x)), then x' + mlp(ln_2 x') (docs/reference/method.md §4.1), written out here;
    SegEarth drops both; the OVSS default (True) drops them for MaskCLIP too."""
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        fork = fork_maskclip_tokens(tiny.visual, images)
        train_default = dense_forward(tiny, images, "MaskCLIP", ignore_residual=None)
        ovss_default = dense_forward(tiny, images, "MaskCLIP")
    torch.testing.assert_close(train_default.patch_tokens, fork[:, 1:], rtol=1e-5, atol=1e-5)
    assert (ovss_default.patch_tokens - fork[:, 1:]).abs().max() > 1e-2  # the two references differ
    assert build_dense_attention("MaskCLIP", ignore_residual=None).ignore_residual is False
    assert build_dense_attention("SegEarth", ignore_residual=None).ignore_residual is True
    assert build_dense_attention(dict(type="MaskCLIP", ignore_residual=True), ignore_residual=None).ignore_residual


def test_segearth_rows_are_not_renormalised(tiny):
    """The SegEarth output with identical q=k=v rows equals 3·v (each softmax row sums to 1)."""
    from farslip_ext.models.dense_attn import SegEarthAttention

    v = torch.randn(1, 2, 5, 4)
    same = v[:, :, :1].expand_as(v).contiguous()  # all tokens identical -> uniform softmax
    out = SegEarthAttention().mix(same, same, same, (2, 2))
    torch.testing.assert_close(out, 3 * same)


def test_naclip_prior_matches_hand_computation():
    from farslip_ext.models.dense_attn import naclip_prior

    torch.testing.assert_close(naclip_prior((2, 3)), naclip_prior_loops(2, 3), rtol=0, atol=1e-6)
    assert naclip_prior((2, 3))[0].abs().sum() == 0 and naclip_prior((2, 3))[:, 0].abs().sum() == 0
    # two prefix tokens (CLS + a register): both rows and columns are zero
    torch.testing.assert_close(naclip_prior((2, 3), prefix=2), naclip_prior_loops(2, 3, prefix=2), rtol=0, atol=1e-6)


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
    with pytest.raises(TypeError, match="ModifiedResNet.*Supported families: open_clip VisionTransformer.*timm "
                                        "VisionTransformer.*timm Eva"):
        DenseFeatureExtractor(rn)


def test_extractor_module_matches_function(tiny):
    ext = DenseFeatureExtractor(tiny, attn=dict(type="SCLIP"))
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ext(images).patch_tokens, dense_forward(tiny, images, "SCLIP").patch_tokens)
    assert farslip_ext.models.DenseFeatureExtractor is DenseFeatureExtractor
