"""A real third-party plugin (examples/farslip_example_plugin, pip-installed into a target folder) adds, each in
one file, a loss with a learnable temperature, a region head with a learnable projection, a dense-attention
variant, a COCO-style dataset format and a recipe; `farslip train <its recipe>` trains stage 2 with them:
the learnable parameters change, are in the checkpoint (not in the open_clip weights) and a resumed run
ends bit-identical to the uninterrupted one. The plugin's components also pass the generic contracts."""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import open_clip
import pytest
import torch

from farslip_ext.data import synthetic

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "examples" / "farslip_example_plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    src = tmp_path_factory.mktemp("plugin-src") / "farslip_example_plugin"
    shutil.copytree(PLUGIN, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("site")
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--target", str(target), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return target


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return synthetic.write_coco_detection(tmp_path_factory.mktemp("coco"), n=16, seed=4, size=64)


def _env(site: Path, *extra: Path) -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in (site, *extra)), HF_HUB_OFFLINE="1")


def _train(site: Path, coco: Path, work: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "farslip_ext.cli", "train", "example_coco_stage2", "--cfg-options",
           f"data.train.ann_file={coco}", f"train.work_dir={work}", "train.device=cpu", "schedule.epochs=2",
           "train.save_every_steps=1", "train.keep_step_checkpoints=True"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env(site), cwd=work.parent)


def _final(work: Path) -> dict:
    return torch.load(work / "checkpoints" / "final.pt", map_location="cpu", weights_only=True)


def test_plugin_recipe_trains_its_learnable_components_and_resumes_exactly(site, coco, tmp_path):
    full = tmp_path / "full"
    out = _train(site, coco, full)
    assert out.returncode == 0, out.stderr[-3000:]
    ck = _final(full)
    assert ck["step"] == 4
    state = ck["task_state"]
    assert set(state) == {"region_head.proj.weight", "region_head.proj.bias", "losses.region.log_scale"}
    # all three moved away from their initial values (identity, zero, log(1/0.07))
    assert not torch.equal(state["region_head.proj.weight"], torch.eye(24))
    assert state["region_head.proj.bias"].abs().sum() > 0
    assert abs(float(state["losses.region.log_scale"]) - math.log(1 / 0.07)) > 1e-5
    # the exported weights are exactly the plugin architecture's open_clip keys
    open_clip.add_model_config(site / "farslip_example_plugin" / "model_configs")
    stock = open_clip.create_model("farslip-example-tiny")
    assert set(ck["state_dict"]) == set(stock.state_dict())
    stock.load_state_dict(ck["state_dict"], strict=True)
    rows = list(csv.DictReader(open(full / "metrics.csv")))
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"]
    assert {"global_itc_loss", "region_temp_itc_loss", "region.temperature"} <= set(rows[0])
    assert len({r["region.temperature"] for r in rows}) == 4  # the learnable temperature moves every step

    # resume from the step-2 checkpoint in a fresh work dir: the same final weights, bit for bit
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(full / "checkpoints" / "step_00000002.pt", resumed / "checkpoints" / "latest.pt")
    out = _train(site, coco, resumed)
    assert out.returncode == 0, out.stderr[-3000:]
    again = _final(resumed)
    assert [r["step"] for r in csv.DictReader(open(resumed / "metrics.csv"))] == ["3", "4"]
    for part in ("state_dict", "task_state"):
        assert again[part].keys() == ck[part].keys()
        for k in ck[part]:
            assert torch.equal(again[part][k], ck[part][k]), (part, k)


_CONTRACTS = textwrap.dedent("""
    import json, sys, torch
    import farslip_ext
    from farslip_ext.registry import DENSE_ATTN, HEADS, LOSSES, TRAIN_DATASETS
    from tests.helpers.contracts import check_dense_variant, check_head, check_loss
    import open_clip
    for name in ("TemperatureRegionITCLoss", "ExampleScaledL2Loss"):
        check_loss(name, LOSSES)
    check_head("ProjectedRoIHead", HEADS)
    torch.manual_seed(0)
    model = open_clip.create_model("farslip-test-tiny").eval()
    for ir in (True, False):
        check_dense_variant("KK", DENSE_ATTN, model, torch.randn(2, 3, 64, 64), ir)
    ds = TRAIN_DATASETS.build(dict(type="CocoDetectionDataset", ann_file=sys.argv[1], min_size=4, image_size=64,
                                   tokenizer="farslip-test-tiny"))
    batch = ds.collate_fn([ds[i] for i in range(4)])
    print(json.dumps({"stats": ds.stats, "shapes": {k: list(v.shape) for k, v in batch.items()},
                      "recipes": __import__("farslip_ext.train.config", fromlist=["x"]).list_recipes()}))
""")


def test_plugin_components_pass_the_generic_contracts_and_skips_are_counted(site, coco, tmp_path):
    data = tmp_path / "coco"
    shutil.copytree(coco.parent, data)
    first = json.loads((data / "annotations.json").read_text())["images"][1]["file_name"]
    (data / "images" / first).unlink()  # one unreadable item: skipped and counted, not a crash
    out = subprocess.run([sys.executable, "-c", _CONTRACTS, str(data / "annotations.json")], capture_output=True,
                         text=True, timeout=300, env=_env(site, REPO), cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["stats"]["skipped_missing"] == 1 and res["stats"]["yielded"] == 4
    assert res["shapes"]["global_image"] == [4, 3, 64, 64] and res["shapes"]["boxes"] == [4, 4, 5]
    assert res["shapes"]["local_texts"] == [4, 4, 77] and res["shapes"]["local_categories"] == [4, 4]
    assert {"stage1", "stage2", "clip_baseline", "example_coco_stage2"} <= set(res["recipes"])
