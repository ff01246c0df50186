"""Backbone by config: a tiny model of each vision-tower family (OpenAI-style open_clip ViT, timm ViT with a
class token, SigLIP-like timm ViT with attention pooling, EVA02-like timm Eva) runs a stage-1 step
(distillation on dense tokens), stage-2 steps (region alignment from crop embeddings and from the dense
map) and the OVSS segmentor on CPU."""
from __future__ import annotations

import copy

import numpy as np
import open_clip
import pytest
import torch

from farslip_ext.registry import TASKS
from tests.helpers import tiny_towers
from tests.helpers.fake_data import random_batch

FAMILIES = list(tiny_towers.FAMILIES)


@pytest.fixture(autouse=True)
def _towers():
    tiny_towers.register()


def _model(family):
    torch.manual_seed(0)
    return open_clip.create_model(tiny_towers.FAMILIES[family])


def _step(model, task_cfg, batch):
    """One optimizer step; returns the losses and whether every trainable vision parameter moved."""
    task = TASKS.build(dict(type="FarSLIPTask", **task_cfg), default_args=dict(model=model))
    before = copy.deepcopy(model.visual.state_dict())
    opt = torch.optim.SGD([p for p in task.parameters() if p.requires_grad], lr=1e-2)
    losses, _ = task(batch)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    opt.step()
    task.after_optimizer_step()
    after = model.visual.state_dict()
    changed = sum(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
    return {k: float(v.detach()) for k, v in losses.items()}, changed


@pytest.mark.parametrize("teacher", ["ActiveTeacher", "EMATeacher"])
@pytest.mark.parametrize("family", FAMILIES)
def test_stage1_distillation_step(family, teacher):
    model = _model(family)
    losses, changed = _step(model, dict(teacher=dict(type=teacher), losses=dict(
        global_itc=dict(type="GlobalITCLoss"), distill=dict(type="PatchDistillLoss", weight=0.1))),
        random_batch(1, seed=1))
    assert set(losses) == {"global_itc_loss", "distill_loss"} and losses["distill_loss"] > 0
    assert changed > 0


@pytest.mark.parametrize("head", ["CropClsHead", "RoIAlignHead", "CropPooledHead"])
@pytest.mark.parametrize("family", FAMILIES)
def test_stage2_region_step(family, head):
    model = _model(family)
    losses, changed = _step(model, dict(region_head=dict(type=head), losses=dict(
        global_itc=dict(type="GlobalITCLoss"), region=dict(type="RegionCategoryLoss"))), random_batch(2, seed=2))
    assert set(losses) == {"global_itc_loss", "region_itc_loss"} and losses["region_itc_loss"] > 0
    assert changed > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_ovss_segmentor_forward(family):
    from farslip_ext.segmentation import FarSLIPSeg

    model = _model(family)
    seg = FarSLIPSeg(model=model, class_names=["water", "road", "building"], device="cpu", slide_crop=64,
                     slide_stride=32, text_cache=False)
    rgb = np.random.default_rng(0).uniform(0, 255, size=(96, 80, 3))
    mean, std = np.array([122.771, 116.746, 104.094]), np.array([68.501, 66.632, 70.323])
    img = torch.from_numpy(((rgb - mean) / std).transpose(2, 0, 1)).float()
    out = seg.predict(img[None])[0]
    probs = out.seg_logits.data
    assert probs.shape == (3, 96, 80) and out.pred_sem_seg.data.shape == (1, 96, 80)
    assert torch.isfinite(probs).all()
    torch.testing.assert_close(probs.sum(0), torch.ones(96, 80), rtol=1e-4, atol=1e-4)  # softmax over the classes
    assert torch.equal(out.pred_sem_seg.data[0], probs.argmax(0))
