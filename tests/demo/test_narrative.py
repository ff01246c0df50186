"""The report's sentences read the measured deltas: direction, numbers, and whether that is expected."""
from __future__ import annotations

from farslip_ext.demo.narrative import OVERRIDE_REASONS, override_rows, read_deltas


def _report(top1=(98.0, 96.0, 97.0), miou=(40.0, 40.2, 45.0), obj1=(0.41, 0.40, 0.43), obj2=(3.9, 3.95, 3.1)):
    def row(metric, vals):
        return {"metric": metric, "start": vals[0], "stage1": vals[1], "stage2": vals[2]}

    return {
        "summary": [row("zero-shot top-1 (%)", top1), row("retrieval mean recall (%)", (90.0, 90.1, 89.0)),
                    row("OVSS mIoU, synthetic (%)", miou)],
        "objectives": [dict(row("held-out stage-1 objective", obj1), stage="stage1", terms="ITC + distill"),
                       dict(row("held-out stage-2 objective", obj2), stage="stage2", terms="ITC + region")],
        "settings": {"recipe_lr": {"stage1": 1e-6, "stage2": 4e-9}, "plan": {"stage1_lr": 3e-5, "stage2_lr": 1e-5}},
        "phases": {"start": {"objectives": {"stage1": {"loss": 0.41, "distill_loss": 0.0041}}}},
    }


def test_sentences_follow_the_measured_direction():
    d = read_deltas(_report())
    s1, s2 = " ".join(d["stage1"]), " ".join(d["stage2"])
    assert "The held-out stage-1 objective (ITC + distill) fell (0.410 → 0.400): expected here" in s1
    assert "zero-shot top-1 fell (98.00 → 96.00, -2.00 points), more than the small change expected" in s1
    assert "30× the recipe's rate" in s1  # 3e-5 / 1e-6, read from the report
    assert "1.0 %" in s1  # the distillation share of the start objective
    assert "OVSS mIoU, synthetic did not move (40.00 → 40.20, +0.20 points): expected here" in s1
    assert "OVSS mIoU, synthetic rose (40.20 → 45.00, +4.80 points): expected here" in s2
    assert "zero-shot top-1 rose (96.00 → 97.00, +1.00 points), more than the small change expected" in s2
    assert "retrieval mean recall fell (90.10 → 89.00, -1.10 points), more than the small change expected" in s2
    assert "2,500× the recipe's rate" in s2


def test_a_rising_objective_is_called_out():
    d = read_deltas(_report(obj1=(0.41, 0.45, 0.45)))
    assert any("objective (ITC + distill) rose (0.410 → 0.450), not the expected fall" in s for s in d["stage1"])


def test_every_override_has_a_reason_and_recipe_values_are_named():
    recipe = {"optim": {"lr": 1e-6}, "data": {"batch_size": 40, "train": {"max_boxes": 4}}}
    rows = override_rows("stage2", {"optim.lr": 1e-5, "data.batch_size": 32, "data.train.max_boxes": 4}, recipe)
    assert rows[0][:3] == ("optim.lr", "1e-06", "1e-05") and "validation draw" in rows[0][3]
    assert rows[1][1:3] == ("40", "32") and rows[1][3] == OVERRIDE_REASONS["data.batch_size"]
    assert rows[2][3] == "the recipe's value, set explicitly"


def test_a_falling_ovss_after_stage_2_is_called_out():
    d = read_deltas(_report(miou=(40.0, 40.2, 38.0)))
    assert any("OVSS mIoU, synthetic fell (40.20 → 38.00, -2.20 points), not the expected rise" in s
               for s in d["stage2"])


def test_stage_specific_reasons_and_no_parent_key_borrowing():
    recipe = {"model": {"pretrained": "openai"}, "data": {"train": {"transform": {"image_size": 224, "foo": 1}}}}
    over = {"model.pretrained": "x.pt", "data.train.transform.foo": 2}
    s1 = override_rows("stage1", over, recipe)
    s2 = override_rows("stage2", over, recipe)
    assert s1[0][3] == OVERRIDE_REASONS["stage1:model.pretrained"] != s2[0][3]
    assert "stage-1 checkpoint" in s2[0][3]
    assert s1[1][3] == "(no reason recorded)"  # not the reason of data.train.transform


def test_reasons_are_filled_from_the_plan():
    rows = override_rows("stage1", {"schedule.max_steps": 4, "data.batch_size": 8}, {"data": {"batch_size": 40}},
                         {"steps": 4, "batch": 8, "negatives": 7})
    assert rows[0][3].startswith("4 steps per stage") and "7 in-batch negatives" in rows[1][3]
    assert not any("{" in r[3] for r in rows)
