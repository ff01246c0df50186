"""Distillation teachers (docs/reference/method.md §1.4): ``ActiveTeacher`` (reference), ``EMATeacher``, ``FrozenTeacher``.

A teacher decides which module computes the distillation *targets* (the crop features of docs/reference/method.md §1.3) and
whether they carry gradient. The small interface the training task uses::

    teacher.setup(student)                 # once, after pretrained loading / LongCLIP stretch / freezing
    model = teacher.target_model(student)  # compute targets with this module ...
    teacher.targets_require_grad           # ... under torch.no_grad() when False
    teacher.before_optimizer_step(student) # after backward, before optimizer.step()
    teacher.after_optimizer_step(student)  # after optimizer.step()
    teacher.state_dict() / teacher.load_state_dict(sd)   # checkpoint ("state_dict_teacher")
    teacher.trainable_modules()            # modules the optimizer trains (none for the built-ins)

Teachers are plain objects, not ``nn.Module``\\ s, so the teacher copy never becomes a submodule of the
student (DDP, ``model.train()``, optimiser parameter groups and checkpoints of the student stay clean).
A DDP/DataParallel wrapper or a ``torch.compile`` wrapper around the student is unwrapped.

A teacher that learns (e.g. a projection of its targets) returns those modules from
:meth:`Teacher.trainable_modules`; the task registers them as its submodules, so their parameters are
optimised, checkpointed (``task_state``) and restored on resume. Any other trainable parameter a
teacher holds is an error when the optimizer is built (it would silently never train).
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Dict, List, Mapping, Optional

import torch
from torch import nn

from farslip_ext.compat import foreach_lerp_, unwrap_compiled
from farslip_ext.models.logit_scale import LOGIT_SCALE_MAX, clamp_logit_scale_
from farslip_ext.registry import TEACHERS

__all__ = ["Teacher", "ActiveTeacher", "EMATeacher", "FrozenTeacher", "unwrap_model", "LOGIT_SCALE_MAX"]

logger = logging.getLogger(__name__)

#: Upper clamp of the (log) logit scale, as after every training step (ln 100).


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / DataParallel / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif unwrap_compiled(model) is not model:
            model = unwrap_compiled(model)
        else:
            return model


class Teacher:
    """Base class of the teachers; defaults are the no-op behaviour."""

    #: whether the targets are computed with autograd enabled.
    targets_require_grad: bool = False

    def setup(self, student: nn.Module) -> None:
        """Prepare the teacher from the student (called once, after the student's weights are final)."""

    def target_model(self, student: nn.Module) -> nn.Module:
        """The module to compute the distillation targets with."""
        raise NotImplementedError

    def before_optimizer_step(self, student: nn.Module) -> None:
        """Hook between ``backward()`` and ``optimizer.step()``."""

    def after_optimizer_step(self, student: nn.Module) -> None:
        """Hook after ``optimizer.step()``."""

    def state_dict(self) -> Dict[str, Any]:
        """Teacher weights for the checkpoint (empty when there is no separate teacher)."""
        return {}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""

    def trainable_modules(self) -> Dict[str, nn.Module]:
        """Modules with parameters the optimizer must train (registered in the task as ``teacher_modules``)."""
        return {}


@TEACHERS.register_module()
class ActiveTeacher(Teacher):
    """No teacher: targets come from the student's own forward, with gradient (reference default, docs/reference/method.md §1.4).

    FineCLIP-style real-time self-distillation (``--distill-type active``): both the RoI side and the
    crop side of the distillation loss move (docs/reference/method.md §7.4). ``target_model`` returns the student itself.
    """

    targets_require_grad = True

    def target_model(self, student: nn.Module) -> nn.Module:
        """The student."""
        return student


class _CopyTeacher(Teacher):
    """A deep copy of the student, frozen (``requires_grad=False``) and in eval mode."""

    targets_require_grad = False

    def __init__(self) -> None:
        self.model: Optional[nn.Module] = None
        self._pending: Optional[Mapping[str, Any]] = None

    def setup(self, student: nn.Module) -> None:
        """Deep-copy the (unwrapped) student, freeze it, put it in eval mode, apply a pending state dict."""
        model = copy.deepcopy(unwrap_model(student))
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
        self.model = model
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.load_state_dict(pending)
        logger.info("%s: teacher copy of %s created", type(self).__name__, type(model).__name__)

    def _require(self) -> nn.Module:
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__}.setup(student) has not been called")
        return self.model

    def target_model(self, student: nn.Module) -> nn.Module:
        """The teacher copy (always in eval mode)."""
        model = self._require()
        if model.training:
            model.eval()
        return model

    def state_dict(self) -> Dict[str, Any]:
        """The teacher model's ``state_dict``."""
        return self._require().state_dict()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load into the teacher copy (strict); before ``setup`` the dict is kept and applied by ``setup``."""
        if self.model is None:
            self._pending = state_dict
            return
        self.model.load_state_dict(state_dict, strict=True)


@TEACHERS.register_module()
class FrozenTeacher(_CopyTeacher):
    """A frozen copy of the student made at ``setup``, never updated (``--distill-type frozen``, docs/reference/method.md §1.4).

    Targets are computed under ``no_grad``. The reference forbids combining it with any ITC loss (an
    assert in its training script); enforcing that is the training task's job.
    """


@TEACHERS.register_module()
class EMATeacher(_CopyTeacher):
    """Exponential-moving-average teacher (``--distill-type ema``, the reference's params default, docs/reference/method.md §1.4).

    ``update(student)``: ``θ_t ← m·θ_t + (1−m)·θ_s`` over all parameters (text tower included) and all
    floating-point buffers, with one fused ``lerp`` over all tensors (:func:`farslip_ext.compat.foreach_lerp_`); buffers that are not floating point, or hold
    non-finite values at ``setup`` (e.g. the ``-inf`` causal ``attn_mask``, where the EMA would give
    NaN), are copied instead. Afterwards the teacher's ``logit_scale`` (if any) is clamped to
    ``[0, ln 100]``.

    Timing: by default the update runs in :meth:`after_optimizer_step`, so the teacher averages the
    weights after the step. The reference updates after ``backward()`` and **before**
    ``optimizer.step()`` (the teacher lags one step, docs/reference/method.md §7.5); ``update_before_step=True`` reproduces that
    by updating in :meth:`before_optimizer_step` instead.

    Args:
        momentum: ``m`` (reference ``--EMA-momentum`` = 0.99).
        update_before_step: update before the optimizer step, as the reference does.
        clamp_logit_scale: clamp the teacher's ``logit_scale`` to ``[0, ln 100]`` after each update.
    """

    def __init__(self, momentum: float = 0.99, update_before_step: bool = False, clamp_logit_scale: bool = True) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.update_before_step = bool(update_before_step)
        self.clamp_logit_scale = bool(clamp_logit_scale)
        self._ema_buffers: List[str] = []
        self._copy_buffers: List[str] = []

    def setup(self, student: nn.Module) -> None:
        """Deep-copy the student and sort its buffers into averaged and copied ones."""
        super().setup(student)
        self._ema_buffers, self._copy_buffers = [], []
        for name, buf in self._require().named_buffers():
            if buf.is_floating_point() and bool(torch.isfinite(buf).all()):
                self._ema_buffers.append(name)
            else:
                self._copy_buffers.append(name)

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        """One EMA step from the student's current weights."""
        teacher = self._require()
        student = unwrap_model(student)
        t_params = dict(teacher.named_parameters())
        s_params = dict(student.named_parameters())
        if t_params.keys() != s_params.keys():
            raise RuntimeError("EMATeacher: the student's parameters no longer match the teacher copy")
        t_bufs = dict(teacher.named_buffers())
        s_bufs = dict(student.named_buffers())
        names = list(t_params)
        t_list = [t_params[k] for k in names] + [t_bufs[k] for k in self._ema_buffers]
        s_list = [s_params[k].detach() for k in names] + [s_bufs[k] for k in self._ema_buffers]
        if t_list:
            foreach_lerp_(t_list, s_list, 1.0 - self.momentum)
        for k in self._copy_buffers:
            t_bufs[k].copy_(s_bufs[k])
        if self.clamp_logit_scale:
            clamp_logit_scale_(teacher)

    def before_optimizer_step(self, student: nn.Module) -> None:
        """Update here when ``update_before_step`` (reference timing)."""
        if self.update_before_step:
            self.update(student)

    def after_optimizer_step(self, student: nn.Module) -> None:
        """Update here unless ``update_before_step``."""
        if not self.update_before_step:
            self.update(student)
