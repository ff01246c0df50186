"""docs/journeys/: every block marked ``<!-- journey-test -->`` runs exactly as written, offline, on the
packaged ``farslip-demo-tiny:demo`` model and the demo's synthetic data (bash blocks with ``bash -euo
pipefail``, python blocks with the project's interpreter), in one fresh folder per page; then the files
each page promises are checked."""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
JOURNEYS = REPO / "docs" / "journeys"
MARKER = "<!-- journey-test -->"
PAGES = ("released-weights.md", "evaluate-mmseg.md", "train.md", "segment-geotiff.md")
_BLOCK = re.compile(re.escape(MARKER) + r"\s*\n```(bash|python)\n(.*?)\n```", re.S)


def _marked_blocks(page: Path):
    """``(language, code)`` of every marked block of ``page``, in order."""
    text = page.read_text(encoding="utf-8")
    blocks = _BLOCK.findall(text)
    assert text.count(MARKER) == len(blocks), f"{page}: a {MARKER} marker is not followed by a bash/python block"
    return blocks


def _env():
    env = dict(os.environ, HF_HUB_OFFLINE="1", FARSLIP_PROGRESS="off", PYTHONPATH=str(REPO))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _run_page(page: Path, cwd: Path):
    outputs = []
    for i, (lang, code) in enumerate(_marked_blocks(page)):
        if lang == "bash":
            cmd = ["bash", "-euo", "pipefail", "-c", code]
        else:
            script = cwd / f".block{i}.py"
            script.write_text(code + "\n", encoding="utf-8")
            cmd = [sys.executable, str(script)]
        res = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, f"{page.name} block {i} ({lang}) failed:\n{code}\n--- stderr:\n{res.stderr[-4000:]}"
        outputs.append(res)
    return outputs


def test_every_journey_has_a_page_with_tested_blocks():
    index = (JOURNEYS / "README.md").read_text(encoding="utf-8")
    for name in PAGES:
        assert (JOURNEYS / name).is_file() and f"]({name})" in index, name
        assert _marked_blocks(JOURNEYS / name), name
    assert {p.name for p in JOURNEYS.glob("*.md")} == set(PAGES) | {"README.md"}


def test_no_page_cites_files_outside_the_repository():
    for page in JOURNEYS.glob("*.md"):
        text = page.read_text(encoding="utf-8")
        assert "§" not in text, page
        for link in re.findall(r"\]\(([^)#]+)", text):
            if not link.startswith("http"):
                assert (page.parent / link).resolve().exists(), (page.name, link)


def test_every_named_tag_is_registered():
    from farslip_ext.catalogue import CATALOGUE

    registered = {f"{a}:{t}" for a, t in CATALOGUE.list_pretrained()}
    for page in JOURNEYS.glob("*.md"):
        for name in re.findall(r"`((?:farslip|ViT)[\w.-]*:\w+)`", page.read_text(encoding="utf-8")):
            assert name in registered, (page.name, name)


def test_released_weights_in_open_clip(tmp_path):
    outs = _run_page(JOURNEYS / "released-weights.md", tmp_path)
    probs = ast.literal_eval(outs[0].stdout.strip().splitlines()[-1])  # the printed class probabilities
    assert set(probs) == {"water", "forest", "residential"} and abs(sum(probs.values()) - 1) < 1e-5
    assert "farslip-demo-tiny" in outs[1].stdout
    card = (tmp_path / "hub" / "demo-tiny" / "README.md").read_text(encoding="utf-8")
    assert "hf-hub:my-lab/demo-tiny" in card
    records = sorted((tmp_path / "results" / "zeroshot").glob("*_zeroshot_classification.json"))
    assert len(records) == 1 and "acc1" in json.loads(records[0].read_text())["metrics"]
    assert outs[2].stdout.strip() == "torch.Size([1, 64])"


def test_evaluate_with_mmseg(tmp_path):
    _run_page(JOURNEYS / "evaluate-mmseg.md", tmp_path)
    for run in ("benchmark", "mine"):
        rep = json.loads((tmp_path / "work_dirs" / run / "ovss_results.json").read_text())
        (metrics,) = rep["metrics"].values()
        assert 0 < metrics["mIoU"] <= 100, run
    preds = sorted((tmp_path / "work_dirs" / "benchmark" / "openearthmap" / "predictions").glob("*.png"))
    assert len(preds) == 2


def test_train_stage_1_and_2(tmp_path):
    outs = _run_page(JOURNEYS / "train.md", tmp_path)
    assert "optim = dict(" in (tmp_path / "stage1_config.py").read_text()
    for stage in ("stage1", "stage2"):
        assert (tmp_path / "runs" / stage / "checkpoints" / "final.pt").is_file(), stage
        assert (tmp_path / "runs" / stage / "metrics.csv").is_file(), stage
    assert "| cls |" in outs[0].stdout


def test_segment_a_geotiff(tmp_path):
    import rasterio

    _run_page(JOURNEYS / "segment-geotiff.md", tmp_path)
    summary = json.loads((tmp_path / "out_summary.json").read_text())
    with rasterio.open(tmp_path / "scene.tif") as src, rasterio.open(tmp_path / "out" / "mask.tif") as mask:
        assert mask.crs == src.crs and mask.transform == src.transform and mask.shape == src.shape
        labels = mask.read(1)
    assert set(np.unique(labels).tolist()) <= set(range(5))
    assert len(summary["pixel_counts"]) == 5
    assert sum(summary["pixel_counts"].values()) + summary["nodata_pixels"] == labels.size
    assert (tmp_path / "out" / "mask.overlay.png").is_file()
    with rasterio.open(tmp_path / "out" / "bands_mask.tif") as stacked:
        assert stacked.shape == labels.shape
