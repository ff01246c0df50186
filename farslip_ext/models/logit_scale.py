"""The CLIP logit-scale clamp: ``logit_scale`` (a log temperature) stays in ``[0, ln 100]``, as in
open_clip's training loop and the FarSLIP reference (docs/reference/method.md §1.5 in docs/reference/method.md)."""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["LOGIT_SCALE_MAX", "clamp_logit_scale_"]

#: ln(100): the largest logit scale (a temperature of 1/100).
LOGIT_SCALE_MAX = math.log(100)


@torch.no_grad()
def clamp_logit_scale_(model: nn.Module, max_value: float = LOGIT_SCALE_MAX) -> None:
    """Clamp ``model.logit_scale`` in place to ``[0, max_value]`` (no-op for a model without one)."""
    scale = getattr(model, "logit_scale", None)
    if isinstance(scale, torch.Tensor):
        scale.clamp_(0, float(max_value))
