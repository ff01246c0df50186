"""The eight benchmarks through the real mmseg pipeline and ``Runner.test()`` (IoUMetric), on fabricated
datasets in each on-disk layout (ovss-protocol.md §2, §5). The returned mIoU is checked against an IoU
computed independently (numpy loops) from the predictions IoUMetric saved and the labels we wrote."""
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
from PIL import Image

from tests.helpers.ovss_fixtures import LAYOUTS, gt_for_metric, make_dataset, miou_percent, tiny_checkpoint

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
    res = run_ovss("farslip-test-tiny", str(ckpt), "all", root, work, save_predictions=True,
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
        cfg.model.update(model={str(ckpt)!r}, pretrained=None, slide_crop=64, slide_stride=32, device='cpu')
        cfg.test_dataloader.dataset.data_root = {str(d['root'])!r}
        cfg.test_dataloader.dataset.pipeline[1]['scale'] = (96, 96)
        cfg.test_dataloader.update(num_workers=0, persistent_workers=False)
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
    from farslip_ext.segmentation.benchmarks import DatasetNotFoundError
    from farslip_ext.segmentation.classnames import ClassNamesError
    from farslip_ext.segmentation.hooks import ClassCountMismatchError
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
