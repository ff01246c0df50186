"""Class-name files, benchmark table, presets and configs (ovss-protocol.md §1.7-§1.9, §2.3, §2.4)."""
from __future__ import annotations

import pytest

from farslip_ext.catalogue import catalogue_dir
from farslip_ext.published import load_published_results

# §1.9, verbatim ('|' separates lines)
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
# §2.4: dataset type, suffixes, classes count, reduce_zero_label
SPEC_24 = {
    "openearthmap": ("OpenEarthMapDataset", ".tif", ".tif", 9, False),
    "loveda": ("LoveDADataset", ".png", ".png", 7, True),
    "isaid": ("iSAIDDataset", ".png", "_instance_color_RGB.png", 16, False),
    "potsdam": ("PotsdamDataset", ".png", ".png", 6, True),
    "vaihingen": ("ISPRSDataset", ".png", ".png", 6, True),
    "uavid": ("UAVidDataset", ".png", ".png", 7, False),
    "udd5": ("UDD5Dataset", ".JPG", ".png", 5, False),
    "vdd": ("VDDDataset", ".JPG", ".png", 7, False),
}
# §1.8 SegEarth-OV thresholds / background index
SPEC_18 = {"openearthmap": (0.1, 0), "loveda": (0.3, 0), "isaid": (0.4, 0), "potsdam": (0.1, 5),
           "vaihingen": (0.1, 5), "uavid": (0.3, 0), "udd5": (0.4, 4), "vdd": (0.3, 0)}


@pytest.mark.parametrize("key", sorted(SPEC_19))
def test_classname_files_are_the_spec_and_match_metainfo(key):
    from mmseg.registry import DATASETS

    import farslip_ext.segmentation  # noqa: F401  (registers the custom datasets)
    from farslip_ext.segmentation.classnames import load_class_names

    path = catalogue_dir() / "classnames" / f"cls_{key}.txt"
    text = path.read_text(encoding="utf-8")
    assert text == "\n".join(s.strip() for s in SPEC_19[key].split("|")) + "\n"
    names = load_class_names(f"catalogue:cls_{key}.txt")
    typ, _, _, n, _ = SPEC_24[key]
    assert names.num_classes == n == len(DATASETS.get(typ).METAINFO["classes"])


def test_parsing_synonyms_and_errors(tmp_path):
    from farslip_ext.segmentation.classnames import ClassNamesError, load_class_names

    cn = load_class_names(["building, roof ,house", "road"])
    assert cn.classes == (("building", "roof", "house"), ("road",))
    assert cn.query_words == ["building", "roof", "house", "road"] and cn.query_idx == [0, 0, 0, 1]
    assert load_class_names([["a", "b"], ["c"]]).query_idx == [0, 0, 1]
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
    f.write_text("water,,river\n")
    with pytest.raises(ClassNamesError, match=r"line 1 \('water,,river'\) has an empty name.*stray comma"):
        load_class_names(str(f))
    with pytest.raises(ClassNamesError, match="line 2 is empty"):
        load_class_names(["a", "  "])
    with pytest.raises(FileNotFoundError, match="class-name file 'nope.txt' not found"):
        load_class_names("nope.txt")
    with pytest.raises(FileNotFoundError, match=r"the catalogue ships \['cls_isaid.txt'"):
        load_class_names("catalogue:cls_nope.txt")


def test_benchmark_table_matches_spec_and_configs():
    from mmengine.config import Config

    from farslip_ext.commands.ovss import DATASET_KEYS
    from farslip_ext.segmentation import BENCHMARK_ORDER, BENCHMARKS, config_dir

    assert DATASET_KEYS == BENCHMARK_ORDER
    published = load_published_results()["ovss_miou"]["B/16"]["FarSLIP2"]
    assert [BENCHMARKS[k].name for k in BENCHMARK_ORDER] == [k for k in published if k != "Mean"]
    base = Config.fromfile(str(config_dir() / "_base_" / "farslip_ovss.py"))
    assert base.custom_imports == dict(imports=["farslip_ext.segmentation"], allow_failed_imports=False)
    assert base.default_scope == "mmseg" and base.test_evaluator.type == "IoUMetric"
    assert [t["type"] for t in base.test_pipeline] == ["FarSLIPLoadImageFromFile", "Resize", "FarSLIPLoadAnnotations",
                                                       "PackSegInputs"]
    assert base.test_pipeline[1]["scale"] == (448, 448) and base.test_pipeline[1]["keep_ratio"]
    m = base.model  # §1.7 right column
    assert (m.type, m.attn, m.ignore_residual, m.cls_token_lambda, m.prob_thd, m.bg_idx, m.logit_scale, m.slide_crop,
            m.slide_stride, m.templates) == ("FarSLIPSeg", "SegEarth", True, 0.0, 0.0, 0, 50.0, 224, 112, "openai")
    for key, (typ, isuf, lsuf, n, rzl) in SPEC_24.items():
        b = BENCHMARKS[key]
        assert (b.dataset_type, b.img_suffix, b.seg_map_suffix, b.num_classes, b.reduce_zero_label) == (typ, isuf, lsuf, n, rzl)
        assert (b.segearth_prob_thd, b.segearth_bg_idx) == SPEC_18[key]
        cfg = Config.fromfile(str(b.config_file))
        ds = cfg.test_dataloader.dataset
        assert ds.type == typ and cfg.model.class_names == f"catalogue:cls_{key}.txt"
        assert ds.data_root == f"data/{b.roots[0]}"
        assert ds.data_prefix == dict(img_path=b.img_dir, seg_map_path=b.ann_dir)
        assert ds.get("reduce_zero_label", rzl) == rzl
        assert cfg.test_dataloader.batch_size == b.batch_size


def test_presets():
    from farslip_ext.segmentation import preset_settings

    f = preset_settings("farslip", "potsdam")
    assert (f["cls_token_lambda"], f["prob_thd"], f["bg_idx"], f["logit_scale"], f["resize_long_side"],
            f["slide_crop"], f["slide_stride"], f["attn"], f["window_mode"]) == (0.0, 0.0, 0, 50.0, 448, 224, 112,
                                                                                 "SegEarth", "resize")
    for key, (thd, bg) in SPEC_18.items():
        s = preset_settings("segearth", key)
        assert (s["cls_token_lambda"], s["prob_thd"], s["bg_idx"]) == (-0.3, thd, bg)
    with pytest.raises(KeyError, match="unknown OVSS preset 'segearh'.*did you mean 'segearth'"):
        preset_settings("segearh")


def test_dataset_names_and_missing_folder(tmp_path):
    from farslip_ext.segmentation.benchmarks import DatasetNotFoundError, find_dataset_root, resolve_benchmarks

    assert [b.key for b in resolve_benchmarks("LoveDA, isaid")] == ["loveda", "isaid"]
    assert len(resolve_benchmarks("all")) == 8
    with pytest.raises(KeyError, match="unknown OVSS dataset 'lovedaa'.*did you mean 'loveda'"):
        resolve_benchmarks(["lovedaa"])
    with pytest.raises(DatasetNotFoundError, match=rf"LoveDA: dataset folder not found; tried {tmp_path}/LoveDA, "
                                                   rf"{tmp_path}/loveDA.*farslip ovss-convert loveda"):
        find_dataset_root(resolve_benchmarks("loveda")[0], tmp_path)
    (tmp_path / "loveDA" / "img_dir" / "val").mkdir(parents=True)  # RS-OVSS spelling, but no labels
    with pytest.raises(DatasetNotFoundError, match=r"loveDA exists but lacks .*ann_dir/val"):
        find_dataset_root(resolve_benchmarks("loveda")[0], tmp_path)


def test_cli_parser_does_not_import_mmseg():
    import subprocess
    import sys

    code = ("import sys, farslip_ext.cli as c; p = c.build_parser(); p.parse_args(['ovss', '--datasets', 'vdd']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mmseg', 'mmcv') "
            "or m.startswith('farslip_ext.segmentation')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
