"""LongCLIP stretch (77 -> 248), the frozen/trainable split for training, and its export."""
from __future__ import annotations

import warnings

import open_clip
import pytest
import torch

import farslip_ext
from farslip_ext.models import enable_long_clip_training, open_clip_state_dict, stretch_positional_embedding
from farslip_ext.models.quickgelu import QuickGELUWarning, uses_quick_gelu
from tests.helpers.checkpoints import random_state_dict, save_container


def _hand_stretch(P):
    """docs/reference/method.md §2.5, written out row by row."""
    rows = [P[i].clone() for i in range(20)]
    for i in range(56):
        for j in range(4):
            rows.append(((4 - j) * P[20 + i] + j * P[21 + i]) / 4)
    for j in range(4):
        rows.append(P[76] + j * (P[76] - P[75]) / 4)
    return torch.stack(rows)


def test_stretch_equals_hand_computed_table():
    P = torch.randn(77, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = stretch_positional_embedding(P.float())
    assert got.shape == (248, 8)
    torch.testing.assert_close(got.double(), _hand_stretch(P), rtol=0, atol=1e-6)


def test_training_split_freezes_first_rows_even_under_weight_decay():
    torch.manual_seed(1)
    model = open_clip.create_model("farslip-test-tiny")
    original = model.positional_embedding.detach().clone()
    enable_long_clip_training(model)
    assert model.context_length == 248 and model.attn_mask.shape == (248, 248)
    stretched = stretch_positional_embedding(original)
    torch.testing.assert_close(model.positional_embedding, stretched)
    tok = open_clip.get_tokenizer("farslip-test-tiny-long")
    text = tok([" ".join(["farmland and a river"] * 20), "a road"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1.0)
    model.encode_text(text).square().sum().backward()
    raw = model.parametrizations.positional_embedding.original
    assert raw.grad[:20].abs().sum() == 0 and raw.grad[20:].abs().sum() > 0
    opt.step()
    after = model.positional_embedding.detach()
    assert torch.equal(after[:20], stretched[:20])  # frozen rows: no gradient, no decay
    assert not torch.allclose(after[20:], stretched[20:])


def test_export_loads_into_stock_248_model_and_encodes_identically():
    torch.manual_seed(2)
    model = open_clip.create_model("farslip-test-tiny")
    enable_long_clip_training(model)
    with torch.no_grad():
        model.parametrizations.positional_embedding.original.add_(0.1)  # "trained" rows >= 20
    sd = open_clip_state_dict(model)
    assert not any("parametrizations" in k for k in sd)
    stock = open_clip.create_model("farslip-test-tiny-long")
    stock.load_state_dict(sd, strict=True)
    text = open_clip.get_tokenizer("farslip-test-tiny-long")([" ".join(["a harbour with ships"] * 12)])
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(text), stock.encode_text(text), rtol=0, atol=1e-6)


def test_long_tokenizers_have_248_context():
    assert open_clip.get_tokenizer("farslip-vitb16").context_length == 248
    assert open_clip.get_tokenizer("farslip-test-tiny-long")(["x"]).shape == (1, 248)


def test_quick_gelu_archs_and_loud_warning_for_gelu_models(tmp_path):
    assert uses_quick_gelu(open_clip.create_model("farslip-test-tiny"))
    sd = random_state_dict("farslip-test-tiny", seed=3)
    path = save_container(sd, tmp_path / "ckpt.pt", "state_dict")
    with warnings.catch_warnings():
        warnings.simplefilter("error", QuickGELUWarning)
        farslip_ext.create_model("farslip-test-tiny", pretrained=str(path))  # QuickGELU: no warning
    with pytest.warns(QuickGELUWarning, match="open_clip#771"):
        model = farslip_ext.create_model("farslip-test-tiny", pretrained=str(path), quick_gelu=False)
    assert not uses_quick_gelu(model)
