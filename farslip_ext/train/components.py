"""A task's components from config (loss entries and their weights) and the rules for their parameters.

* :func:`build_loss_entry`: one ``task.losses`` entry, ``dict(type=..., weight=w, **kwargs)``. ``weight``
  scales the entry's ``*_loss`` terms; for a loss that has a ``loss_weight`` argument (the built-ins)
  it *is* that argument (so ``weight=0.1`` on ``PatchDistillLoss`` means 0.1, not 0.1 × its default).
  The older spelling ``loss_weight=w`` keeps working; giving both is an error.
* :func:`hidden_parameters`: trainable tensors a component holds where the optimizer cannot see them
  (a plain attribute, a list of modules, a teacher object's module) — an error, never silence.
* :func:`component_state_dict`: the task's state without the CLIP model (losses, head, teacher modules),
  what the training checkpoint stores as ``task_state`` beside the pure open_clip ``state_dict``.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from farslip_ext.errors import ConfigError
from farslip_ext.registry import LOSSES
from farslip_ext.train.features import check_feature_names
from farslip_ext.train.validation import check_component

__all__ = ["LossEntry", "build_loss_entry", "hidden_parameters", "component_state_dict", "load_component_state"]


@dataclass
class LossEntry:
    """A built ``task.losses`` entry."""

    name: str
    loss: Any
    multiplier: float  # applied by the task to the entry's terms (1.0 when the weight went into loss_weight)
    weight: Optional[float]  # the configured weight (None: the loss's own default)
    required_features: Tuple[str, ...]


def _accepts(cls: Any, arg: str) -> bool:
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False
    return arg in params


def build_loss_entry(name: str, cfg: Mapping[str, Any]) -> LossEntry:
    """Build one ``task.losses`` entry (see the module docstring)."""
    if not isinstance(cfg, Mapping) or "type" not in cfg:
        raise ConfigError(f"task.losses.{name} must be a dict(type=<registered loss>, weight=..., ...); got {cfg!r}")
    cfg = dict(cfg)
    weight = cfg.pop("weight", None)
    typ = cfg["type"]
    cls = check_component(cfg, "LOSSES", f"task.losses.{name}")  # unknown type / argument: a ConfigError
    multiplier = 1.0
    if weight is not None:
        if "loss_weight" in cfg:
            raise ConfigError(f"task.losses.{name} sets both weight={weight!r} and loss_weight={cfg['loss_weight']!r}; "
                              f"they are the same setting: keep one (e.g. --cfg-options task.losses.{name}.weight=...)")
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise ConfigError(f"task.losses.{name}.weight must be a number, got {weight!r}") from None
        if _accepts(cls, "loss_weight"):
            cfg["loss_weight"] = weight
        else:
            multiplier = weight
    loss = LOSSES.build(cfg)
    label = f"task.losses.{name} ({getattr(cls, '__name__', typ)})"
    if not hasattr(loss, "required_features"):
        raise ConfigError(f"{label} declares no required_features: a training loss lists the features it reads "
                          f"(farslip_ext/train/features.py) and returns a dict of '*_loss' terms; see docs/extending.md")
    required = check_feature_names(label, loss.required_features)
    return LossEntry(name, loss, multiplier, weight, required)


def _trainable_tensors(obj: Any, path: str, seen: set, depth: int = 0) -> List[Tuple[str, torch.Tensor]]:
    """``(path, tensor)`` of trainable leaf tensors reachable from ``obj`` (modules, containers, tensors)."""
    out: List[Tuple[str, torch.Tensor]] = []
    if id(obj) in seen or depth > 3:
        return out
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        if obj.requires_grad and obj.is_leaf:
            out.append((path, obj))
    elif isinstance(obj, nn.Module):
        out.extend((f"{path}.{n}", p) for n, p in obj.named_parameters() if p.requires_grad)
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            out.extend(_trainable_tensors(v, f"{path}[{k!r}]", seen, depth + 1))
    elif isinstance(obj, (list, tuple, set)):
        for i, v in enumerate(obj):
            out.extend(_trainable_tensors(v, f"{path}[{i}]", seen, depth + 1))
    return out


def hidden_parameters(task: nn.Module, model: nn.Module, objects: Mapping[str, Any],
                      visible: Optional[set] = None) -> List[str]:
    """Paths of trainable tensors held by the task's components (not the CLIP model) or by plain ``objects``
    (e.g. the teacher) that are not among ``visible`` (default: the task's registered parameters)."""
    visible = {id(p) for p in task.parameters()} if visible is None else visible
    model_modules = {id(m) for m in model.modules()}
    seen: set = set()
    found: List[str] = []
    for prefix, module in task.named_modules():
        if id(module) in model_modules:
            continue
        for key, value in vars(module).items():
            if key in ("_parameters", "_buffers", "_modules") or value is model:
                continue
            for path, t in _trainable_tensors(value, f"{prefix + '.' if prefix else ''}{key}", seen):
                if id(t) not in visible:
                    found.append(path)
    for name, obj in objects.items():
        for key, value in vars(obj).items():
            for path, t in _trainable_tensors(value, f"{name}.{key}", seen):
                if id(t) not in visible:
                    found.append(path)
    return found


def _model_prefixes(task: nn.Module, model: nn.Module) -> Tuple[str, ...]:
    return tuple(f"{n}." for n, m in task.named_children() if m is model)


def component_state_dict(task: nn.Module, model: nn.Module) -> Dict[str, torch.Tensor]:
    """The task's ``state_dict`` without the CLIP model's entries (the learnable components)."""
    prefixes = _model_prefixes(task, model)
    return {k: v for k, v in task.state_dict().items() if not k.startswith(prefixes)}


def load_component_state(task: nn.Module, model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load :func:`component_state_dict` back, strictly (a component added or removed is an error)."""
    want = component_state_dict(task, model)
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    if missing or unexpected:
        raise ConfigError(f"the checkpoint's task components do not match this config: missing {missing}, "
                          f"unexpected {unexpected}. Resume with the task config the run was started with "
                          f"(its config.py is saved beside the checkpoint)")
    with torch.no_grad():
        current = task.state_dict()
        for k, v in state.items():
            current[k].copy_(v)
