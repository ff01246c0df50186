"""Teachers (docs/reference/method.md §1.4, §7.5): active, EMA and frozen, against hand-computed updates."""
from __future__ import annotations

import math

import open_clip
import pytest
import torch
from torch import nn

from farslip_ext.registry import TEACHERS
from farslip_ext.teachers import LOGIT_SCALE_MAX, ActiveTeacher, EMATeacher, FrozenTeacher


class Tiny(nn.Module):
    """Parameters, a logit scale, a finite float buffer, a -inf mask buffer and an integer buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.register_buffer("running", torch.tensor([1.0, 2.0]))
        self.register_buffer("mask", torch.triu(torch.full((3, 3), float("-inf")), 1))
        self.register_buffer("steps", torch.tensor(0, dtype=torch.long))
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.lin(x)) * self.logit_scale.exp()


def _snapshot(m: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_active_teacher_is_the_student_with_grad():
    t = TEACHERS.build(dict(type="ActiveTeacher"))
    assert isinstance(t, ActiveTeacher) and t.targets_require_grad is True
    student = Tiny()
    t.setup(student)
    assert t.target_model(student) is student
    t.before_optimizer_step(student)
    t.after_optimizer_step(student)
    assert t.state_dict() == {}


def test_ema_teacher_copy_update_clamp_and_buffers():
    torch.manual_seed(0)
    student = Tiny()
    t = TEACHERS.build(dict(type="EMATeacher", momentum=0.9))
    assert isinstance(t, EMATeacher) and t.targets_require_grad is False
    t.setup(student)
    teacher = t.target_model(student)
    assert teacher is not student and not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert teacher.lin.weight.data_ptr() != student.lin.weight.data_ptr()
    student.train()
    assert not t.target_model(student).training  # stays in eval mode

    before = _snapshot(teacher)
    with torch.no_grad():
        student.lin.weight.add_(1.0)
        student.lin.bias.sub_(2.0)
        student.logit_scale.fill_(10.0)  # beyond ln 100
        student.running.mul_(3.0)
        student.steps.fill_(7)
    s = _snapshot(student)
    t.after_optimizer_step(student)
    after = teacher.state_dict()
    for k in ("lin.weight", "lin.bias", "running"):
        assert torch.allclose(after[k], 0.9 * before[k] + 0.1 * s[k], atol=1e-6), k
    # logit scale: 0.9 * ln(1/0.07) + 0.1 * 10 = 3.393 < ln 100: not clamped by this step
    assert after["logit_scale"].item() == pytest.approx(0.9 * math.log(1 / 0.07) + 1.0, abs=1e-6)
    for _ in range(30):
        t.after_optimizer_step(student)
    assert teacher.logit_scale.item() == pytest.approx(LOGIT_SCALE_MAX, abs=1e-6)  # clamped to ln 100
    assert torch.equal(teacher.mask, student.mask)  # copied, no NaN from lerp(-inf, -inf)
    assert teacher.steps.item() == 7  # integer buffer copied
    assert all(not p.requires_grad for p in teacher.parameters())


def test_ema_update_timing_option():
    student = Tiny()
    late = EMATeacher(momentum=0.5)
    early = EMATeacher(momentum=0.5, update_before_step=True)
    late.setup(student)
    early.setup(student)
    w0 = student.lin.weight.detach().clone()
    with torch.no_grad():
        student.lin.weight.add_(4.0)
    early.before_optimizer_step(student)
    late.before_optimizer_step(student)  # no-op: default updates after the step
    assert torch.allclose(early.model.lin.weight, w0 + 2.0)
    assert torch.allclose(late.model.lin.weight, w0)
    early.after_optimizer_step(student)  # no-op for update_before_step
    late.after_optimizer_step(student)
    assert torch.allclose(early.model.lin.weight, w0 + 2.0)
    assert torch.allclose(late.model.lin.weight, w0 + 2.0)


def test_ema_after_a_real_optimizer_step_and_state_dict_roundtrip():
    torch.manual_seed(1)
    student = Tiny()
    wrapped = nn.DataParallel(student)  # unwrapped by the teacher (CPU: runs the module directly)
    t = EMATeacher(momentum=0.99)
    t.setup(wrapped)
    opt = torch.optim.SGD(student.parameters(), lr=0.5)
    x = torch.randn(4, 3)
    with torch.no_grad():
        target = t.target_model(wrapped)(x)
    assert not target.requires_grad
    w_before = t.model.lin.weight.detach().clone()
    (wrapped(x) - target).pow(2).mean().backward()
    opt.step()
    t.after_optimizer_step(wrapped)
    assert torch.allclose(t.model.lin.weight, 0.99 * w_before + 0.01 * student.lin.weight.detach(), atol=1e-7)

    sd = {k: v.clone() for k, v in t.state_dict().items()}
    restored = EMATeacher(momentum=0.99)
    restored.load_state_dict(sd)  # before setup: kept and applied by setup
    restored.setup(Tiny())
    for k, v in restored.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_frozen_teacher_never_changes():
    student = Tiny()
    t = TEACHERS.build(dict(type="FrozenTeacher"))
    assert isinstance(t, FrozenTeacher) and t.targets_require_grad is False
    with pytest.raises(RuntimeError, match="setup"):
        t.target_model(student)
    t.setup(student)
    before = _snapshot(t.model)
    with torch.no_grad():
        student.lin.weight.add_(1.0)
    t.before_optimizer_step(student)
    t.after_optimizer_step(student)
    for k, v in t.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_ema_teacher_on_an_open_clip_model():
    torch.manual_seed(2)
    student = open_clip.create_model("farslip-test-tiny")
    t = EMATeacher(momentum=0.9)
    t.setup(student)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    t.after_optimizer_step(student)
    for (name, tp), sp in zip(t.model.named_parameters(), student.parameters()):
        if name == "logit_scale":
            continue
        assert torch.allclose(tp, sp - 0.9, atol=1e-5), name  # 0.9*(s-1) + 0.1*s
    assert torch.equal(t.model.attn_mask, student.attn_mask)  # -inf causal mask: copied, no NaN
    assert torch.isfinite(t.model.logit_scale) and t.model.logit_scale.item() <= LOGIT_SCALE_MAX
