"""FarSLIPTask by config: any registered loss, weights, only the declared features computed, the training
default of each dense variant, trimmed text encoding, crop sets without a valid box."""
from __future__ import annotations

import math

import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from farslip_ext.errors import ConfigError
from farslip_ext.losses import FeatureLoss
from farslip_ext.models import dense_forward
from farslip_ext.models.longclip import enable_long_clip_training
from farslip_ext.registry import LOSSES, TASKS
from farslip_ext.train.config import load_config
from tests.helpers.brute import brute_roi_mean
from tests.helpers.contracts import fork_maskclip_tokens
from tests.helpers.fake_data import random_batch


def _model(arch="farslip-test-tiny", seed=5):
    torch.manual_seed(seed)
    return open_clip.create_model(arch)


def _task(model, **cfg):
    return TASKS.build(dict(type="FarSLIPTask", **cfg), default_args=dict(model=model))


def _register_pair_loss():
    @LOSSES.register_module(force=True)
    class PairDistanceLoss(FeatureLoss):
        """mean ||normalize(image) - normalize(text)||^2 (a new loss: one class, no package edit)."""

        required_features = ("global_embed", "global_text_embed")

        def forward(self, global_embed, global_text_embed):
            d = F.normalize(global_embed, dim=-1) - F.normalize(global_text_embed, dim=-1)
            return {"pair_loss": d.square().sum(-1).mean(), "pair_rows": float(d.shape[0])}

    return PairDistanceLoss


def test_any_registered_loss_from_config_with_weights():
    """The issue's config: ITC x1 + distill x0.1 + a new loss x0.5; each term checked against an independent
    computation (open_clip ClipLoss, loops over torchvision's RoIAlign, the formula of the new loss)."""
    _register_pair_loss()
    model = _model()
    task = _task(model, losses=dict(global_itc=dict(type="GlobalITCLoss", weight=1.0),
                                    distill=dict(type="PatchDistillLoss", weight=0.1),
                                    mine=dict(type="PairDistanceLoss", weight=0.5)))
    batch = random_batch(1, seed=1)
    losses, report = task(batch)
    assert set(losses) == {"global_itc_loss", "distill_loss", "pair_loss"}
    assert report["mine.pair_rows"] == 3.0 and report["subset_crops"] == 6.0
    with torch.no_grad():
        img = F.normalize(model.encode_image(batch["global_image"]), dim=-1)
        txt = F.normalize(model.encode_text(batch["global_text"]), dim=-1)
        itc = ClipLoss()(img, txt, model.logit_scale.exp())
        pair = (img - txt).square().sum(-1).mean()
        g = dense_forward(model, batch["global_image"], "SegEarth")
        boxes = batch["subset_boxes"]
        crops = dense_forward(model, batch["subset_images"][boxes[..., 4] > 0.5], "SegEarth").patch_tokens
        cos, m = [], 0
        for b in range(boxes.shape[0]):
            for k in range(boxes.shape[1]):
                if boxes[b, k, 4] > 0.5:
                    s = torch.tensor(brute_roi_mean(g.patch_tokens[b], g.grid, boxes[b, k, :4].tolist()))
                    cos.append(F.cosine_similarity(s, crops[m].mean(0), dim=0))
                    m += 1
        distill = 1 - torch.stack(cos).mean()
    torch.testing.assert_close(losses["global_itc_loss"].detach(), itc, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses["pair_loss"].detach(), 0.5 * pair, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses["distill_loss"].detach(), 0.1 * distill, rtol=1e-4, atol=1e-6)


def test_weight_and_loss_weight_spellings():
    model = _model()
    batch = random_batch(1, seed=2)
    new, _ = _task(model, losses=dict(d=dict(type="PatchDistillLoss", weight=0.3)))(batch)
    old, _ = _task(model, losses=dict(d=dict(type="PatchDistillLoss", loss_weight=0.3)))(batch)
    default, _ = _task(model, losses=dict(d=dict(type="PatchDistillLoss")))(batch)
    unit, _ = _task(model, losses=dict(d=dict(type="PatchDistillLoss", weight=1.0)))(batch)
    assert torch.equal(new["distill_loss"], old["distill_loss"])
    torch.testing.assert_close(default["distill_loss"], 0.1 * unit["distill_loss"])  # the reference --w-d
    torch.testing.assert_close(new["distill_loss"], 0.3 * unit["distill_loss"])
    with pytest.raises(ConfigError, match="both weight=0.3 and loss_weight=0.2"):
        _task(model, losses=dict(d=dict(type="PatchDistillLoss", weight=0.3, loss_weight=0.2)))


@pytest.mark.parametrize("recipe,expected", [("stage1", {"global_itc_loss": 1.0, "distill_loss": 0.1}),
                                             ("stage2", {"global_itc_loss": 1.0, "region_itc_loss": 1.0})])
def test_recipes_keep_their_effective_weights(recipe, expected):
    """The recipe's task on a tiny model: each term equals its weight x the term at weight 1."""
    cfg = load_config(recipe).task.to_dict()
    stage = 1 if recipe == "stage1" else 2
    batch = random_batch(stage, seed=3)
    model = _model()
    weighted, _ = _task(model, **{k: v for k, v in cfg.items() if k != "type"})(batch)
    unit_cfg = dict(cfg, losses={k: dict(v, weight=1.0) for k, v in cfg["losses"].items()})
    unit, _ = _task(model, **{k: v for k, v in unit_cfg.items() if k != "type"})(batch)
    assert set(weighted) == set(expected)
    for term, w in expected.items():
        torch.testing.assert_close(weighted[term], w * unit[term])
    options = {f"task.losses.{'distill' if stage == 1 else 'region'}.weight": 0.25}
    over = load_config(recipe, options).task.losses
    assert over["distill" if stage == 1 else "region"].weight == 0.25


def test_config_errors_name_the_fix():
    model = _model()
    with pytest.raises(ConfigError, match=r"task.losses.a: type='GlobalITCLos' is not registered.*did you mean 'GlobalITCLoss'"):
        _task(model, losses=dict(a=dict(type="GlobalITCLos")))

    @LOSSES.register_module()
    class NoNeedsLoss(torch.nn.Module):
        def forward(self, x):
            return {"x_loss": x}

    with pytest.raises(ConfigError, match=r"task.losses.a \(NoNeedsLoss\) declares no required_features"):
        _task(model, losses=dict(a=dict(type="NoNeedsLoss")))

    @LOSSES.register_module()
    class TypoLoss(FeatureLoss):
        required_features = ("global_embeds",)

    with pytest.raises(ConfigError, match=r"unknown feature\(s\) \['global_embeds'\].*global_embed"):
        _task(model, losses=dict(a=dict(type="TypoLoss")))
    with pytest.raises(ConfigError, match="no loss"):
        _task(model, losses=dict(a=None))


def test_a_missing_batch_key_is_named():
    from farslip_ext.errors import DataError

    task = _task(_model(), losses=dict(d=dict(type="PatchDistillLoss")))
    with pytest.raises(DataError, match=r"lacks \['subset_boxes', 'subset_images'\] needed by the losses \['d'\]"):
        task(random_batch(0))


def test_the_same_term_from_two_entries_is_kept_apart():
    model = _model()
    losses, _ = _task(model, losses=dict(a=dict(type="GlobalITCLoss"), b=dict(type="GlobalITCLoss", weight=2.0)))(
        random_batch(0))
    assert set(losses) == {"global_itc_loss", "b_global_itc_loss"}
    torch.testing.assert_close(losses["b_global_itc_loss"], 2 * losses["global_itc_loss"])


class _Spy:
    """Counts what the encoders run: rows through the normal last block, dense-variant calls, text rows."""

    def __init__(self, model, task, monkeypatch):
        self.block_rows, self.mix_calls, self.text_rows = [], 0, []
        last = model.visual.transformer.resblocks[-1]
        orig_block = last.forward

        def block(x, *a, **kw):
            self.block_rows.append(x.shape[0])
            return orig_block(x, *a, **kw)

        monkeypatch.setattr(last, "forward", block)
        orig_mix = task.attn.mix

        def mix(*a, **kw):
            self.mix_calls += 1
            return orig_mix(*a, **kw)

        monkeypatch.setattr(task.attn, "mix", mix)
        import farslip_ext.train.encoding as enc

        orig_text = enc.encode_text

        def text(m, tokens, **kw):
            self.text_rows.append(tokens.shape[0])
            return orig_text(m, tokens, **kw)

        monkeypatch.setattr(enc, "encode_text", text)


@pytest.mark.parametrize("losses,stage,head,want", [
    # global ITC only: the normal last block on the 3 global images, no dense block, captions only
    (dict(a=dict(type="GlobalITCLoss")), 2, None, ([3], 0, [3])),
    # stage 2 with the reference head: globals + 5 valid crops in ONE pass, no dense block; the 3 captions
    # and the 5 region prompts in one call each, each trimmed to its own longest row
    (dict(a=dict(type="GlobalITCLoss"), r=dict(type="RegionCategoryLoss")), 2, "CropClsHead", ([8], 0, [3, 5])),
    # the RoIAlign head reads the global dense map: dense block on the globals only, no crop is encoded
    (dict(r=dict(type="RegionCategoryLoss")), 2, "RoIAlignHead", ([], 1, [5])),
    # stage-1 distillation (roi2pooled): dense block on globals + crops in one call, no normal last block
    (dict(d=dict(type="PatchDistillLoss")), 1, None, ([], 1, [])),
])
def test_only_declared_features_are_computed(monkeypatch, losses, stage, head, want):
    model = _model()
    task = _task(model, losses=losses, region_head=dict(type=head) if head else None)
    spy = _Spy(model, task, monkeypatch)
    out, _ = task(random_batch(stage, seed=4))
    assert out and (spy.block_rows, spy.mix_calls, spy.text_rows) == want


def test_maskclip_training_default_matches_the_fork_formula():
    """The task's default for MaskCLIP is the training fork's (residual + MLP kept, docs/reference/method.md §4.1), written out."""
    model = _model()
    batch = random_batch(0, seed=6)
    task = _task(model, dense_attn="MaskCLIP", losses=dict(a=dict(type="GlobalITCLoss")))
    assert task.attn.ignore_residual is False
    with torch.no_grad():
        feats, _ = task.features(batch, ["global_patches"])
        fork = fork_maskclip_tokens(model.visual, batch["global_image"])
    torch.testing.assert_close(feats["global_patches"], fork[:, 1:], rtol=1e-5, atol=1e-5)
    assert _task(model, dense_attn="SegEarth").attn.ignore_residual is True
    assert _task(model, dense_attn="MaskCLIP", ignore_residual=True).attn.ignore_residual is True


def _step_grads(model, task, batch):
    model.zero_grad(set_to_none=True)
    losses, _ = task(batch)
    sum(losses.values()).backward()
    return {k: v.detach() for k, v in losses.items()}, \
        {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch,long_clip", [("farslip-test-tiny", False), ("farslip-test-tiny-long", False),
                                            ("farslip-test-tiny", True)])
def test_trimmed_text_encoding_gives_the_padded_losses_and_gradients(arch, long_clip):
    """Captions and region prompts of a stage-2 step, 77 and 248 contexts and the LongCLIP parametrization:
    losses and gradients within 1e-5 relative of the padded path."""
    model = _model(arch)
    if long_clip:
        enable_long_clip_training(model)
    ctx = model.context_length
    tok = open_clip.get_tokenizer("farslip-test-tiny", context_length=ctx)
    batch = random_batch(2, seed=7, tokenizer=tok)
    assert batch["global_text"].shape[-1] == ctx and int((batch["global_text"] > 0).sum(-1).max()) < 20
    cfg = dict(losses=dict(a=dict(type="GlobalITCLoss"), r=dict(type="RegionCategoryLoss")))
    trimmed = _step_grads(model, _task(model, **cfg), batch)
    padded = _step_grads(model, _task(model, trim_text=False, **cfg), batch)
    for k in padded[0]:
        torch.testing.assert_close(trimmed[0][k], padded[0][k], rtol=1e-5, atol=1e-7)
    assert trimmed[1].keys() == padded[1].keys()
    for n in padded[1]:
        scale = padded[1][n].abs().max().clamp_min(1e-12)
        assert float((trimmed[1][n] - padded[1][n]).abs().max() / scale) < 1e-5, n
    if long_clip:  # the frozen LongCLIP rows stay frozen
        grad = model.parametrizations.positional_embedding.original.grad
        assert grad[:20].abs().sum() == 0


def test_a_batch_without_any_valid_box_still_trains():
    model = _model()
    batch = random_batch(2, seed=8)
    batch["boxes"][..., 4] = 0.0
    task = _task(model, losses=dict(a=dict(type="GlobalITCLoss"), r=dict(type="RegionCategoryLoss")))
    feats, report = task.features(batch)
    assert feats["local_embed"].shape == (0, 32) and feats["local_text_embed"].shape == (0, 32)
    assert report["local_crops"] == 0.0
    losses, _ = task(batch)
    assert float(losses["region_itc_loss"].detach()) == 0.0
    sum(losses.values()).backward()
    assert model.visual.conv1.weight.grad is not None


def test_logit_scale_and_labels_are_features():
    model = _model()
    batch = random_batch(2, seed=9)
    task = _task(model, losses=dict(r=dict(type="RegionCategoryLoss")))
    feats, _ = task.features(batch, ["logit_scale", "local_labels", "boxes"])
    assert float(feats["logit_scale"].detach()) == pytest.approx(math.exp(float(model.logit_scale.detach())))
    assert feats["local_labels"].tolist() == batch["local_categories"][batch["boxes"][..., 4] > 0.5].tolist()
    assert feats["boxes"] is batch["boxes"]


def test_a_tower_without_dense_tokens_fails_when_the_task_is_built(tmp_path):
    import json

    from farslip_ext.models.towers import UnsupportedTowerError

    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "farslip-test-rn-task.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path)
    rn = open_clip.create_model("farslip-test-rn-task")
    _task(rn, losses=dict(a=dict(type="GlobalITCLoss")))  # no dense feature needed: fine
    with pytest.raises(UnsupportedTowerError, match="ModifiedResNet.*Supported families"):
        _task(rn, losses=dict(d=dict(type="PatchDistillLoss")))
