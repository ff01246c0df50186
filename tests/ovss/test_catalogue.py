"""Class names, benchmark configs, presets and settings (docs/reference/ovss-evaluation.md §1.7-1.9, §2.3, §2.4).

The spec tables below are written out from docs/reference/ovss-evaluation.md; they check the paper's benchmarks. Every
other test iterates over the registered benchmarks, so adding one (a config + a class file) changes no test.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from farslip_ext.catalogue import catalogue_dir
from farslip_ext.published import load_published_results

# docs/reference/ovss-evaluation.md §1.9, verbatim ('|' separates lines)
SPEC_19 = {
    "openearthmap": "background | bareland,barren | grass | pavement | road | tree,forest | water,river | cropland | building,roof,house",
    "loveda": "background | building,roof,house | road | water | barren | forest | agricultural",
    "isaid": "background | ship | store tank | baseball diamond | tennis court | basketball court | ground track field | "
             "bridge | large vehicle | small vehicle | helicopter | swimming pool | roundabout | soccer ball field | plane | harbor",
    "potsdam": "road,parking lot | building | low vegetation | tree | car | clutter,background",
    "vaihingen": "impervious surface | building | low vegetation | tree | car | clutter",
    "uavid": "background | building | road | car | tree | vegetation | human",
    "udd5": "vegetation | building | road | vehicle | background",
    "vdd": "background | facade | road | vegetation | vehicle | roof | water",
}
# docs/reference/ovss-evaluation.md §2.4: dataset type, suffixes, classes count, reduce_zero_label; §1.8 split folders (first spelling)
SPEC_24 = {
    "openearthmap": ("OpenEarthMapDataset", ".tif", ".tif", 9, False, "OpenEarthMap", "img_dir/val", "ann_dir/val"),
    "loveda": ("LoveDADataset", ".png", ".png", 7, True, "LoveDA", "img_dir/val", "ann_dir/val"),
    "isaid": ("iSAIDDataset", ".png", "_instance_color_RGB.png", 16, False, "iSAID", "img_dir/val", "ann_dir/val"),
    "potsdam": ("PotsdamDataset", ".png", ".png", 6, True, "potsdam", "img_dir/val", "ann_dir/val"),
    "vaihingen": ("ISPRSDataset", ".png", ".png", 6, True, "vaihingen", "img_dir/val", "ann_dir/val"),
    "uavid": ("UAVidDataset", ".png", ".png", 7, False, "UAVid", "img_dir/test", "ann_dir/test"),
    "udd5": ("UDD5Dataset", ".JPG", ".png", 5, False, "UDD5", "val/src", "val/gt"),
    "vdd": ("VDDDataset", ".JPG", ".png", 7, False, "VDD", "test/src", "test/gt"),
}
# docs/reference/ovss-evaluation.md §1.8 SegEarth-OV thresholds / background index
SPEC_18 = {"openearthmap": (0.1, 0), "loveda": (0.3, 0), "isaid": (0.4, 0), "potsdam": (0.1, 5),
           "vaihingen": (0.1, 5), "uavid": (0.3, 0), "udd5": (0.4, 4), "vdd": (0.3, 0)}


def _benchmarks():
    from farslip_ext.ovss import list_benchmarks

    return list_benchmarks()


@pytest.mark.parametrize("key", sorted(SPEC_19))
def test_paper_class_files_are_the_spec(key):
    from farslip_ext.ovss import get_benchmark, load_class_names

    path = catalogue_dir() / "classnames" / f"cls_{key}.txt"
    assert path.read_text(encoding="utf-8") == "\n".join(s.strip() for s in SPEC_19[key].split("|")) + "\n"
    b = get_benchmark(key)
    assert b.classname_file == f"classnames:cls_{key}.txt"
    assert load_class_names(b.classname_file).num_classes == SPEC_24[key][3]


@pytest.mark.parametrize("bench", _benchmarks(), ids=lambda b: b.key)
def test_every_benchmark_config_matches_its_dataset(bench):
    """Generic invariants of any registered benchmark: the class file parses and has as many classes as the
    dataset class, the label values cover the classes, and mmengine can read the config."""
    from mmengine.config import Config
    from mmseg.registry import DATASETS

    import farslip_ext.segmentation  # noqa: F401  (registers the custom datasets)
    from farslip_ext.ovss import load_class_names

    names = load_class_names(bench.classname_file)
    dataset_cls = DATASETS.get(bench.dataset_type)
    assert dataset_cls is not None, bench.dataset_type
    assert names.num_classes == len(dataset_cls.METAINFO["classes"])
    shift = 1 if bench.reduce_zero_label else 0
    assert set(range(shift, names.num_classes + shift)) <= set(bench.raw_label_values)
    cfg = Config.fromfile(str(bench.config_file))
    assert cfg.model.type == "FarSLIPSeg" and cfg.custom_imports.imports == ["farslip_ext.segmentation"]
    ds = cfg.test_dataloader.dataset
    assert ds.type == bench.dataset_type and ds.data_prefix == dict(img_path=bench.img_dir, seg_map_path=bench.ann_dir)
    assert bench.roots and cfg.test_dataloader.batch_size == bench.batch_size


def test_paper_benchmarks_are_the_spec_and_join_the_published_table():
    from farslip_ext.ovss import get_benchmark, resolve_benchmarks

    published = load_published_results()["ovss_miou"]["B/16"]["FarSLIP2"]
    paper = resolve_benchmarks("paper")
    assert [b.name for b in paper] == [k for k in published if k != "Mean"]  # the table's column order
    for key, (typ, isuf, lsuf, n, rzl, root, img, ann) in SPEC_24.items():
        b = get_benchmark(key)
        assert (b.dataset_type, b.img_suffix, b.seg_map_suffix, b.reduce_zero_label) == (typ, isuf, lsuf, rzl)
        assert (b.roots[0], b.img_dir, b.ann_dir) == (root, img, ann)
        assert b.presets["segearth"] == dict(zip(("prob_thd", "bg_idx"), SPEC_18[key]))
    assert get_benchmark("loveda").roots == ("LoveDA", "loveDA") and get_benchmark("udd5").roots[1] == "UDD/UDD/UDD5"


def test_base_config_is_the_protocol_and_the_segmentor_defaults():
    """The base config is the docs/reference/ovss-evaluation.md §1.7 right column, and it is exactly the settings record (one copy)."""
    from mmengine.config import Config

    from farslip_ext.ovss import SegSettings, default_settings
    from farslip_ext.ovss.settings import NOT_SETTINGS, base_config_path

    base = Config.fromfile(str(base_config_path()))
    assert base.custom_imports == dict(imports=["farslip_ext.segmentation"], allow_failed_imports=False)
    assert base.default_scope == "mmseg" and base.test_evaluator.type == "IoUMetric"
    assert [t["type"] for t in base.test_pipeline] == ["FarSLIPLoadImageFromFile", "Resize", "FarSLIPLoadAnnotations",
                                                       "PackSegInputs"]
    assert base.test_pipeline[1]["scale"] == (448, 448) and base.test_pipeline[1]["keep_ratio"]
    m = base.model
    assert (m.type, m.attn, m.ignore_residual, m.cls_token_lambda, m.prob_thd, m.bg_idx, m.logit_scale, m.slide_crop,
            m.slide_stride, m.templates, m.window_mode, m.norm_decimals) == (
        "FarSLIPSeg", "SegEarth", True, 0.0, 0.0, 0, 50.0, 224, 112, "openai", "resize", 3)
    assert m.clip == dict(model="farslip-vitb16", pretrained="s2")
    assert set(SegSettings.names()) == set(m) - set(NOT_SETTINGS)
    assert default_settings() == {k: v for k, v in m.to_dict().items() if k not in NOT_SETTINGS}


def test_presets_are_overlays():
    from farslip_ext.ovss import default_settings, list_presets, preset_settings

    assert {"farslip", "segearth"} <= set(list_presets())
    base = default_settings()
    f = preset_settings("farslip", "potsdam")
    assert f == dict(base, resize_long_side=448)  # the farslip preset is the base config
    for key, (thd, bg) in SPEC_18.items():
        s = preset_settings("segearth", key)
        assert (s["cls_token_lambda"], s["prob_thd"], s["bg_idx"], s["window_mode"]) == (-0.3, thd, bg, "native")
        assert {k: v for k, v in s.items() if k not in ("cls_token_lambda", "prob_thd", "bg_idx", "window_mode")} == \
            {k: v for k, v in f.items() if k not in ("cls_token_lambda", "prob_thd", "bg_idx", "window_mode")}
    with pytest.raises(KeyError, match="unknown OVSS preset 'segearh'.*did you mean 'segearth'"):
        preset_settings("segearh")


def test_settings_are_checked_with_close_matches():
    from farslip_ext.errors import ConfigError
    from farslip_ext.ovss import SegSettings, UnknownSettingError

    with pytest.raises(UnknownSettingError, match=r"unknown setting 'cls_lambda'.*did you mean 'cls_token_lambda'"):
        SegSettings.from_overrides(dict(cls_lambda=0.1))
    assert issubclass(UnknownSettingError, TypeError) and issubclass(UnknownSettingError, ConfigError)
    with pytest.raises(ConfigError, match="slide_stride=96 must be positive and at most slide_crop=64"):
        SegSettings.from_overrides(dict(slide_crop=64, slide_stride=96))
    with pytest.raises(ConfigError, match=r"prob_thd=1.5 is a probability threshold in \[0, 1\]"):
        SegSettings.from_overrides(dict(prob_thd=1.5))
    s = SegSettings.from_overrides(dict(slide_crop=(64, 96), slide_stride=32))
    assert s.slide_crop == (64, 96) and s.logit_scale == 50.0


def test_parsing_synonyms_inline_lists_and_errors(tmp_path):
    from farslip_ext.ovss import ClassNamesError, load_class_names

    cn = load_class_names(["building, roof ,house", "road"])
    assert cn.classes == (("building", "roof", "house"), ("road",))
    assert cn.query_words == ["building", "roof", "house", "road"] and cn.query_idx == [0, 0, 0, 1]
    assert load_class_names([["a", "b"], ["c"]]).query_idx == [0, 0, 1]
    # the --classes string forms, the same in Python
    assert load_class_names("water, forest ,road").classes == (("water",), ("forest",), ("road",))
    assert load_class_names("water;forest,trees;road;").classes == (("water",), ("forest", "trees"), ("road",))
    assert load_class_names("classnames:cls_loveda.txt").num_classes == 7
    assert load_class_names("catalogue:cls_loveda.txt").classes == load_class_names("classnames:cls_loveda.txt").classes
    f = tmp_path / "cls.txt"
    f.write_text("water\n\nroad\n")
    with pytest.raises(ClassNamesError, match=rf"{f}.*line 2 is empty or blank.*remove the blank line"):
        load_class_names(str(f))
    f.write_text("water\nroad\n\n")  # blank lines at the end are ignored (the one class-file policy)
    assert load_class_names(str(f)).classes == (("water",), ("road",))
    f.write_text("water\nroad\nwater\n")
    with pytest.raises(ClassNamesError, match=r"'water' \(lines 1 and 3\) appear more than once"):
        load_class_names(str(f))
    with pytest.raises(ClassNamesError, match=r"the name 'lake' is given for class 0 \(pond, lake\) and again for class 1"):
        load_class_names(["pond,lake", "lake"])
    with pytest.raises(ClassNamesError, match=r"the name 'Water' is given for class 0 \(water\) and again for class 2.*"
                                              r"ignoring case"):
        load_class_names("water,road,Water")
    f.write_text("water,,river\n")
    with pytest.raises(ClassNamesError, match=r"line 1 \('water,,river'\) has an empty name.*stray comma"):
        load_class_names(str(f))
    with pytest.raises(ClassNamesError, match="class 2 is empty"):
        load_class_names("a,,b")
    with pytest.raises(ClassNamesError, match="line 2 is empty"):
        load_class_names(["a", "  "])
    with pytest.raises(FileNotFoundError, match="class-name file 'nope.txt' not found"):
        load_class_names("nope.txt")
    with pytest.raises(FileNotFoundError, match=r"no cls_nope.txt in .*available: \['cls_isaid.txt'"):
        load_class_names("classnames:cls_nope.txt")


def test_dataset_names_and_missing_folder(tmp_path):
    from farslip_ext.ovss import DatasetNotFoundError, find_dataset_root, resolve_benchmarks

    assert [b.key for b in resolve_benchmarks("LoveDA, isaid")] == ["loveda", "isaid"]
    assert [b.key for b in resolve_benchmarks("all")] == [b.key for b in _benchmarks()]
    with pytest.raises(KeyError, match="unknown OVSS dataset 'lovedaa'.*did you mean 'loveda'"):
        resolve_benchmarks(["lovedaa"])
    with pytest.raises(DatasetNotFoundError, match=rf"LoveDA: dataset folder not found; tried {tmp_path}/LoveDA, "
                                                   rf"{tmp_path}/loveDA.*farslip ovss-convert loveda"):
        find_dataset_root(resolve_benchmarks("loveda")[0], tmp_path)
    (tmp_path / "loveDA" / "img_dir" / "val").mkdir(parents=True)  # RS-OVSS spelling, but no labels
    with pytest.raises(DatasetNotFoundError, match=r"loveDA exists but lacks .*ann_dir/val"):
        find_dataset_root(resolve_benchmarks("loveda")[0], tmp_path)


def test_cli_parser_does_not_import_mmseg():
    code = ("import sys, farslip_ext.cli as c; p = c.build_parser(); p.parse_args(['ovss', '--datasets', 'vdd']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mmseg', 'mmcv') "
            "or m.startswith('farslip_ext.segmentation')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_ovss_core_imports_no_mmseg_or_mmcv():
    """Every core module, the benchmark/preset readers and an array segmentation, in a fresh process."""
    code = textwrap.dedent("""
        import json, pkgutil, importlib, sys
        import numpy as np, torch
        import farslip_ext.ovss as core
        for m in pkgutil.iter_modules(core.__path__):
            importlib.import_module(f'farslip_ext.ovss.{m.name}')
        import farslip_ext.geo
        from farslip_ext.ovss import list_benchmarks, preset_settings, build_predictor
        list_benchmarks(); preset_settings('segearth', 'potsdam')
        import open_clip
        net = open_clip.create_model('farslip-test-tiny')
        pred = build_predictor('water;forest,trees;road', clip=net, device='cpu', slide_crop=32, slide_stride=16,
                               templates=['a photo of {c}.'], text_cache=False, resize_long_side=None)
        res = pred.segment(np.zeros((40, 50, 3), dtype=np.uint8))
        print(json.dumps({'shape': list(res.labels.shape), 'probs': list(res.probs.shape),
                          'mm': sorted(m for m in sys.modules if m.split('.')[0] in ('mmseg', 'mmcv')),
                          'adapter': sorted(m for m in sys.modules if m.startswith('farslip_ext.segmentation'))}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r == {"shape": [40, 50], "probs": [3, 40, 50], "mm": [], "adapter": []}


@pytest.mark.parametrize("cmd", ["ovss", "ovss-convert", "ovss-check", "segment"])
def test_every_option_says_what_it_does(cmd):
    import argparse

    import farslip_ext.cli as cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[cmd]
    missing = [a.dest for a in sub._actions if not isinstance(a, argparse._HelpAction)
               and (not a.help or a.help == argparse.SUPPRESS or len(a.help) < 12)]
    assert missing == []


def test_third_party_chatter_is_filtered_narrowly():
    """Importing the adapter prints nothing to stdout and none of the known chatter; other messages of a
    runner's logger still pass."""
    code = textwrap.dedent("""
        import logging, sys
        import farslip_ext.segmentation
        from farslip_ext.segmentation.openmmlab import _DropNoise
        f = _DropNoise()
        rec = lambda m: logging.LogRecord('x', logging.WARNING, 'f.py', 1, m, None, None)
        print(f.filter(rec('The prefix is not set in metric class IoUMetric.')), f.filter(rec('a real warning')),
              file=sys.stderr)
    """)
    out = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout == ""
    assert "Could not import OneDL" not in out.stderr and "MultiScaleDeformableAttention" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == "False True"


def test_ovss_list_shows_every_benchmark_and_preset(capsys):
    from farslip_ext.cli import main
    from farslip_ext.ovss import list_presets

    assert main(["ovss", "--list"]) == 0
    out = capsys.readouterr().out
    for b in _benchmarks():
        assert f"  {b.key:14s} {b.name:14s}" in out and str(b.config_file) in out
    for name in list_presets():
        assert f"  {name:14s}" in out
