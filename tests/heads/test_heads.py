"""Region heads (docs/reference/method.md §2.2) against independent computations.

``brute_roi_mean`` re-derives torchvision's ``roi_align(aligned=True, sampling_ratio=-1)`` followed by
the mean over the output bins with explicit Python loops and scalar bilinear interpolation; it is also
used by tests/losses/test_losses.py for the distillation student.
"""
from __future__ import annotations

import math

import pytest
import torch

from farslip_ext.heads import CropClsHead, CropPooledHead, RoIAlignHead, roi_align_mean
from farslip_ext.registry import HEADS
from tests.helpers.brute import brute_roi_mean


def _norm(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _boxes():
    # (B=2, K=3, 5): image 0 has two valid boxes, image 1 one valid box and one padded row between.
    return torch.tensor(
        [
            [[0.10, 0.20, 0.70, 0.90, 1.0], [0.0, 0.0, 1.0, 1.0, 1.0], [0.3, 0.3, 0.4, 0.4, 0.0]],
            [[0.0, 0.0, 0.0, 0.0, 0.0], [0.55, 0.05, 0.95, 0.65, 1.0], [0.2, 0.2, 0.9, 0.9, 0.0]],
        ],
        dtype=torch.float64,
    )


def test_roi_align_mean_matches_brute_force_loops():
    torch.manual_seed(0)
    grid = (3, 5)  # non-square: catches an x/y or H/W swap
    tokens = torch.randn(2, 15, 4, dtype=torch.float64)
    boxes = _boxes()
    got = roi_align_mean(tokens, grid, boxes)
    expected = [
        brute_roi_mean(tokens[0], grid, boxes[0, 0, :4].tolist()),
        brute_roi_mean(tokens[0], grid, boxes[0, 1, :4].tolist()),
        brute_roi_mean(tokens[1], grid, boxes[1, 1, :4].tolist()),
    ]
    assert got.shape == (3, 4)
    assert torch.allclose(got.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-5)


def test_roi_align_mean_hand_worked():
    # Full box: aligned sampling hits every token centre once -> plain mean of the tokens.
    tokens = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3) ** 1.5
    full = torch.tensor([[[0.0, 0.0, 1.0, 1.0, 1.0]], [[0.0, 0.0, 1.0, 1.0, 1.0]]])
    assert torch.allclose(roi_align_mean(tokens, (2, 3), full), tokens.mean(dim=1), atol=1e-4)
    # 2x2 grid, left half box: x samples at -0.25 (clamped to column 0) and 0.25 (0.75 col0 + 0.25 col1),
    # y samples exactly on both rows -> 0.875 * mean(col 0) + 0.125 * mean(col 1) = 0.875*3 + 0.125*5 = 3.25.
    f = torch.tensor([[[1.0, 10.0], [3.0, 30.0], [5.0, 50.0], [7.0, 70.0]]])  # tokens (r0c0, r0c1, r1c0, r1c1)
    left = torch.tensor([[[0.0, 0.0, 0.5, 1.0, 1.0]]])
    col0, col1 = (f[0, 0] + f[0, 2]) / 2, (f[0, 1] + f[0, 3]) / 2
    assert torch.allclose(roi_align_mean(f, (2, 2), left)[0], 0.875 * col0 + 0.125 * col1, atol=1e-6)
    assert torch.allclose(roi_align_mean(f, (2, 2), left)[0], torch.tensor([3.25, 32.5]), atol=1e-6)


def test_roi_align_head_normalised_brute_force_and_grad():
    torch.manual_seed(1)
    grid = (3, 5)
    tokens = torch.randn(2, 15, 4, dtype=torch.float64, requires_grad=True)
    head = HEADS.build(dict(type="RoIAlignHead"))
    assert isinstance(head, RoIAlignHead) and head.required_features == ("global_patches", "grid", "boxes")
    out = head(global_patches=tokens, grid=grid, boxes=_boxes())
    exp = [_norm(brute_roi_mean(tokens[0].detach(), grid, _boxes()[0, 0, :4].tolist())),
           _norm(brute_roi_mean(tokens[0].detach(), grid, _boxes()[0, 1, :4].tolist())),
           _norm(brute_roi_mean(tokens[1].detach(), grid, _boxes()[1, 1, :4].tolist()))]
    assert torch.allclose(out.double(), torch.tensor(exp, dtype=torch.float64), atol=1e-5)
    out.sum().backward()
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs"):
        head(global_patches=tokens, grid=grid)
    with pytest.raises(ValueError, match="tokens but grid"):
        head(global_patches=tokens, grid=(4, 4), boxes=_boxes())


def test_crop_cls_and_pooled_heads():
    torch.manual_seed(2)
    pooled = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    cls_head = HEADS.build(dict(type="CropClsHead"))
    assert isinstance(cls_head, CropClsHead) and cls_head.required_features == ("local_embed",)
    assert torch.allclose(cls_head(local_embed=pooled), torch.tensor([[0.6, 0.8], [0.0, -1.0]]))

    patches = torch.tensor([[[1.0, 0.0], [3.0, 4.0]], [[2.0, 2.0], [-2.0, 0.0]]])  # means (2,2), (0,1)
    pooled_head = HEADS.build(dict(type="CropPooledHead"))
    assert isinstance(pooled_head, CropPooledHead) and pooled_head.required_features == ("local_patches",)
    r = 1 / math.sqrt(2)
    assert torch.allclose(pooled_head(local_patches=patches), torch.tensor([[r, r], [0.0, 1.0]]))

    # boxes (if given) check the row count: 3 valid boxes vs 2 crops
    with pytest.raises(ValueError, match="valid rows"):
        cls_head(local_embed=pooled, boxes=_boxes())
    with pytest.raises(ValueError, match="needs"):
        pooled_head(local_embed=pooled)


def test_missing_inputs_are_named():
    import pytest
    import torch

    from farslip_ext.registry import HEADS

    with pytest.raises(ValueError, match=r"CropClsHead needs \['local_embed'\]"):
        HEADS.build(dict(type="CropClsHead"))(local_patches=torch.zeros(1, 4, 8))
    with pytest.raises(ValueError, match=r"RoIAlignHead needs \['grid', 'boxes'\]"):
        HEADS.build(dict(type="RoIAlignHead"))(global_patches=torch.zeros(1, 4, 8))
