"""The benchmarks and users' own configs through the real mmseg pipeline and every mmseg entry point
(``Runner.test()``, ``init_model`` / ``inference_model`` / ``show_result_pyplot``, mmseg's test tool,
``farslip ovss --config``), on fabricated datasets in each on-disk layout (docs/reference/ovss-evaluation.md §2, §5). The
mIoU is checked against an IoU computed independently (numpy loops) from the predictions IoUMetric saved
and the labels we wrote; predictions are checked against the mmseg-free core on the same image, and the
CLIP weights against the checkpoint file."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.ovss_fixtures import (LAYOUTS, LOVEDA_LINES, gt_for_metric, make_dataset, make_toy_dataset,
                                        miou_percent, tiny_checkpoint, write_toy_plugin, write_user_config)

SIZES = ((48, 64), (64, 48))  # two sizes in one batch of 2: the mixed-size path of the preprocessor
FAST = dict(slide_crop=64, slide_stride=32, resize_long_side=96, num_workers=0, batch_size=2, device="cpu",
            log_level="WARNING", templates=["a photo of {c}.", "an aerial image of {c}."])


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ovss-runner") / "tiny.pt", seed=0)


def _predictions(work: Path, key: str, data: dict) -> list:
    preds = []
    for ip in data["images"]:
        stem = os.path.splitext(ip.name)[0]
        arr = np.asarray(Image.open(work / key / "predictions" / f"{stem}.png")).astype(np.int64)
        preds.append(arr - 1 if data["spec"]["rzl"] else arr)  # IoUMetric saves label+1 for reduce_zero_label
    return preds


def test_eight_layouts_through_runner(tmp_path, ckpt):
    from farslip_ext.segmentation import run_ovss

    root = tmp_path / "data"
    data = {k: make_dataset(k, root, SIZES, seed=i) for i, k in enumerate(LAYOUTS)}
    work = tmp_path / "work"
    res = run_ovss("farslip-test-tiny", str(ckpt), list(LAYOUTS), root, work, save_predictions=True,
                   compare=["B/16:FarSLIP2"], **FAST)
    assert list(res) == ["OpenEarthMap", "LoveDA", "Potsdam", "Vaihingen", "UDD5", "VDD", "UAVid", "iSAID", "Mean"]
    distinct = 0
    for key, d in data.items():
        spec = d["spec"]
        preds = _predictions(work, key, d)
        gts = [gt_for_metric(lab, spec["rzl"]) for lab in d["label_arrays"]]
        for p, g, lab in zip(preds, gts, d["label_arrays"]):
            assert p.shape == lab.shape  # resized back to the original size
            assert p.min() >= 0 and p.max() < spec["C"]
        distinct = max(distinct, len(np.unique(np.concatenate([p.ravel() for p in preds]))))
        name = {"openearthmap": "OpenEarthMap", "loveda": "LoveDA", "potsdam": "Potsdam", "vaihingen": "Vaihingen",
                "udd5": "UDD5", "vdd": "VDD", "uavid": "UAVid", "isaid": "iSAID"}[key]
        assert math.isfinite(res[name])
        assert res[name] == pytest.approx(miou_percent(preds, gts, spec["C"]), abs=0.006), key
    assert distinct >= 3  # non-degenerate predictions: the IoU comparison means something
    assert res["Mean"] == pytest.approx(sum(v for k, v in res.items() if k != "Mean") / 8, abs=0.006)
    report = json.loads((work / "ovss_results.json").read_text())
    assert report["miou"] == res and report["preset"] == "farslip"
    assert report["settings"]["resize_long_side"] == FAST["resize_long_side"]  # what ran, not the preset's 448
    assert report["published"]["B/16:FarSLIP2"]["Mean"] == 35.41
    md = (work / "ovss_results.md").read_text()
    assert f"| LoveDA | {res['LoveDA']:.2f} | 34.23 | {res['LoveDA'] - 34.23:+.2f} |" in md
    assert f"| Mean | {res['Mean']:.2f} | 35.41 |" in md


def test_plain_mmseg_config_in_a_fresh_process(tmp_path, ckpt):
    """custom_imports in the config is all mmseg needs: the script never imports farslip_ext.segmentation."""
    root = tmp_path / "data"
    d = make_dataset("vdd", root, SIZES, seed=5)
    from farslip_ext.segmentation import config_file

    code = textwrap.dedent(f"""
        import json, sys
        from mmengine.config import Config
        from mmengine.runner import Runner
        cfg = Config.fromfile({str(config_file('vdd'))!r})
        cfg.model.clip = dict(model={str(ckpt)!r})  # assignment: update() would merge into the base clip dict
        cfg.model.update(slide_crop=64, slide_stride=32, device='cpu')
        cfg.test_dataloader.dataset.data_root = {str(d['root'])!r}
        cfg.test_dataloader.dataset.pipeline[1]['scale'] = (96, 96)
        cfg.test_dataloader.update(num_workers=0, persistent_workers=False)
        cfg.custom_hooks = []  # without OVSSCheckHook the segmentor still checks the classes itself
        cfg.test_evaluator['output_dir'] = {str(tmp_path / 'work' / 'vdd' / 'predictions')!r}
        cfg.work_dir = {str(tmp_path / 'work')!r}
        cfg.log_level = 'WARNING'
        m = Runner.from_cfg(cfg).test()
        print(json.dumps({{k: float(v) for k, v in m.items()}}))
    """)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                         cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    m = json.loads(out.stdout.strip().splitlines()[-1])
    preds = _predictions(tmp_path / "work", "vdd", d)
    assert m["mIoU"] == pytest.approx(miou_percent(preds, d["label_arrays"], 7), abs=0.006)


def _break(kind: str, root: Path) -> tuple:
    """Make one dataset broken in one way; returns (dataset, overrides, exception type, message regex)."""
    from farslip_ext.ovss import ClassCountMismatchError, ClassNamesError, DatasetNotFoundError
    from farslip_ext.segmentation.transforms import ImageDecodeError, LabelFormatError

    if kind == "class_count":
        make_dataset("loveda", root, SIZES)
        f = root / "six.txt"
        f.write_text("background\nbuilding\nroad\nwater\nbarren\nforest\n")
        return "loveda", dict(class_names=str(f)), ClassCountMismatchError, \
            rf"{f} has 6 classes but LoveDADataset has 7 .*line i of the class file must name dataset class i"
    if kind == "blank_class_line":
        make_dataset("loveda", root, SIZES)
        f = root / "blank.txt"
        f.write_text("background\nbuilding\n\nwater\nbarren\nforest\nagricultural\n")
        return "loveda", dict(class_names=str(f)), ClassNamesError, rf"{f}: line 3 is empty or blank"
    if kind == "undecodable_image":
        d = make_dataset("uavid", root, SIZES)
        d["images"][1].write_bytes(b"not an image at all")
        return "uavid", {}, ImageDecodeError, rf"cannot decode image {d['images'][1]}.*Re-download or re-convert"
    if kind == "label_out_of_range":
        d = make_dataset("loveda", root, SIZES)
        lab = d["label_arrays"][0].copy()
        lab[:4, :4] = 9  # reduce_zero_label: 9 -> 8, and LoveDA has classes 0..6
        Image.fromarray(lab, "L").save(d["labels"][0])
        return "loveda", {}, ValueError, rf"ground truth {d['labels'][0]} holds label values \[8\].*farslip ovss-convert"
    if kind == "colour_label":
        d = make_dataset("vdd", root, SIZES)
        rgb = np.stack([d["label_arrays"][0] * 30] * 2 + [d["label_arrays"][0]], axis=-1).astype(np.uint8)
        Image.fromarray(rgb, "RGB").save(d["labels"][0])
        return "vdd", {}, LabelFormatError, rf"label {d['labels'][0]} has shape \(48, 64, 3\).*colour mask"
    if kind == "missing_label":
        d = make_dataset("udd5", root, SIZES)
        d["labels"][1].unlink()
        return "udd5", {}, DatasetNotFoundError, r"UDD5Dataset: 1 of 2 images have no label file.*ovss-convert udd5"
    if kind == "missing_folder":
        return "isaid", {}, DatasetNotFoundError, r"iSAID: dataset folder not found.*farslip ovss-convert isaid"
    if kind == "unknown_setting":
        make_dataset("vdd", root, SIZES)
        return "vdd", dict(cls_lambda=0.1), TypeError, r"unknown setting 'cls_lambda'.*did you mean 'cls_token_lambda'"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["class_count", "blank_class_line", "undecodable_image", "label_out_of_range",
                                  "colour_label", "missing_label", "missing_folder", "unknown_setting"])
def test_clear_errors(tmp_path, ckpt, kind):
    from farslip_ext.segmentation import run_ovss

    root = tmp_path / "data"
    root.mkdir()
    dataset, over, exc, msg = _break(kind, root)
    with pytest.raises(exc, match=msg):
        run_ovss("farslip-test-tiny", str(ckpt), dataset, root, tmp_path / "work", **{**FAST, **over})


def test_segearth_preset_and_cli(tmp_path, ckpt, capsys):
    from farslip_ext.cli import main

    root = tmp_path / "data"
    make_dataset("potsdam", root, SIZES, seed=7)
    work = tmp_path / "work"
    rc = main(["ovss", "--model", str(ckpt), "--datasets", "potsdam", "--data-root", str(root), "--work-dir", str(work),
               "--preset", "segearth", "--device", "cpu", "--num-workers", "0", "--batch-size", "2",
               "--resize-long-side", "96", "--set", "slide_crop=64", "--set", "slide_stride=32",
               "--compare", "B/32:FarSLIP1"])
    out = capsys.readouterr().out
    assert rc == 0
    report = json.loads((work / "ovss_results.json").read_text())
    assert report["settings"]["cls_token_lambda"] == -0.3 and report["preset"] == "segearth"
    assert f"| Potsdam | {report['miou']['Potsdam']:.2f} | 36.28 |" in out
    assert "| Mean (1 datasets) |" in out
    rc = main(["ovss", "--model", str(ckpt), "--datasets", "potsdamm", "--data-root", str(root)])
    assert rc == 2 and "unknown OVSS dataset 'potsdamm'" in capsys.readouterr().err


# ------------------------------------------------------------------------------ users' own configs
@pytest.fixture(scope="module")
def user_setup(tmp_path_factory, ckpt):
    tmp = tmp_path_factory.mktemp("user-config")
    d = make_dataset("loveda", tmp / "data", SIZES, seed=3)
    other = tiny_checkpoint(tmp / "other.pt", seed=21)
    cfg = write_user_config(tmp / "my_config.py", ckpt, d["root"])
    return dict(tmp=tmp, data=d, cfg=cfg, other=other)


def _core_labels(weights, image_path, long_side=96):
    """The mmseg-free core on the same image (cv2 resize = mmcv's Resize): the independent prediction."""
    from farslip_ext.ovss import build_predictor

    pred = build_predictor(LOVEDA_LINES, clip=dict(model="farslip-test-tiny", pretrained=str(weights)), device="cpu",
                           slide_crop=64, slide_stride=32, templates=["a photo of {c}.", "an aerial image of {c}."],
                           text_cache=False, resize_long_side=long_side)
    return pred.segment(np.asarray(Image.open(image_path).convert("RGB"))).labels


def _saved(folder: Path, image_path: Path) -> np.ndarray:
    return np.asarray(Image.open(folder / f"{image_path.stem}.png")).astype(np.int64) - 1  # reduce_zero_label: +1


def test_hand_written_config_with_runner_init_model_and_inference(user_setup, ckpt, tmp_path):
    from mmengine.config import Config
    from mmengine.runner import Runner
    from mmseg.apis import inference_model, init_model, show_result_pyplot

    d = user_setup["data"]
    weights = torch.load(ckpt, weights_only=True)
    cfg = Config.fromfile(str(user_setup["cfg"]))
    cfg.work_dir = str(tmp_path / "runner")
    cfg.test_evaluator["output_dir"] = str(tmp_path / "runner" / "pred")
    runner = Runner.from_cfg(cfg)
    assert torch.equal(runner.model.clip.visual.conv1.weight, weights["visual.conv1.weight"])  # the file's weights
    m = runner.test()
    preds = [_saved(tmp_path / "runner" / "pred", ip) for ip in d["images"]]
    gts = [gt_for_metric(lab, True) for lab in d["label_arrays"]]
    assert m["mIoU"] == pytest.approx(miou_percent(preds, gts, 7), abs=0.006)
    for p, ip in zip(preds, d["images"]):
        assert np.array_equal(p, _core_labels(ckpt, ip))

    # mmseg's init_model sets cfg.model.pretrained = None: the CLIP weights (clip.pretrained) stay the file's
    model = init_model(str(user_setup["cfg"]), None, device="cpu")
    assert torch.equal(model.clip.visual.conv1.weight, weights["visual.conv1.weight"])
    result = inference_model(model, str(d["images"][0]))
    assert tuple(result.pred_sem_seg.data.shape) == (1,) + d["label_arrays"][0].shape
    assert np.array_equal(result.pred_sem_seg.data[0].numpy(), preds[0])
    out = tmp_path / "vis.png"
    show_result_pyplot(model, str(d["images"][0]), result, show=False, out_file=str(out), draw_gt=False)
    assert out.is_file() and Image.open(out).size == (64, 48)
    assert model.dataset_meta["classes"][:2] == ("background", "building")


def test_mmseg_test_tool_loads_the_checkpoint_it_is_given(user_setup, ckpt, tmp_path):
    """mmseg's own tools/test.py CONFIG CHECKPOINT: a bare CLIP checkpoint (another seed than the config's
    clip.pretrained) is loaded into the segmentor's CLIP; the predictions are those of that checkpoint."""
    import mmseg

    tool = Path(mmseg.__file__).parent / ".mim" / "tools" / "test.py"
    assert tool.is_file()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    out = subprocess.run([sys.executable, str(tool), str(user_setup["cfg"]), str(user_setup["other"]), "--work-dir",
                          str(tmp_path / "tool"), "--out", str(tmp_path / "tool" / "pred")],
                         capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    differs = 0
    for ip in user_setup["data"]["images"]:
        got = _saved(tmp_path / "tool" / "pred", ip)
        assert np.array_equal(got, _core_labels(user_setup["other"], ip))
        differs += not np.array_equal(got, _core_labels(ckpt, ip))
    assert differs  # the config's own weights would have given other labels: the checkpoint was used


def test_farslip_ovss_runs_a_user_config(user_setup, ckpt, tmp_path, capsys):
    from farslip_ext.cli import main

    d = user_setup["data"]
    work = tmp_path / "work"
    rc = main(["ovss", "--config", str(user_setup["cfg"]), "--work-dir", str(work), "--save-predictions",
               "--cfg-options", f"model.clip.pretrained={user_setup['other']}"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    report = json.loads((work / "ovss_results.json").read_text())
    preds = [_saved(work / "my_config" / "predictions", ip) for ip in d["images"]]
    for p, ip in zip(preds, d["images"]):  # --cfg-options reached the CLIP
        assert np.array_equal(p, _core_labels(user_setup["other"], ip))
    gts = [gt_for_metric(lab, True) for lab in d["label_arrays"]]
    assert report["miou"]["my_config"] == pytest.approx(miou_percent(preds, gts, 7), abs=0.006)
    assert report["configs"]["my_config"] == str(user_setup["cfg"])
    assert captured.out.startswith("# OVSS mIoU (%)") and f"| my_config | {report['miou']['my_config']:.2f} |" in \
        captured.out
    assert "Config:" not in captured.out + captured.err and "prefix is not set" not in captured.out + captured.err


def test_class_file_mismatch_fails_before_the_first_image_in_any_config(user_setup, tmp_path, capsys):
    """A from-scratch config (no OVSSCheckHook) with one class too few: Runner.test() fails in the segmentor
    before anything is segmented; `farslip ovss --config` reports it as one line."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    from farslip_ext.cli import main
    from farslip_ext.ovss import ClassCountMismatchError

    bad = write_user_config(tmp_path / "six.py", user_setup["other"], user_setup["data"]["root"], LOVEDA_LINES[:6])
    cfg = Config.fromfile(str(bad))
    cfg.work_dir = str(tmp_path / "w")
    runner = Runner.from_cfg(cfg)
    assert not any(type(h).__name__ == "OVSSCheckHook" for h in runner.hooks)
    calls = []
    real = runner.model.ovss.slide_inference
    runner.model.ovss.slide_inference = lambda *a, **k: calls.append(1) or real(*a, **k)
    with pytest.raises(ClassCountMismatchError, match=r"has 6 classes but the dataset of this test run has 7"):
        runner.test()
    assert calls == []  # nothing was segmented
    rc = main(["ovss", "--config", str(bad), "--work-dir", str(tmp_path / "w2")])
    err = capsys.readouterr().err
    assert rc == 2 and "has 6 classes but LoveDADataset has 7" in err


def test_a_benchmark_from_a_plugin(tmp_path, ckpt, capsys):
    """A benchmark the paper does not have: one config + one class file, registered through the plugin hooks;
    it runs with `farslip ovss --datasets` like a shipped one and joins the report."""
    from farslip_ext import hookimpl
    from farslip_ext.cli import main
    from farslip_ext.ovss import get_benchmark, list_benchmarks, preset_settings
    from farslip_ext.plugins import get_plugin_manager

    configs, classnames = write_toy_plugin(tmp_path / "plugin")

    class ToyPlugin:
        @hookimpl
        def farslip_ovss_config_paths(self):
            return [str(configs)]

        @hookimpl
        def farslip_classname_paths(self):
            return [str(classnames)]

    pm = get_plugin_manager()
    pm.register(ToyPlugin(), name="toy-plugin")
    try:
        keys = [b.key for b in list_benchmarks()]
        assert keys[-1] == "toyland" and "loveda" in keys  # after the paper's, which keep their order
        b = get_benchmark("Toyland")
        assert b.num_classes == 3 and b.batch_size == 2 and b.dataset_type == "BaseSegDataset"
        assert preset_settings("segearth", "toyland")["prob_thd"] == 0.2
        d = make_toy_dataset(tmp_path / "data")
        work = tmp_path / "work"
        rc = main(["ovss", "--model", str(ckpt), "--datasets", "toyland", "--data-root", str(tmp_path / "data"),
                   "--work-dir", str(work), "--device", "cpu", "--resize-long-side", "96", "--save-predictions",
                   "--set", "slide_crop=64", "--set", "slide_stride=32", "--compare", "B/16:FarSLIP2"])
        out = capsys.readouterr().out
        assert rc == 0
        report = json.loads((work / "ovss_results.json").read_text())
        preds = [np.asarray(Image.open(work / "toyland" / "predictions" / f"{ip.stem}.png")).astype(np.int64)
                 for ip in d["images"]]
        assert report["miou"]["Toyland"] == pytest.approx(miou_percent(preds, d["label_arrays"], 3), abs=0.006)
        assert f"| Toyland | {report['miou']['Toyland']:.2f} | — | — |" in out  # not in the published table
    finally:
        pm.unregister(name="toy-plugin")
    assert "toyland" not in [b.key for b in list_benchmarks()]


def test_run_ovss_takes_a_loaded_model(tmp_path, ckpt):
    """A caller that has a model loaded (a leaderboard) passes it; the numbers are those of the same weights
    given as a path, and the report names the model."""
    import farslip_ext
    from farslip_ext.segmentation import run_ovss

    root = tmp_path / "data"
    make_dataset("vdd", root, SIZES, seed=4)
    lm = farslip_ext.load(str(ckpt))
    by_model = run_ovss(lm, datasets="vdd", data_root=root, work_dir=tmp_path / "a", **FAST)
    by_path = run_ovss("farslip-test-tiny", str(ckpt), datasets="vdd", data_root=root, work_dir=tmp_path / "b", **FAST)
    assert by_model == by_path
    assert json.loads((tmp_path / "a" / "ovss_results.json").read_text())["model"] == lm.source
