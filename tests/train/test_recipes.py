"""The built-in recipes reproduce the reference's *effective* configuration (docs/reference/method.md §0.2)."""
from __future__ import annotations

import pytest

from farslip_ext.registry import LOSSES, TASKS
from farslip_ext.train.config import list_recipes, load_config


def test_recipes_are_listed():
    assert {"stage1", "stage2", "clip_baseline"} <= set(list_recipes())


def test_stage1_effective_values():
    c = load_config("stage1")
    assert (c.model.name, c.model.pretrained) == ("ViT-B-16-quickgelu", "openai")
    assert (c.optim.lr, c.optim.weight_decay, tuple(c.optim.betas), c.optim.eps) == (1e-6, 1.0, (0.9, 0.98), 1e-6)
    assert (c.schedule.epochs, c.schedule.warmup_steps, c.schedule.steps_per_epoch) == (1, 1000, 31696)
    assert (c.data.batch_size, c.data.num_workers, c.train.precision, c.train.seed) == (40, 8, "amp", 0)
    assert c.task.dense_attn == "SegEarth" and c.task.teacher.type == "ActiveTeacher"
    assert c.task.losses.global_itc.weight == 1.0
    assert (c.task.losses.distill.align, c.task.losses.distill.weight) == ("roi2pooled", 0.1)
    t = c.data.train.transform
    assert (t.num_crops, tuple(t.scale), tuple(t.ratio)) == (4, (0.3, 0.7), (3 / 4, 4 / 3))
    assert c.train.logit_scale_max == pytest.approx(4.605170185988092)


def test_stage2_effective_values():
    c = load_config("stage2")
    assert (c.optim.lr, c.optim.weight_decay) == (4e-9, 1.0)
    assert (c.schedule.epochs, c.schedule.warmup_steps, c.data.batch_size) == (10, 250, 40)
    assert c.task.region_head.type == "CropClsHead"
    assert (c.task.losses.region.type, c.task.losses.region.weight) == ("RegionCategoryLoss", 1.0)
    assert (c.data.train.max_boxes, c.data.train.min_size, c.data.train.max_size) == (4, 64, 1024)
    assert "distill" not in c.task.losses


def test_every_value_is_overridable_and_validated():
    c = load_config("stage1", {"optim.lr": 3e-6, "task.losses.distill.align": "roi2cls", "data.batch_size": 8})
    assert (c.optim.lr, c.task.losses.distill.align, c.data.batch_size) == (3e-6, "roi2cls", 8)
    with pytest.raises(ValueError, match="train.precision='fp8' is not a precision; accepted"):
        load_config("stage1", {"train.precision": "fp8"})
    with pytest.raises(FileNotFoundError, match="recipes \\(built-in and plugins\\)"):
        load_config("stage3")


def test_recipe_components_exist():
    for name in ("stage1", "stage2", "clip_baseline"):
        c = load_config(name)
        assert TASKS.get(c.task.type) is not None
        for loss in c.task.losses.values():
            assert LOSSES.get(loss.type) is not None, loss.type
