"""Learnable task components (loss, head, teacher parameters): optimised in their own weight-decay groups,
saved in the checkpoint beside a pure open_clip state_dict, restored bit-identically on resume, and
never hidden from the optimizer."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tests.helpers.fake_data  # noqa: F401  (FakeFarSLIPData)
from farslip_ext.errors import ConfigError
from farslip_ext.heads import RegionHead
from farslip_ext.losses import FeatureLoss
from farslip_ext.registry import HEADS, LOSSES, TEACHERS
from farslip_ext.teachers import ActiveTeacher
from farslip_ext.train.config import load_config
from farslip_ext.train.loop import Trainer


def _register():
    @LOSSES.register_module(force=True)
    class ScaledRegionLoss(FeatureLoss):
        """Region-text InfoNCE with its own temperature and a text projection (a 2-D and a 0-D parameter)."""

        required_features = ("region_embed", "local_text_embed")

        def __init__(self, dim: int = 32):
            super().__init__()
            self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
            self.text_proj = nn.Linear(dim, dim)

        def no_weight_decay(self):
            return {"text_proj.weight"}  # opted out of weight decay by name

        def forward(self, region_embed, local_text_embed):
            t = F.normalize(self.text_proj(local_text_embed), dim=-1)
            logits = self.log_scale.exp() * region_embed @ t.T
            y = torch.arange(logits.shape[0])
            return {"scaled_region_loss": F.cross_entropy(logits, y)}

    @HEADS.register_module(force=True)
    class LinearCropHead(RegionHead):
        required_features = ("local_embed",)

        def __init__(self, dim: int = 32):
            super().__init__()
            self.proj = nn.Linear(dim, dim)

        def features(self, *, local_embed, **_):
            return F.normalize(self.proj(local_embed), dim=-1)


def _config(tmp_path: Path, work: str, loss: str = "ScaledRegionLoss", head: str = "LinearCropHead",
            teacher: str = "ActiveTeacher", extra: str = "") -> Path:
    p = tmp_path / f"{work}.py"
    p.write_text(textwrap.dedent(f"""
        model = dict(name='farslip-test-tiny', pretrained=None)
        task = dict(type='FarSLIPTask', region_head=dict(type='{head}'), teacher=dict(type='{teacher}'),
                    losses=dict(itc=dict(type='GlobalITCLoss'), mine=dict(type='{loss}', weight=0.5)))
        data = dict(train=dict(type='FakeFarSLIPData', n=8, stage=2), batch_size=4, num_workers=0, pin_memory=False)
        optim = dict(lr=1e-3, weight_decay=0.2, impl='foreach'{extra})
        schedule = dict(epochs=1, warmup_steps=1)
        train = dict(work_dir=r'{tmp_path / work}', device='cpu', precision='fp32', seed=0, save_every_steps=1,
                     log_every=1, progress=False)
    """))
    return p


def _group_of(opt, p):
    for g in opt.param_groups:
        if any(q is p for q in g["params"]):
            return g
    return None


def test_components_are_optimised_in_their_own_groups(tmp_path):
    _register()
    tr = Trainer(load_config(_config(tmp_path, "run", extra=", component_lr=5e-3, component_weight_decay=0.05")))
    loss, head = tr.task.losses["mine"], tr.task.region_head
    model_wd = _group_of(tr.optimizer, tr.model.visual.conv1.weight)
    assert model_wd["weight_decay"] == 0.2 and model_wd["lr"] == 1e-3
    assert _group_of(tr.optimizer, tr.model.logit_scale)["weight_decay"] == 0.0
    assert _group_of(tr.optimizer, head.proj.weight)["weight_decay"] == 0.05  # 2-D: decayed
    assert _group_of(tr.optimizer, head.proj.bias)["weight_decay"] == 0.0  # bias: not
    assert _group_of(tr.optimizer, loss.log_scale)["weight_decay"] == 0.0  # 0-D: not
    assert _group_of(tr.optimizer, loss.text_proj.weight)["weight_decay"] == 0.0  # no_weight_decay()
    assert {g["lr"] for g in tr.optimizer.param_groups[2:]} == {5e-3}
    # the model's two groups are exactly the reference's (same parameters as build_optimizer(model) alone)
    n_model = sum(1 for p in tr.model.parameters() if p.requires_grad)
    assert sum(len(g["params"]) for g in tr.optimizer.param_groups[:2]) == n_model


def test_components_train_save_and_resume_bit_identically(tmp_path):
    _register()
    cfg = load_config(_config(tmp_path, "run"))
    tr = Trainer(cfg)
    init = {k: v.clone() for k, v in tr.task.state_dict().items() if not k.startswith("model.")}
    tr.fit()
    ck = torch.load(tmp_path / "run" / "checkpoints" / "final.pt", weights_only=True)
    state = ck["task_state"]
    assert set(state) == {"losses.mine.log_scale", "losses.mine.text_proj.weight", "losses.mine.text_proj.bias",
                          "region_head.proj.weight", "region_head.proj.bias"}
    for k in state:
        assert not torch.equal(state[k], init[k]), f"{k} did not train"
    # the exported weights are pure open_clip: exactly the stock model's keys, loadable strictly
    stock = open_clip.create_model("farslip-test-tiny")
    assert set(ck["state_dict"]) == set(stock.state_dict())
    stock.load_state_dict(ck["state_dict"], strict=True)
    # resume: a fresh trainer restores every component and the optimizer state exactly
    again = Trainer(cfg)
    again.resume(tmp_path / "run" / "checkpoints" / "final.pt")
    for k, v in again.task.state_dict().items():
        if not k.startswith("model."):
            assert torch.equal(v, state[k]), k
    mine = again.task.losses["mine"].log_scale
    before = again.optimizer.state_dict()["state"]
    saved = ck["optimizer"]["state"]
    assert before.keys() == saved.keys()
    for i in saved:
        for name, t in saved[i].items():
            assert torch.equal(before[i][name], t), (i, name)
    assert again.optimizer.state[mine]["exp_avg"].abs().sum() > 0  # the component's moments came back too


def test_a_checkpoint_from_another_task_is_a_clear_error(tmp_path):
    _register()
    tr = Trainer(load_config(_config(tmp_path, "run")))
    tr.fit()
    other = Trainer(load_config(_config(tmp_path, "other", head="CropClsHead")))
    # the resume policy refuses another task first, naming the key
    with pytest.raises(ConfigError, match=r"break the exact resume: .*task\.region_head\.type 'LinearCropHead' -> 'CropClsHead'"):
        other.resume(tmp_path / "run" / "checkpoints" / "final.pt")
    # allowed explicitly, the components are still restored strictly
    allowed = Trainer(load_config(_config(tmp_path, "other2", head="CropClsHead"),
                                  {"train.resume_allow_changes": ["task"]}))
    with pytest.raises(ConfigError, match=r"missing \[\], unexpected \['region_head.proj.bias'"):
        allowed.resume(tmp_path / "run" / "checkpoints" / "final.pt")


def test_a_hidden_trainable_tensor_is_an_error(tmp_path):
    @LOSSES.register_module(force=True)
    class HiddenScaleLoss(FeatureLoss):
        required_features = ("region_embed", "local_text_embed")

        def __init__(self):
            super().__init__()
            self.scale = torch.ones((), requires_grad=True)  # a plain tensor: the optimizer would never see it
            self.layers = [nn.Linear(2, 2)]  # a python list of modules: not registered either

        def forward(self, region_embed, local_text_embed):
            return {"x_loss": self.scale * (region_embed.sum() + local_text_embed.sum())}

    _register()
    with pytest.raises(ConfigError, match=r"losses\.mine\.scale.*losses\.mine\.layers\[0\]\.weight"):
        Trainer(load_config(_config(tmp_path, "run", loss="HiddenScaleLoss")))


def test_teacher_modules_train_and_undeclared_ones_are_an_error(tmp_path):
    @TEACHERS.register_module(force=True)
    class AdapterTeacher(ActiveTeacher):
        def __init__(self):
            self.adapter = nn.Linear(4, 4)

        def trainable_modules(self):
            return {"adapter": self.adapter}

    @TEACHERS.register_module(force=True)
    class SecretTeacher(ActiveTeacher):
        def __init__(self):
            self.adapter = nn.Linear(4, 4)  # trainable, but not declared

    _register()
    tr = Trainer(load_config(_config(tmp_path, "run", teacher="AdapterTeacher")))
    assert _group_of(tr.optimizer, tr.task.teacher.adapter.weight) is not None
    assert "teacher_modules.adapter.weight" in tr.state()["task_state"]
    with pytest.raises(ConfigError, match=r"teacher\.adapter\.weight"):
        Trainer(load_config(_config(tmp_path, "run2", teacher="SecretTeacher")))
