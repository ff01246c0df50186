"""Collate: batch-key vocabulary and shapes, token padding, tokenizer injection (77 / 248)."""
from __future__ import annotations

import open_clip
import pytest
import torch

import farslip_ext.data  # noqa: F401
from farslip_ext.data.collate import STAGE1_KEYS, STAGE2_KEYS, FarSLIPCollate, build_tokenizer
from farslip_ext.registry import SAMPLE_TRANSFORMS

B, K, S = 3, 4, 16


def _stage2_sample(n_valid: int, tokens: bool, tok=None):
    boxes = torch.zeros(K, 5)
    boxes[:n_valid] = torch.tensor([0.1, 0.2, 0.5, 0.6, 1.0])
    texts = [f"a satellite image of road{k}" for k in range(n_valid)] + [""] * (K - n_valid)
    s = {
        "global_image": torch.randn(3, S, S),
        "global_text": "an aerial image of forest",
        "boxes": boxes,
        "local_images": torch.randn(K, 3, S, S) * (boxes[:, 4] > 0)[:, None, None, None],
        "local_texts": texts,
        "local_categories": torch.tensor([5] * n_valid + [-1] * (K - n_valid)),
    }
    if tokens:
        s["global_text"] = tok([s["global_text"]])[0]
        lt = tok(texts)
        lt[n_valid:] = 0
        s["local_texts"] = lt
    return s


def test_stage2_collate_from_strings_tokenizes_and_zero_pads():
    tok = open_clip.get_tokenizer("farslip-test-tiny")
    collate = FarSLIPCollate(tokenizer=tok, required_keys=STAGE2_KEYS)
    samples = [_stage2_sample(n, tokens=False) for n in (4, 1, 0)]
    batch = collate(samples)
    assert set(batch) == set(STAGE2_KEYS)
    assert batch["global_image"].shape == (B, 3, S, S)
    assert batch["global_text"].shape == (B, 77) and batch["global_text"].dtype == torch.int64
    assert batch["boxes"].shape == (B, K, 5)
    assert batch["local_images"].shape == (B, K, 3, S, S)
    assert batch["local_texts"].shape == (B, K, 77) and batch["local_texts"].dtype == torch.int64
    assert batch["local_categories"].shape == (B, K)
    assert batch["local_categories"].tolist() == [[5, 5, 5, 5], [5, -1, -1, -1], [-1, -1, -1, -1]]
    valid = batch["boxes"][..., 4] > 0
    assert valid.sum().item() == 5
    assert torch.count_nonzero(batch["local_texts"][~valid]) == 0
    assert torch.all(batch["local_texts"][valid][:, 0] == tok.sot_token_id)
    torch.testing.assert_close(batch["local_texts"][1, 0], tok(["a satellite image of road0"])[0])
    torch.testing.assert_close(batch["global_text"][0], tok(["an aerial image of forest"])[0])
    # the same batch from pre-tokenized samples (what the datasets yield with a tokenizer)
    pre = FarSLIPCollate()([_stage2_sample(n, tokens=True, tok=tok) for n in (4, 1, 0)])
    torch.testing.assert_close(pre["local_texts"], batch["local_texts"], rtol=0, atol=0)
    torch.testing.assert_close(pre["global_text"], batch["global_text"], rtol=0, atol=0)


def test_stage1_collate_shapes():
    samples = [
        {
            "global_image": torch.randn(3, S, S),
            "subset_images": torch.randn(K, 3, S, S),
            "subset_boxes": torch.rand(K, 5),
            "global_text": torch.randint(0, 100, (77,)),
            "img_name": f"x{i}.jpg",
        }
        for i in range(B)
    ]
    batch = FarSLIPCollate(required_keys=STAGE1_KEYS)(samples)
    assert batch["global_image"].shape == (B, 3, S, S)
    assert batch["subset_images"].shape == (B, K, 3, S, S)
    assert batch["subset_boxes"].shape == (B, K, 5)
    assert batch["global_text"].shape == (B, 77)
    assert batch["img_name"] == ["x0.jpg", "x1.jpg", "x2.jpg"]
    torch.testing.assert_close(batch["subset_images"][2], samples[2]["subset_images"], rtol=0, atol=0)


def test_context_length_is_configurable():
    long_tok = build_tokenizer("farslip-vitb16")  # LongCLIP text tower: 248
    assert long_tok(["x"]).shape == (1, 248)
    assert build_tokenizer("farslip-vitb16", context_length=77)(["x"]).shape == (1, 77)
    assert build_tokenizer(dict(name="farslip-test-tiny", context_length=248))(["x"]).shape == (1, 248)
    assert build_tokenizer(open_clip.get_tokenizer("farslip-test-tiny"), context_length=100)(["x"]).shape == (1, 100)
    batch = FarSLIPCollate(tokenizer="farslip-vitb16")([{"global_text": "a"}, {"global_text": "b"}])
    assert batch["global_text"].shape == (2, 248)


def test_without_tokenizer_strings_stay_lists():
    batch = FarSLIPCollate()([_stage2_sample(2, tokens=False), _stage2_sample(1, tokens=False)])
    assert batch["global_text"] == ["an aerial image of forest"] * 2
    assert batch["local_texts"][1] == ["a satellite image of road0", "", "", ""]
    assert batch["boxes"].shape == (2, K, 5)


def test_labels_numbers_and_lists():
    batch = FarSLIPCollate()([{"label": 3, "w": 0.5, "name": "a"}, {"label": 1, "w": 1.0, "name": "b"}])
    assert batch["label"].dtype == torch.int64 and batch["label"].tolist() == [3, 1]
    assert batch["w"].dtype == torch.float32
    assert batch["name"] == ["a", "b"]


def test_collate_errors_are_clear():
    with pytest.raises(ValueError, match="same keys"):
        FarSLIPCollate()([{"a": 1}, {"b": 1}])
    with pytest.raises(KeyError, match="boxes"):
        FarSLIPCollate(required_keys=STAGE2_KEYS)([{"global_image": torch.zeros(1)}])
    with pytest.raises(ValueError, match="empty"):
        FarSLIPCollate()([])
    with pytest.raises(TypeError):
        build_tokenizer(3)


def test_collate_builds_from_registry():
    c = SAMPLE_TRANSFORMS.build(dict(type="FarSLIPCollate", tokenizer="farslip-test-tiny", context_length=32))
    assert c([{"global_text": "a"}])["global_text"].shape == (1, 32)
