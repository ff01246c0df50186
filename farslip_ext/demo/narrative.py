"""The words of the demo report: why each recipe setting is overridden, and what each delta means.

Every number in these sentences is read from the report; only the explanations are fixed text. Each
(stage, metric) pair has the direction expected *at the demo's scale* and the reason; the sentence
says whether the measured change matches it.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

__all__ = ["OVERRIDE_REASONS", "override_rows", "read_deltas", "FLAT_POINTS", "FLAT_RELATIVE"]

#: Changes smaller than this (percentage points) count as "did not move".
FLAT_POINTS = 0.5
#: Relative change of a held-out objective below which it counts as "did not move".
FLAT_RELATIVE = 0.01

#: Why the demo changes each setting of the built-in recipes (keys are ``--cfg-options`` keys; a
#: ``"stage1:"``/``"stage2:"`` prefix gives one stage its own reason). Keys match exactly: a reason is
#: never borrowed from a parent key (``data.train.transform`` says nothing about its ``image_size``).
OVERRIDE_REASONS: Dict[str, str] = {
    "model.name": "farslip-demo-tiny, the 4 MB CLIP shipped with the package: a ViT-B does not train in a minute on "
                  "a CPU",
    "stage1:model.pretrained": "the shipped demo CLIP, in the role of the recipe's OpenAI CLIP (the same starting "
                               "point for every demo run)",
    "stage2:model.pretrained": "the stage-1 checkpoint of this run, as the two-stage method intends (the reference "
                               "README starts stage 2 from OpenAI CLIP; docs/reference/method.md)",
    "data.num_workers": "one process: the demo runs on two shared CPU cores (no effect on the numbers)",
    "data.pin_memory": "no GPU (no effect on the numbers)",
    "data.batch_size": "{batch} instead of 160 (4 GPUs × 40): memory and time on a CPU; each sample has {negatives} "
                       "in-batch negatives instead of 159",
    "data.train.urls": "the embedded RS5M-format training split",
    "data.train.json_path": "the embedded MGRS-format training split",
    "data.train.image_root": "the embedded MGRS-format training split",
    "data.train.transform.image_size": "96 px, the demo CLIP's input size (224 for ViT-B)",
    "data.train.image_size": "96 px, the demo CLIP's input size (224 for ViT-B)",
    "data.train.shuffle_buffer": "the recipe's 5,000-sample buffer is larger than the {rs5m} training pairs",
    "data.train.shuffle_initial": "the recipe's 1,000 is larger than the {rs5m} training pairs",
    "data.train.transform.num_crops": "CPU time: every crop is one more image encoding with gradients; 4 crops "
                                      "took stage 1 from 21 s to 41 s of CPU on the build machine",
    "data.train.max_boxes": "CPU time: every box is one more crop encoding; 4 boxes took stage 2 from 21 s to 29 s "
                            "of CPU on the build machine",
    "data.train.seed": "the run's seed",
    "data.train.min_size": "{min_size} px on {mgrs_size}-px scenes: the recipe's 64 px scaled with the image size "
                           "(MGRS-200k images are several hundred pixels wide)",
    "data.train.transform": "no colour jitter or grayscale: colour is what separates the synthetic classes (water vs "
                            "road, forest vs meadow); the measured effect of the recipe's jitter is in the "
                            "learning-rate record below",
    "data.train.region_transform": "the same transform for the object crops",
    "optim.lr": "the one setting scaled for 16 steps: chosen on a validation draw, see 'Learning rates' below (the "
                "recipe's rate is meant for tens of thousands of ViT-B steps)",
    "schedule.epochs": "one pass; the run is cut at schedule.max_steps",
    "schedule.max_steps": "{steps} steps per stage: the CPU budget of the demo (the recipes run 31,696 and about "
                          "12,500)",
    "schedule.steps_per_epoch": "the {rs5m} training pairs in batches of {batch}",
    "schedule.warmup_steps": "{warmup} of {steps} steps (the recipes warm up for 3 % and 2 % of their steps)",
    "train.work_dir": "the demo's output folder",
    "train.device": "a CPU",
    "train.precision": "fp32: the recipes' amp is fp16 autocast on CUDA, which a CPU does not have",
    "train.seed": "the run's seed",
    "train.resume": "every demo run starts fresh",
    "train.save_every_steps": "only the final checkpoint is written",
    "train.log_every": "every step is logged (figures/training.png)",
    "train.progress": "the package's progress policy (a bar on a terminal)",
}


def _lookup(d: Dict[str, Any], dotted: str) -> Any:
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _short(v: Any) -> str:
    text = repr(v) if not isinstance(v, str) else v
    return text if len(text) <= 60 else text[:57] + "..."


class _Values(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def override_rows(stage: str, overrides: Dict[str, Any], recipe: Dict[str, Any],
                  values: Optional[Dict[str, Any]] = None) -> List[Tuple[str, str, str, str]]:
    """``(key, recipe value, demo value, reason)`` for every override of one stage; ``values`` fill the
    reasons' ``{steps}``, ``{batch}``, ``{rs5m}``... (the run's plan and sizes)."""
    vals = _Values(values or {})
    rows = []
    for key, value in overrides.items():
        base = _lookup(recipe, key)
        if base == value or (isinstance(base, (list, tuple)) and list(base) == value):
            reason = "the recipe's value, set explicitly"
        else:
            reason = OVERRIDE_REASONS.get(f"{stage}:{key}", OVERRIDE_REASONS.get(key, "(no reason recorded)"))
            reason = reason.format_map(vals)
        rows.append((key, _short(base), _short(value), reason))
    return rows


# ------------------------------------------------------------------------------------------ deltas
#: (stage, metric label) -> (expected direction at the demo's scale: "up", "down" or "flat", why)
EXPECTED: Dict[Tuple[str, str], Tuple[str, str]] = {
    ("stage1", "objective"): ("down", "it is what stage 1 minimises, measured on scenes it never trained on"),
    ("stage1", "zero-shot top-1 (%)"): (
        "flat", "16 steps of image-caption ITC at {lr1_ratio} the recipe's rate move the text tower only a little; "
                "at larger rates the validation draw shows zero-shot accuracy falling (the learning-rate table), the "
                "cost of fitting 512 training captions"),
    ("stage1", "retrieval mean recall (%)"): (
        "flat", "the training captions are written like the retrieval captions, and 16 small steps are few"),
    ("stage1", "OVSS mIoU, synthetic (%)"): (
        "flat", "the distillation term that targets dense features is only {distill_share} of the stage-1 objective "
                "here (the demo CLIP's crop and RoI features already agree), so the patch features barely change"),
    ("stage2", "objective"): ("down", "it is what stage 2 minimises, measured on scenes it never trained on"),
    ("stage2", "zero-shot top-1 (%)"): (
        "flat", "the region loss shares the prompt 'a satellite image of {{category}}' with zero-shot classification "
                "but, at {lr2_ratio} the recipe's rate, moves it little; larger rates pull zero-shot accuracy down "
                "(the learning-rate table)"),
    ("stage2", "retrieval mean recall (%)"): (
        "flat", "the region term is most of the stage-2 objective, so whole-image alignment gets a small share of "
                "the update"),
    ("stage2", "OVSS mIoU, synthetic (%)"): (
        "up", "aligning object crops with their category names is the per-region signal open-vocabulary "
              "segmentation reads"),
    ("stage2", "OVSS pixel acc., synthetic (%)"): ("up", "the same per-region alignment drives it"),
    ("stage1", "OVSS mIoU, Landsat (%)"): ("flat", "the demo CLIP never saw real 28.5 m imagery"),
    ("stage2", "OVSS mIoU, Landsat (%)"): ("flat", "the demo CLIP never saw real 28.5 m imagery"),
}

_VERB = {"up": "rose", "down": "fell", "flat": "did not move"}


def _direction(delta: float, scale: float, relative: bool) -> str:
    limit = FLAT_RELATIVE * abs(scale) if relative else FLAT_POINTS
    if abs(delta) < limit:
        return "flat"
    return "up" if delta > 0 else "down"


def _sentence(label: str, before: float, after: float, expected: Optional[Tuple[str, str]], relative: bool,
              fmt: Dict[str, str]) -> str:
    delta = after - before
    got = _direction(delta, before, relative)
    unit = "" if relative else " points"
    moved = (f"{_VERB[got]} ({before:.3f} → {after:.3f})" if relative else
             f"{_VERB[got]} ({before:.2f} → {after:.2f}, {delta:+.2f}{unit})")
    text = f"{label} {moved}"
    if expected is None:
        return text + "."
    want, why = expected
    why = why.format(**fmt)
    if got == want:
        return f"{text}: expected here, because {why}."
    if want == "flat":
        return f"{text}, more than the small change expected ({why})."
    return f"{text}, not the expected {'rise' if want == 'up' else 'fall'} ({why})."


def read_deltas(report: Dict[str, Any]) -> Dict[str, List[str]]:
    """One sentence per headline metric and stage: what moved, and whether that is expected at this scale."""
    fmt = _format_values(report)
    out: Dict[str, List[str]] = {}
    for stage, before in (("stage1", "start"), ("stage2", "stage1")):
        lines = []
        obj = [r for r in report.get("objectives", []) if r["stage"] == stage]
        for r in obj:
            lines.append(_sentence(f"The held-out {stage.replace('stage', 'stage-')} objective ({r['terms']})",
                                   r[before], r[stage], EXPECTED.get((stage, "objective")), True, fmt))
        for r in report["summary"]:
            if (stage, r["metric"]) in EXPECTED or r["metric"] in ("zero-shot top-1 (%)", "retrieval mean recall (%)",
                                                                   "OVSS mIoU, synthetic (%)"):
                lines.append(_sentence(r["metric"].replace(" (%)", ""), r[before], r[stage],
                                       EXPECTED.get((stage, r["metric"])), False, fmt))
        out[stage] = lines
    return out


def _format_values(report: Dict[str, Any]) -> Dict[str, str]:
    rec = report.get("settings", {}).get("recipe_lr", {})
    plan = report.get("settings", {}).get("plan", {})
    fmt = {"lr1_ratio": "a larger multiple of", "lr2_ratio": "a larger multiple of", "distill_share": "a small part"}
    for stage, key in (("stage1", "lr1_ratio"), ("stage2", "lr2_ratio")):
        if rec.get(stage) and plan.get(f"{stage}_lr"):
            fmt[key] = f"{plan[f'{stage}_lr'] / rec[stage]:,.0f}×"
    start = report.get("phases", {}).get("start", {}).get("objectives", {}).get("stage1", {})
    if start.get("loss"):
        fmt["distill_share"] = f"{100 * start.get('distill_loss', 0.0) / start['loss']:.1f} %"
    return fmt
