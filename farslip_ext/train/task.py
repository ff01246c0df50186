"""Training tasks: turn a batch into losses. The loop only calls ``task(batch) -> (losses, report)``.

:class:`FarSLIPTask` is FarSLIP stage 1, stage 2, a plain-CLIP baseline — or any combination of
registered losses — chosen by config (docs/reference/method.md §1, §2)::

    task = dict(type="FarSLIPTask",
                losses=dict(global_itc=dict(type="GlobalITCLoss", weight=1.0),         # docs/reference/method.md §1.5
                            distill=dict(type="PatchDistillLoss", weight=0.1),          # docs/reference/method.md §1.3 (stage 1)
                            mine=dict(type="MyLoss", weight=0.5)),                       # any LOSSES entry
                region_head=dict(type="CropClsHead"),   # region_embed for region losses (docs/reference/method.md §2.2)
                teacher=dict(type="ActiveTeacher"),     # where subset_* (distillation targets) come from (docs/reference/method.md §1.4)
                dense_attn="SegEarth")                  # the dense last block (docs/reference/method.md §4.1)

Each loss declares the features it reads (``required_features``, :mod:`farslip_ext.train.features`); a
loss that reads ``region_embed`` brings in the region head's needs. The union is computed once per step
(:class:`~farslip_ext.train.encoding.FeatureEncoder`: one fused image pass, one text pass) and nothing
else. Each loss is then called with exactly its features; the ``*_loss`` terms of all entries are
returned (a term name returned by two entries gets the second entry's name in front), other scalar
outputs go to the report.

Learnable components — parameters of losses, the region head, and a teacher's ``trainable_modules()``
— are submodules of the task: the trainer optimises them with the model, saves them in the checkpoint
(``task_state``) and restores them on resume; the exported open_clip weights never contain them.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from farslip_ext.data.batch import valid_rows
from farslip_ext.errors import ConfigError
from farslip_ext.models.dense_attn import build_dense_attention
from farslip_ext.models.towers import tower_of
from farslip_ext.registry import HEADS, TASKS, TEACHERS
from farslip_ext.train.components import LossEntry, build_loss_entry
from farslip_ext.train.encoding import FeatureEncoder, FeaturePlan, plan_features
from farslip_ext.train.features import call_component, check_feature_names
from farslip_ext.train.validation import check_component

__all__ = ["FarSLIPTask"]

logger = logging.getLogger(__name__)


def _scalar(v: Any) -> Optional[float]:
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return float(v.detach())
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return None


@TASKS.register_module()
class FarSLIPTask(nn.Module):
    """Any set of registered losses over one CLIP (FarSLIP stage 1 / stage 2 / CLIP baseline by config).

    Args:
        model: an open_clip ``CLIP`` (dense features: any tower of :mod:`farslip_ext.models.towers`).
        losses: ``{entry_name: dict(type=<LOSSES name>, weight=w, **kwargs)}``; any number, ``None`` entries
            are skipped (``--cfg-options task.losses.distill=None`` removes one). Default: global ITC only.
        region_head: ``HEADS`` config computing ``region_embed`` (reference and default: ``CropClsHead``);
            built when a loss reads ``region_embed`` or when given.
        teacher: ``TEACHERS`` config for the ``subset_*`` features (reference: ``ActiveTeacher``).
        dense_attn: dense-attention variant of the last block (reference: ``SegEarth``).
        ignore_residual: ``None`` (default): each variant's training-fork rule — SegEarth without residual
            and MLP, MaskCLIP with both (docs/reference/method.md §4.1); True/False force one rule for any variant.
        fuse_encoder_calls: encode globals and crops in one batched call when the targets come from the
            student (same numerics; fewer, larger matmuls).
        trim_text: trimmed text encoding (exact; ``False``: the padded ``model.encode_text``).
    """

    def __init__(self, model: nn.Module, losses: Optional[Mapping[str, Any]] = None,
                 region_head: Optional[Mapping[str, Any]] = None, teacher: Optional[Mapping[str, Any]] = None,
                 dense_attn: Any = "SegEarth", ignore_residual: Optional[bool] = None,
                 fuse_encoder_calls: bool = True, trim_text: bool = True) -> None:
        super().__init__()
        self.model = model
        cfgs = dict(losses if losses is not None else {"global_itc": dict(type="GlobalITCLoss")})
        self.entries: List[LossEntry] = [build_loss_entry(k, v) for k, v in cfgs.items() if v is not None]
        if not self.entries:
            raise ConfigError(f"task.losses has no loss (got {cfgs!r}); add at least one, e.g. "
                              f"global_itc=dict(type='GlobalITCLoss')")
        self.losses = nn.ModuleDict({e.name: e.loss for e in self.entries if isinstance(e.loss, nn.Module)})
        needs = {n for e in self.entries for n in e.required_features}
        self.region_head: Optional[nn.Module] = None
        if "region_embed" in needs or region_head is not None:
            head_cfg = dict(region_head or dict(type="CropClsHead"))
            check_component(head_cfg, "HEADS", "task.region_head")
            self.region_head = HEADS.build(head_cfg)
            if not hasattr(self.region_head, "required_features"):
                raise ConfigError(f"task.region_head {type(self.region_head).__name__} declares no "
                                  f"required_features (the features it reads, farslip_ext/train/features.py)")
            head_needs = check_feature_names(f"task.region_head ({type(self.region_head).__name__})",
                                             self.region_head.required_features)
            if "region_embed" in needs:
                needs |= set(head_needs)
            else:
                logger.warning("task.region_head %s is configured but no loss reads region_embed; it is not run",
                               type(self.region_head).__name__)
        teacher_cfg = dict(teacher or dict(type="ActiveTeacher"))
        check_component(teacher_cfg, "TEACHERS", "task.teacher")
        self.teacher = TEACHERS.build(teacher_cfg)
        if isinstance(dense_attn, (str, Mapping)):
            check_component(dict(type=dense_attn) if isinstance(dense_attn, str) else dense_attn, "DENSE_ATTN",
                            "task.dense_attn", injected={"ignore_residual"})
        self.teacher.setup(model)
        trainable = dict(getattr(self.teacher, "trainable_modules", lambda: {})())
        self.teacher_modules = nn.ModuleDict(trainable) if trainable else None
        self.attn = build_dense_attention(dense_attn, ignore_residual=ignore_residual)
        if needs & {"global_patches", "subset_patches", "local_patches", "grid"}:
            tower_of(model)  # an unsupported tower (ResNet, ConvNeXt) is an error now, naming the supported ones
        self.plan: FeaturePlan = plan_features(needs)
        self.encoder = FeatureEncoder(self.attn, fuse=fuse_encoder_calls, trim_text=trim_text)

    @property
    def fuse(self) -> bool:
        return self.encoder.fuse

    def extra_repr(self) -> str:
        entries = ", ".join(f"{e.name}={type(e.loss).__name__}(x{e.weight if e.weight is not None else 'default'})"
                            for e in self.entries)
        return f"losses: {entries}; attn={self.attn!r}; computes {sorted(self.plan.needs)}"

    # ---- features -----------------------------------------------------------------------------------
    def features(self, batch: Mapping[str, Any], names: Optional[Any] = None) -> Tuple[Dict[str, Any], Dict[str, float]]:
        """``(features, report)``: the plan's features of ``batch`` (or only ``names``), region_embed included."""
        plan = self.plan if names is None else plan_features(check_feature_names("FarSLIPTask.features", names))
        if "region_embed" in plan.needs:
            if self.region_head is None:
                raise ConfigError("region_embed needs a task.region_head (e.g. dict(type='CropClsHead'))")
            plan = plan_features(plan.needs | set(self.region_head.required_features))
        feats, report = self.encoder(self.model, self.teacher, plan, batch,
                                     needed_by=f"the losses {[e.name for e in self.entries]}")
        if "region_embed" in plan.needs:
            feats["region_embed"] = self._region_embed(feats, batch)
        return feats, report

    def _region_embed(self, feats: Dict[str, Any], batch: Mapping[str, Any]) -> torch.Tensor:
        head = self.region_head
        out = call_component(head, feats)
        m = int(valid_rows(batch["boxes"]).sum())
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != m:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"region head {type(head).__name__} returned {shape}; it must return (M, D) with one "
                             f"row per valid box (M = {m}, row-major (b, k) order)")
        return out

    # ---- the step -----------------------------------------------------------------------------------
    def forward(self, batch: Dict[str, Any]) -> Tuple[Dict[str, torch.Tensor], Dict[str, float]]:
        return self.training_forward(batch)

    def training_forward(self, batch: Dict[str, Any]) -> Tuple[Dict[str, torch.Tensor], Dict[str, float]]:
        feats, report = self.features(batch)
        losses: Dict[str, torch.Tensor] = {}
        for e in self.entries:
            out = call_component(e.loss, feats, e.required_features)
            if not isinstance(out, Mapping):
                raise TypeError(f"loss task.losses.{e.name} ({type(e.loss).__name__}) returned "
                                f"{type(out).__name__}; a loss returns a dict of '<term>_loss' tensors")
            for key, value in out.items():
                if key.endswith("_loss"):
                    name = key if key not in losses else f"{e.name}_{key}"
                    losses[name] = value * e.multiplier if e.multiplier != 1.0 else value
                else:
                    v = _scalar(value)
                    if v is not None:
                        report[f"{e.name}.{key}"] = v
        if not losses:
            raise ValueError(f"the losses {[e.name for e in self.entries]} returned no '*_loss' term")
        report["logit_scale"] = float(self.model.logit_scale.detach().exp())
        report["batch_size"] = float(batch["global_image"].shape[0]) if "global_image" in batch else 0.0
        return losses, report

    # ---- hooks for the loop ------------------------------------------------------------------------
    def before_optimizer_step(self) -> None:
        self.teacher.before_optimizer_step(self.model)

    def after_optimizer_step(self) -> None:
        self.teacher.after_optimizer_step(self.model)

    def extra_state(self) -> Dict[str, Any]:
        return {"teacher": self.teacher.state_dict()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        if state.get("teacher"):
            self.teacher.load_state_dict(state["teacher"])

    def hidden_parameter_objects(self) -> Dict[str, Any]:
        """Plain objects the trainer scans for trainable tensors the optimizer would not see."""
        return {"teacher": self.teacher, "dense_attn": self.attn}
