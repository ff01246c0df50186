"""What may change when a run is resumed (docs/training.md, "Resuming with another config").

The config a checkpoint was saved with is compared, key by key (component defaults filled in), with the
config of the resumed run:

* **applied** — settings that act from the resumed step on and leave the saved state meaningful: the
  schedule length (``schedule.max_steps``, ``epochs``, ``warmup_steps``), the optimizer
  hyperparameters (``optim.*``: lr, weight decay, betas, eps, clipping, impl), precision, logging,
  saving, the work dir, device and speed switches. They are applied and reported (a warning lists them).
* **ignored** — ``model.pretrained``: the weights come from the checkpoint.
* **refused** — what changes the meaning of the saved state and breaks the exact resume: the
  architecture (``model.*``), the task and its losses (``task.*``), the data (``data.train.*``,
  ``data.batch_size``, ``data.seed_augmentations``; ``data.num_workers`` for a streaming dataset),
  ``train.seed``, ``schedule.steps_per_epoch`` and the number of processes (``world_size``). A
  :class:`~farslip_ext.errors.ConfigError` lists them, unless ``train.resume_allow_changes`` names them
  (a key or a prefix such as ``data``): then they are applied and reported as "resume not exact".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Sequence, Tuple

__all__ = ["ResumeChanges", "compare_configs", "flatten"]

#: Never reported: how this run was started.
SILENT = ("train.resume", "train.resume_allow_changes", "train.progress", "custom_imports")
#: Applied from the resumed step on, and reported.
APPLIED = ("schedule.max_steps", "schedule.epochs", "schedule.warmup_steps", "optim.", "train.log_every",
           "train.save_every_steps", "train.keep_step_checkpoints", "train.tensorboard", "train.wandb",
           "train.work_dir", "train.device", "train.precision", "train.compile", "train.grad_checkpointing",
           "train.channels_last", "train.find_unused_parameters", "train.logit_scale_max", "data.pin_memory",
           "data.prefetch_factor", "data.num_workers")
#: Reported, without effect.
IGNORED = ("model.pretrained",)
#: Applied only for map-style data (a streaming dataset splits its shards by worker).
STREAM_REFUSED = ("data.num_workers",)

Change = Tuple[Any, Any]


def _match(key: str, patterns: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p if p.endswith(".") else p + ".") for p in patterns)


def flatten(d: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"optim.lr": 1e-3, ...}``: nested dicts to dotted leaves (lists and tuples are leaves, as lists)."""
    out: Dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


_MISSING = "<not set>"


@dataclass
class ResumeChanges:
    """The differences between a checkpoint's config and the resumed one, sorted by the policy."""

    applied: Dict[str, Change] = field(default_factory=dict)
    ignored: Dict[str, Change] = field(default_factory=dict)
    allowed: Dict[str, Change] = field(default_factory=dict)  # refused kinds the user allowed explicitly
    refused: Dict[str, Change] = field(default_factory=dict)

    @property
    def any(self) -> bool:
        return bool(self.applied or self.ignored or self.allowed or self.refused)

    def touches(self, *prefixes: str) -> bool:
        """Whether an applied or allowed change falls under one of ``prefixes``."""
        return any(_match(k, prefixes) for k in list(self.applied) + list(self.allowed))

    def record(self) -> Dict[str, List[Any]]:
        """Plain ``{key: [old, new]}`` of what took effect (for the checkpoint's ``resume_changes``)."""
        return {k: [o, n] for part in (self.applied, self.allowed, self.ignored) for k, (o, n) in part.items()}

    @staticmethod
    def describe(changes: Mapping[str, Change]) -> str:
        return ", ".join(f"{k} {o!r} -> {n!r}" for k, (o, n) in sorted(changes.items()))


def compare_configs(saved: Mapping[str, Any], current: Mapping[str, Any], allow: Sequence[str] = (),
                    streaming: bool = False, saved_world_size: Any = None, world_size: int = 1) -> ResumeChanges:
    """Sort the differences between two plain (expanded) configs by the policy of the module docstring."""
    a, b = flatten(saved), flatten(current)
    if saved_world_size is not None:
        a["world_size"], b["world_size"] = int(saved_world_size), int(world_size)
    out = ResumeChanges()
    allow = tuple(allow or ())
    for key in sorted(set(a) | set(b)):
        old, new = a.get(key, _MISSING), b.get(key, _MISSING)
        if old == new or _match(key, SILENT):
            continue
        if _match(key, IGNORED):
            out.ignored[key] = (old, new)
        elif _match(key, APPLIED) and not (streaming and _match(key, STREAM_REFUSED)):
            out.applied[key] = (old, new)
        elif "*" in allow or _match(key, allow):
            out.allowed[key] = (old, new)
        else:
            out.refused[key] = (old, new)
    return out
