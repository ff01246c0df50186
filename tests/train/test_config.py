"""Recipes from plugins (farslip_recipe_paths, duplicates are an error) and `farslip train --print-config`."""
from __future__ import annotations

import textwrap

import pytest

from farslip_ext import hookimpl
from farslip_ext.errors import ConfigError
from farslip_ext.plugins import manager, new_plugin_manager
from farslip_ext.train.config import expand_defaults, list_recipes, load_config


def _use_plugin(monkeypatch, plugin):
    pm = new_plugin_manager(autoload=False)
    pm.register(plugin, name="recipe-plugin")
    monkeypatch.setattr(manager, "_PM", pm)


def test_a_plugin_adds_a_recipe_by_name(tmp_path, monkeypatch):
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "my_stage.py").write_text(textwrap.dedent("""
        _base_ = []
        task = dict(type='FarSLIPTask', losses=dict(global_itc=dict(type='GlobalITCLoss', weight=2.0)))
        data = dict(train=dict(type='ImageTextDataset', path='pairs.csv'))
        optim = dict(lr=3e-5)
    """))
    (folder / "_helpers.py").write_text("x = 1\n")  # private files are not recipes

    class Plugin:
        @hookimpl
        def farslip_recipe_paths(self):
            return [str(folder)]

    _use_plugin(monkeypatch, Plugin())
    assert {"stage1", "stage2", "clip_baseline", "my_stage"} <= set(list_recipes())
    assert "_helpers" not in list_recipes()
    cfg = load_config("my_stage", {"optim.weight_decay": 0.3})
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.task.losses.global_itc.weight) == (3e-5, 0.3, 2.0)
    assert cfg.train.precision == "amp_bf16"  # the built-in defaults underneath
    with pytest.raises(FileNotFoundError, match="my_stage"):  # the error lists the plugin's recipes too
        load_config("my_stag")


def test_a_recipe_name_provided_twice_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "stage1.py").write_text("task = dict(type='FarSLIPTask')\n")

    class Plugin:
        @hookimpl
        def farslip_recipe_paths(self):
            return [str(tmp_path / "stage1.py")]

    _use_plugin(monkeypatch, Plugin())
    with pytest.raises(ConfigError, match=r"recipe name .stage1. is provided twice: .*stage1.py and .*stage1.py; rename one"):
        load_config("stage1")


def test_print_config_shows_every_key_and_changes_nothing(tmp_path, capsys):
    from farslip_ext.cli import main

    assert main(["train", "--print-config", "stage1", "--cfg-options", "task.losses.distill.weight=0.3"]) == 0
    text = capsys.readouterr().out
    for key in ("local_loss=False", "gather_with_grad=False", "align='roi2pooled'", "weight=0.3", "shuffle_buffer=5000",
                "num_crops=4", "component_lr=None", "fuse_encoder_calls=True", "trim_text=True", "momentum" not in text
                and "teacher=dict(type='ActiveTeacher')", "dense_attn=dict(type='SegEarth')", "logit_scale_max="):
        assert key in text, key
    assert "loss_weight" not in text  # the entry's weight is the loss's loss_weight: not written twice
    assert "tokenizer=" not in text.split("data = dict(")[1].split("model = dict(")[0]  # the trainer supplies it
    # the printed config is a runnable config: loading it gives the same resolved values
    path = tmp_path / "printed.py"
    path.write_text(text)
    printed = load_config(path)
    want = expand_defaults(load_config("stage1", {"task.losses.distill.weight": 0.3}))
    assert expand_defaults(printed) == want


def test_print_config_of_a_task_builds_the_same_task(tmp_path):
    import open_clip
    import torch

    from farslip_ext.registry import TASKS
    from tests.helpers.fake_data import random_batch

    cfg = load_config("stage2")
    path = tmp_path / "printed.py"
    from farslip_ext.train.config import describe_config

    path.write_text(describe_config(cfg))
    model = open_clip.create_model("farslip-test-tiny")
    batch = random_batch(2, seed=1)
    a = TASKS.build(dict(load_config(path).task), default_args=dict(model=model))(batch)[0]
    b = TASKS.build(dict(cfg.task), default_args=dict(model=model))(batch)[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
