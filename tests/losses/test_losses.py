"""Losses (docs/reference/method.md §1.3, §1.5, §2.3) against independent computations: explicit Python loops over
small tensors, hand-worked values and open_clip's ClipLoss where a variant reduces to it."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from farslip_ext.losses import GlobalITCLoss, PaddedRegionITCLoss, PatchDistillLoss, RegionCategoryLoss
from farslip_ext.registry import LOSSES
from tests.helpers.brute import brute_roi_mean


def _unit(n, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=-1)


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def _loop_ce(logits, target_col):
    """-log softmax(logits)[target_col] for one row (a list of floats)."""
    m = max(logits)
    return -(logits[target_col] - m - math.log(sum(math.exp(z - m) for z in logits)))


def _loop_clip(img, txt, scale, valid=None):
    """CLIP InfoNCE by loops; rows with valid False are no targets but stay as columns."""
    n = len(img)
    valid = valid or [True] * n
    li = [[scale * _dot(img[i], txt[j]) for j in range(n)] for i in range(n)]
    lt = [[scale * _dot(txt[i], img[j]) for j in range(n)] for i in range(n)]
    rows = [i for i in range(n) if valid[i]]
    ci = sum(_loop_ce(li[i], i) for i in rows) / len(rows)
    ct = sum(_loop_ce(lt[i], i) for i in rows) / len(rows)
    return (ci + ct) / 2


def _loop_mpcl(v, t, labels, scale):
    """Multi-positive loss by double loops over the rows with label != -1."""
    keep = [i for i, y in enumerate(labels) if y != -1]
    total_v = total_t = 0.0
    for i in keep:
        pos = [j for j in keep if labels[j] == labels[i]]
        zv = [scale * _dot(v[i], t[j]) for j in keep]
        zt = [scale * _dot(t[i], v[j]) for j in keep]
        lse_v = math.log(sum(math.exp(z) for z in zv))
        lse_t = math.log(sum(math.exp(z) for z in zt))
        for j in pos:
            col = keep.index(j)
            total_v -= (zv[col] - lse_v) / len(pos)
            total_t -= (zt[col] - lse_t) / len(pos)
    return 0.5 * (total_v / len(keep) + total_t / len(keep))


# ---------------------------------------------------------------- global ITC (docs/reference/method.md §1.5)
def test_global_itc_matches_loops_and_weight():
    img, txt = _unit(5, 4, 0), _unit(5, 4, 1)
    scale = torch.tensor(7.5, dtype=torch.float64)
    loss = LOSSES.build(dict(type="GlobalITCLoss"))
    assert isinstance(loss, GlobalITCLoss)
    assert (loss.clip_loss.local_loss, loss.clip_loss.gather_with_grad, loss.clip_loss.cache_labels) == (False, False, True)
    assert (loss.clip_loss.rank, loss.clip_loss.world_size) == (0, 1)
    out = loss(img, txt, scale)
    assert list(out) == ["global_itc_loss"]
    expected = _loop_clip(img.tolist(), txt.tolist(), 7.5)
    assert out["global_itc_loss"].item() == pytest.approx(expected, rel=1e-10)
    half = GlobalITCLoss(loss_weight=0.5)(img, txt, scale)["global_itc_loss"]
    assert half.item() == pytest.approx(0.5 * expected, rel=1e-10)


# ---------------------------------------------------------------- distillation (docs/reference/method.md §1.3)
GRID = (3, 4)


def _distill_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    gp = torch.randn(2, 12, 5, generator=g, dtype=torch.float64)
    boxes = torch.tensor(
        [[[0.1, 0.1, 0.8, 0.7, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0]],
         [[0.25, 0.0, 1.0, 0.5, 1.0], [0.0, 0.3, 0.6, 1.0, 1.0]]],
        dtype=torch.float64,
    )
    cp = torch.randn(3, 9, 5, generator=g, dtype=torch.float64)  # 3 valid crops, own 3x3 token grid
    cpool = torch.randn(3, 5, generator=g, dtype=torch.float64)
    return gp, boxes, cp, cpool


def _loop_distill(gp, boxes, targets):
    valid = [(b, k) for b in range(boxes.shape[0]) for k in range(boxes.shape[1]) if boxes[b, k, 4] == 1]
    cos = []
    for i, (b, k) in enumerate(valid):
        s = brute_roi_mean(gp[b], GRID, boxes[b, k, :4].tolist())
        t = targets[i]
        cos.append(_dot(s, t) / math.sqrt(_dot(s, s) * _dot(t, t)))
    return 1 - sum(cos) / len(cos)


def test_distill_roi2pooled_roi2cls_combined_match_loops():
    gp, boxes, cp, cpool = _distill_inputs()
    pooled_targets = [[sum(cp[i, n, d].item() for n in range(9)) / 9 for d in range(5)] for i in range(3)]
    exp_pooled = _loop_distill(gp, boxes, pooled_targets)
    exp_cls = _loop_distill(gp, boxes, cpool.tolist())

    l_pooled = LOSSES.build(dict(type="PatchDistillLoss", align="roi2pooled", loss_weight=1.0))
    l_cls = PatchDistillLoss(align="roi2cls", loss_weight=1.0)
    l_comb = PatchDistillLoss(align="combined", loss_weight=1.0)
    assert l_pooled(gp, GRID, boxes, crop_patches=cp)["distill_loss"].item() == pytest.approx(exp_pooled, abs=1e-6)
    assert l_cls(gp, GRID, boxes, crop_pooled=cpool)["distill_loss"].item() == pytest.approx(exp_cls, abs=1e-6)
    comb = l_comb(gp, GRID, boxes, crop_patches=cp, crop_pooled=cpool)
    assert list(comb) == ["distill_loss"]
    assert comb["distill_loss"].item() == pytest.approx(0.5 * exp_pooled + 0.5 * exp_cls, abs=1e-6)
    # default weight is the reference 0.1
    assert PatchDistillLoss()(gp, GRID, boxes, crop_patches=cp)["distill_loss"].item() == pytest.approx(
        0.1 * exp_pooled, abs=1e-7
    )


def test_distill_required_features_and_input_checks():
    student = ("global_patches", "grid", "subset_boxes")
    assert PatchDistillLoss("roi2pooled").required_features == student + ("subset_patches",)
    assert PatchDistillLoss("roi2cls").required_features == student + ("subset_embed",)
    assert set(PatchDistillLoss("combined").required_features) == set(student) | {"subset_patches", "subset_embed"}
    with pytest.raises(ValueError, match="align"):
        PatchDistillLoss("roi")
    gp, boxes, cp, cpool = _distill_inputs()
    with pytest.raises(ValueError, match="crop_pooled"):
        PatchDistillLoss("roi2cls")(gp, GRID, boxes, crop_patches=cp)
    with pytest.raises(ValueError, match="valid rows"):
        PatchDistillLoss("roi2pooled")(gp, GRID, boxes, crop_patches=cp[:2])


def test_distill_hand_worked_zero_and_gradients_reach_both_sides():
    # Full-image box: the RoI mean is the plain token mean; a crop whose tokens are the image's own tokens
    # (shuffled) has the same mean -> cosine 1 -> loss 0.
    gp = torch.randn(1, 12, 5, dtype=torch.float64)
    boxes = torch.tensor([[[0.0, 0.0, 1.0, 1.0, 1.0]]], dtype=torch.float64)
    crop = gp[:, torch.randperm(12)].clone()
    assert PatchDistillLoss(loss_weight=1.0)(gp, GRID, boxes, crop_patches=crop)["distill_loss"].item() == pytest.approx(
        0.0, abs=1e-12
    )
    # Opposite target -> cosine -1 -> loss 2.
    assert PatchDistillLoss(loss_weight=1.0)(gp, GRID, boxes, crop_patches=-crop)["distill_loss"].item() == pytest.approx(
        2.0, abs=1e-12
    )
    # Active teacher: targets carry grad, so both sides receive gradient.
    gp, boxes, cp, _ = _distill_inputs(3)
    gp.requires_grad_(True)
    cp.requires_grad_(True)
    PatchDistillLoss()(gp, GRID, boxes, crop_patches=cp)["distill_loss"].backward()
    assert gp.grad.abs().sum() > 0 and cp.grad.abs().sum() > 0


def test_distill_no_valid_box_is_zero_with_grad_path():
    gp = torch.randn(2, 12, 5, requires_grad=True)
    boxes = torch.zeros(2, 2, 5)
    cp = torch.zeros(0, 12, 5, requires_grad=True)
    out = PatchDistillLoss()(gp, GRID, boxes, crop_patches=cp)["distill_loss"]
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert torch.equal(gp.grad, torch.zeros_like(gp))


# ---------------------------------------------------------------- region-category MPCL (docs/reference/method.md §2.3)
def test_region_category_loss_matches_double_loops():
    v, t = _unit(7, 4, 10), _unit(7, 4, 11)
    labels = torch.tensor([3, 1, -1, 3, 2, 1, 3])
    scale = torch.tensor(4.0, dtype=torch.float64)
    loss = LOSSES.build(dict(type="RegionCategoryLoss"))
    out = loss(v, t, scale, labels=labels)
    assert list(out) == ["region_itc_loss"]
    expected = _loop_mpcl(v.tolist(), t.tolist(), labels.tolist(), 4.0)
    assert out["region_itc_loss"].item() == pytest.approx(expected, rel=1e-10)
    # valid=False drops a row exactly like label -1
    valid = torch.ones(7, dtype=torch.bool)
    valid[4] = False
    got = RegionCategoryLoss(loss_weight=2.0)(v, t, scale, labels=labels, valid=valid)["region_itc_loss"]
    exp2 = _loop_mpcl(v.tolist(), t.tolist(), [3, 1, -1, 3, -1, 1, 3], 4.0)
    assert got.item() == pytest.approx(2.0 * exp2, rel=1e-10)


def test_region_category_distinct_labels_reduce_to_clip_loss():
    # One region per category -> P is the identity -> plain CLIP InfoNCE (open_clip's ClipLoss).
    v, t = _unit(6, 8, 20), _unit(6, 8, 21)
    scale = torch.tensor(10.0, dtype=torch.float64)
    got = RegionCategoryLoss()(v, t, scale, labels=torch.arange(6))["region_itc_loss"]
    assert got.item() == pytest.approx(ClipLoss()(v, t, scale).item(), rel=1e-10)


def test_region_category_no_valid_label_is_zero_not_nan():
    v = _unit(3, 4, 30).requires_grad_(True)
    t = _unit(3, 4, 31).requires_grad_(True)
    scale = torch.tensor(5.0, dtype=torch.float64, requires_grad=True)
    out = RegionCategoryLoss()(v, t, scale, labels=torch.full((3,), -1))["region_itc_loss"]
    assert out.item() == 0.0
    out.backward()
    assert torch.equal(v.grad, torch.zeros_like(v)) and torch.equal(t.grad, torch.zeros_like(t))
    with pytest.raises(ValueError, match="labels"):
        RegionCategoryLoss()(v, t, scale)
    # a batch without any region crop (0 rows) is also a graph-connected zero
    e = torch.zeros(0, 4, requires_grad=True)
    out = RegionCategoryLoss()(e, e, scale, labels=torch.zeros(0, dtype=torch.long))["region_itc_loss"]
    assert out.item() == 0.0 and out.requires_grad


# ---------------------------------------------------------------- padded one-to-one region ITC (docs/reference/method.md §2.3, §7.9)
def test_padded_region_itc_keeps_zero_columns_and_ignores_padded_targets():
    v, t = _unit(5, 4, 40), _unit(5, 4, 41)
    valid = torch.tensor([True, False, True, True, False])
    scale = torch.tensor(6.0, dtype=torch.float64)
    loss = LOSSES.build(dict(type="PaddedRegionITCLoss"))
    out = loss(v, t, scale, valid=valid)
    assert list(out) == ["region_itc_loss"]
    vz = [row if ok else [0.0] * 4 for row, ok in zip(v.tolist(), valid.tolist())]
    tz = [row if ok else [0.0] * 4 for row, ok in zip(t.tolist(), valid.tolist())]
    expected = _loop_clip(vz, tz, 6.0, valid.tolist())
    assert out["region_itc_loss"].item() == pytest.approx(expected, rel=1e-10)
    # pad_to adds zero rows -> more logit-0 columns in the denominators (reference padding to B*K)
    padded = PaddedRegionITCLoss(pad_to=8)(v, t, scale, valid=valid)["region_itc_loss"]
    exp_pad = _loop_clip(vz + [[0.0] * 4] * 3, tz + [[0.0] * 4] * 3, 6.0, valid.tolist() + [False] * 3)
    assert padded.item() == pytest.approx(exp_pad, rel=1e-10)
    assert padded.item() > out["region_itc_loss"].item()
    # all valid and no padding -> exactly open_clip's ClipLoss
    full = PaddedRegionITCLoss()(v, t, scale)["region_itc_loss"]
    assert full.item() == pytest.approx(ClipLoss()(v, t, scale).item(), rel=1e-12)
    none = PaddedRegionITCLoss()(v, t, scale, valid=torch.zeros(5, dtype=torch.bool))["region_itc_loss"]
    assert none.item() == 0.0
    with pytest.raises(ValueError, match="pad_to"):
        PaddedRegionITCLoss(pad_to=3)(v, t, scale)
