"""AdamW with the reference's weight-decay exclusions, and warmup + cosine (farslip-method.md §0.2)."""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Tuple

import torch
from torch import nn

__all__ = ["param_groups", "build_optimizer", "build_scheduler", "cosine_with_warmup"]

_NO_WD_NAME_PARTS = ("bn", "ln", "bias", "logit_scale")


def _exclude_from_wd(name: str, p: torch.Tensor) -> bool:
    """Reference rule (open_clip_train main.py): ndim < 2 or a name containing bn/ln/bias/logit_scale."""
    return p.ndim < 2 or any(part in name for part in _NO_WD_NAME_PARTS)


def param_groups(named: Iterable[Tuple[str, nn.Parameter]], weight_decay: float) -> List[Dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in named:
        if not p.requires_grad:
            continue
        (no_decay if _exclude_from_wd(name, p) else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.98), eps: float = 1e-6,
                    impl: str = "auto") -> torch.optim.Optimizer:
    """AdamW. ``impl``: ``"fused"`` (one kernel for all params; CUDA and CPU in torch ≥ 2.4), ``"foreach"``,
    ``"for"`` (reference-style per-parameter loop) or ``"auto"`` (fused where supported, else foreach)."""
    groups = param_groups(model.named_parameters(), weight_decay)
    kwargs: Dict[str, Any] = dict(lr=lr, betas=tuple(betas), eps=eps)
    if impl == "auto":
        impl = "fused"
    if impl == "fused":
        kwargs["fused"] = True
    elif impl == "foreach":
        kwargs["foreach"] = True
    elif impl == "for":
        kwargs["foreach"] = False
    else:
        raise ValueError(f"optimizer impl must be one of auto, fused, foreach, for; got {impl!r}")
    return torch.optim.AdamW(groups, **kwargs)


def cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    """LR multiplier: linear warmup to 1 over ``warmup`` steps, then cosine to 0 at ``total`` (open_clip cosine_lr)."""
    if step < warmup:
        return (step + 1) / warmup
    e = step - warmup
    es = max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(e, es) / es))


def build_scheduler(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_with_warmup(s, warmup, total))
