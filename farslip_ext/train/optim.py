"""AdamW with the reference's weight-decay exclusions, and warmup + cosine (docs/reference/method.md §0.2).

Parameter groups: the CLIP model's parameters in the reference's two groups (no decay for ndim < 2 or
names with bn/ln/bias/logit_scale; decay for the rest), then — when the task has learnable components
(loss, head or teacher parameters) — the same split of theirs, with ``optim.component_lr`` /
``optim.component_weight_decay`` when set. A component can name more no-decay parameters with a
``no_weight_decay()`` method (the timm convention: names relative to the component).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

import torch
from torch import nn

__all__ = ["param_groups", "component_parameters", "build_optimizer", "build_scheduler", "cosine_with_warmup"]

_NO_WD_NAME_PARTS = ("bn", "ln", "bias", "logit_scale")


def _exclude_from_wd(name: str, p: torch.Tensor) -> bool:
    """Reference rule (open_clip_train main.py): ndim < 2 or a name containing bn/ln/bias/logit_scale."""
    return p.ndim < 2 or any(part in name for part in _NO_WD_NAME_PARTS)


def param_groups(named: Iterable[Tuple[str, nn.Parameter]], weight_decay: float,
                 no_decay_names: Optional[Set[str]] = None) -> List[Dict[str, Any]]:
    decay, no_decay = [], []
    extra = no_decay_names or set()
    for name, p in named:
        if not p.requires_grad:
            continue
        (no_decay if name in extra or _exclude_from_wd(name, p) else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def component_parameters(task: nn.Module, model: nn.Module) -> Tuple[List[Tuple[str, nn.Parameter]], Set[str]]:
    """``(named parameters of task that are not the model's, their no-weight-decay names)``."""
    model_ids = {id(p) for p in model.parameters()}
    named = [(n, p) for n, p in task.named_parameters() if id(p) not in model_ids]
    no_wd: Set[str] = set()
    model_modules = {id(m) for m in model.modules()}
    for prefix, module in task.named_modules():
        if id(module) in model_modules or module is task:
            continue
        fn = getattr(module, "no_weight_decay", None)
        if callable(fn):
            no_wd.update(f"{prefix}.{n}" if prefix else n for n in fn())
    return named, no_wd


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.98), eps: float = 1e-6,
                    impl: str = "auto", task: Optional[nn.Module] = None, component_lr: Optional[float] = None,
                    component_weight_decay: Optional[float] = None) -> torch.optim.Optimizer:
    """AdamW over ``model`` (and the learnable components of ``task``, when given). ``impl``: ``"fused"``
    (one kernel for all params; CUDA and CPU in torch ≥ 2.4), ``"foreach"``, ``"for"`` (reference-style
    per-parameter loop) or ``"auto"`` (fused)."""
    groups = param_groups(model.named_parameters(), weight_decay)
    if task is not None:
        named, no_wd = component_parameters(task, model)
        wd = weight_decay if component_weight_decay is None else float(component_weight_decay)
        for g in param_groups(named, wd, no_wd):
            if g["params"]:
                if component_lr is not None:
                    g["lr"] = float(component_lr)
                groups.append(g)
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
