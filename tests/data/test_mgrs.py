"""MGRS-200k JSON dataset (docs/reference/method.md §2.1, §3.2): boxes read by name (§7.23), drop/skip counters, padding."""
from __future__ import annotations

import json
import logging
import math
import random

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

import farslip_ext.data  # noqa: F401
from farslip_ext.data import synthetic as syn
from farslip_ext.data.datasets import MGRSJsonDataset, parse_bbox
from farslip_ext.data.transforms import SquashTransform
from farslip_ext.registry import TRAIN_DATASETS

S = 32


def _img(path, w=64, h=48, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def _ds(json_path, root, **kw):
    kw.setdefault("transform", SquashTransform(S))
    kw.setdefault("region_transform", SquashTransform(S))
    kw.setdefault("min_size", 4)
    kw.setdefault("shuffle_boxes", False)
    return MGRSJsonDataset(json_path, root, image_size=S, **kw)


# --- parse_bbox ------------------------------------------------------------------------------------

def test_parse_bbox_is_independent_of_field_order_and_aliases():
    ref = parse_bbox({"x1": 3, "y1": 4, "x2": 30, "y2": 40, "W": 64, "H": 48})
    assert ref[:6] == (3.0, 4.0, 30.0, 40.0, 64.0, 48.0) and ref.source == "names"
    items = list({"x1": 3, "y1": 4, "x2": 30, "y2": 40, "W": 64, "H": 48}.items())
    rng = random.Random(0)
    for _ in range(10):
        rng.shuffle(items)
        assert parse_bbox(dict(items))[:6] == ref[:6]
    aliases = {"height": 48, "xmax": 30, "ymin": 4, "width": 64, "xmin": 3, "ymax": 40}
    assert parse_bbox(aliases)[:6] == ref[:6]
    assert parse_bbox({"Bottom": 40, "LEFT": 3, "top": 4, "right": 30})[:6] == (3.0, 4.0, 30.0, 40.0, None, None)


def test_parse_bbox_fallbacks_and_errors():
    b = parse_bbox({"a": 1, "b": 2, "c": 5, "d": 6, "e": 10, "f": 12})
    assert b.source == "order" and b[:6] == (1.0, 2.0, 5.0, 6.0, 10.0, 12.0)
    assert parse_bbox([1, 2, 3, 4]).source == "sequence"
    with pytest.raises(ValueError, match="corner"):
        parse_bbox({"x1": 1, "y1": 2, "x2": 3})
    with pytest.raises(ValueError, match="x/y/w/h"):
        parse_bbox({"x": 1, "y": 2, "w": 3, "h": 4})
    with pytest.raises(ValueError, match="4 or 6"):
        parse_bbox([1, 2, 3])
    with pytest.raises(ValueError, match="not a number"):
        parse_bbox({"x1": "a", "y1": 2, "x2": 3, "y2": 4})


# --- the dataset -----------------------------------------------------------------------------------

def _seg(bbox, cat="forest", cid=0, **kw):
    return {"bbox": bbox, "category": cat, "category_id": cid, **kw}


def test_boxes_are_the_same_for_any_key_order(tmp_path):
    _img(tmp_path / "a.png")
    box1 = {"x1": 3, "y1": 4, "x2": 30, "y2": 40, "W": 64, "H": 48}
    box2 = {"x1": 32, "y1": 0, "x2": 64, "y2": 20, "W": 64, "H": 48}
    shuffled = [dict(reversed(list(b.items()))) for b in (box1, box2)]
    aliased = [{"height": b["H"], "ymax": b["y2"], "xmin": b["x1"], "width": b["W"], "xmax": b["x2"], "ymin": b["y1"]}
               for b in (box1, box2)]
    items = [
        {"global_filepath": "a.png", "global_caption": "c", "segment": [_seg(box1), _seg(box2, "road", 5)]},
        {"global_filepath": "a.png", "global_caption": "c", "segment": [_seg(shuffled[0]), _seg(shuffled[1], "road", 5)]},
        {"global_filepath": "a.png", "global_caption": "c", "segment": [_seg(aliased[0]), _seg(aliased[1], "road", 5)]},
    ]
    (tmp_path / "text_info.json").write_text(json.dumps(items))
    ds = _ds(tmp_path / "text_info.json", tmp_path)
    outs = [ds[i] for i in range(3)]
    expected = torch.tensor(
        [[3 / 64, 4 / 48, 30 / 64, 40 / 48, 1], [32 / 64, 0, 1, 20 / 48, 1], [0] * 5, [0] * 5], dtype=torch.float32
    )
    for o in outs:
        torch.testing.assert_close(o["boxes"], expected, rtol=0, atol=1e-7)
        torch.testing.assert_close(o["local_images"], outs[0]["local_images"], rtol=0, atol=0)
        assert o["local_categories"].tolist() == [0, 5, -1, -1]
    assert ds.stats["bbox_order_fallback"] == 0


def test_malformed_boxes_and_missing_or_corrupt_images_are_counted(tmp_path, caplog):
    _img(tmp_path / "ok0.png", seed=1)
    _img(tmp_path / "ok2.png", seed=2)
    _img(tmp_path / "full.png", seed=3)
    (tmp_path / "bad.png").write_bytes((tmp_path / "full.png").read_bytes()[:200])  # truncated PNG
    good = {"x1": 0, "y1": 0, "x2": 20, "y2": 20, "W": 64, "H": 48}
    items = [
        {
            "global_filepath": "ok0.png",
            "global_caption": "item zero",
            "segment": [
                _seg(good),
                _seg({"x1": 20, "y1": 5, "x2": 10, "y2": 30}),  # x2 <= x1: malformed
                _seg({"x1": float("nan"), "y1": 5, "x2": 10, "y2": 30}),  # NaN: malformed
                _seg({"x1": 100, "y1": 5, "x2": 120, "y2": 30, "W": 64, "H": 48}),  # outside after clipping
                {"bbox": {"x1": 0, "y1": 0, "x2": 10, "y2": 10}},  # no cap and no category: malformed
                _seg({"x1": 0, "y1": 0, "x2": 2, "y2": 2}),  # small (< 4**2)
            ],
        },
        {"global_filepath": "missing.png", "global_caption": "gone", "segment": [_seg(good)]},
        {"global_filepath": "ok2.png", "global_caption": "", "detailed_caption": "item two long", "segment": [_seg(good)]},
        {"global_filepath": "bad.png", "global_caption": "corrupt", "segment": [_seg(good)]},
        {"global_filepath": "ok2.png", "segment": [_seg(good)]},  # no caption at all
    ]
    (tmp_path / "text_info.json").write_text(json.dumps(items))
    ds = _ds(tmp_path / "text_info.json", tmp_path)
    with caplog.at_level(logging.WARNING, logger="farslip_ext.data.datasets"):
        a = ds[0]
        b = ds[1]  # missing image -> the next readable item (2)
        c = ds[3]  # corrupt image, then no caption -> wraps around to item 0
    assert a["global_text"] == "item zero" and b["global_text"] == "item two long"
    assert c["global_text"] == "item zero"
    assert a["boxes"][:, 4].tolist() == [1, 0, 0, 0]
    st = ds.stats
    assert st["seen"] == 6 and st["yielded"] == 3
    assert st["skipped_missing"] == 1 and st["skipped_corrupt"] == 1 and st["skipped_no_caption"] == 1
    assert st["dropped_boxes_malformed"] == 6  # 3 per read of item 0
    assert st["dropped_boxes_outside"] == 2 and st["dropped_boxes_small"] == 2
    assert st["dropped_boxes"] == 10
    assert "missing.png" in caplog.text and "bad.png" in caplog.text
    ds.reset_stats()
    assert all(v == 0 for v in ds.stats.values())


def test_annotated_size_rescales_and_order_fallback_is_logged(tmp_path, caplog):
    _img(tmp_path / "a.png", w=64, h=48)
    items = [{
        "global_filepath": "a.png",
        "global_caption": "c",
        "segment": [
            _seg({"x1": 0, "y1": 0, "x2": 64, "y2": 48, "W": 128, "H": 96}),  # annotated at 2x
            _seg({"p": 32, "q": 24, "r": 64, "s": 48, "t": 64, "u": 48}, "road", 5),  # no names: insertion order
        ],
    }]
    (tmp_path / "t.json").write_text(json.dumps(items))
    ds = _ds(tmp_path / "t.json", tmp_path)
    with caplog.at_level(logging.WARNING, logger="farslip_ext.data.datasets"):
        out = ds[0]
    torch.testing.assert_close(out["boxes"][0], torch.tensor([0, 0, 0.5, 0.5, 1.0]), rtol=0, atol=1e-7)
    torch.testing.assert_close(out["boxes"][1], torch.tensor([0.5, 0.5, 1, 1, 1.0]), rtol=0, atol=1e-7)
    assert ds.stats["rescaled_boxes"] == 1 and ds.stats["bbox_order_fallback"] == 1
    assert "insertion order" in caplog.text


def test_cap_text_label_and_tokenized_padding(tmp_path):
    _img(tmp_path / "a.png")
    good = {"x1": 0, "y1": 0, "x2": 20, "y2": 20, "W": 64, "H": 48}
    items = [{"global_filepath": "a.png", "global_caption": "an aerial image",
              "segment": [_seg(good, "water", 3), _seg(good, "road", 5, cap="a narrow road")]}]
    (tmp_path / "t.json").write_text(json.dumps(items))
    tok = open_clip.get_tokenizer("farslip-test-tiny")
    out = _ds(tmp_path / "t.json", tmp_path, tokenizer=tok)[0]
    assert out["local_categories"].tolist() == [3, -1, -1, -1]
    torch.testing.assert_close(out["local_texts"][:2], tok(["a satellite image of water", "a narrow road"]))
    assert torch.count_nonzero(out["local_texts"][2:]) == 0
    torch.testing.assert_close(out["global_text"], tok(["an aerial image"])[0])
    long_out = _ds(tmp_path / "t.json", tmp_path, tokenizer="farslip-vitb16")[0]
    assert long_out["global_text"].shape == (248,) and long_out["local_texts"].shape == (4, 248)


def test_synthetic_mgrs_roundtrip_matches_scene_boxes(tmp_path):
    path = syn.write_mgrs(tmp_path, 4, seed=11, size=64, image_format="png", cap_every=3)
    ds = TRAIN_DATASETS.build(dict(type="MGRSJsonDataset", json_path=str(path), image_root=str(tmp_path / "global_imgs"),
                             image_size=S, min_size=1, max_boxes=8, shuffle_boxes=False,
                             transform=dict(type="SquashTransform", image_size=S),
                             region_transform=dict(type="SquashTransform", image_size=S)))
    assert len(ds) == 4
    items = json.loads(path.read_text())
    for i in range(4):
        scene = syn.make_scene(syn.scene_seed(11, i), 64)
        out = ds[i]
        n = len(scene.regions)
        exp = torch.tensor([[*(c / 64 for c in r.box), 1.0] for r in scene.regions], dtype=torch.float32)
        torch.testing.assert_close(out["boxes"][:n], exp, rtol=0, atol=1e-7)
        assert torch.count_nonzero(out["boxes"][n:]) == 0
        cats = [(-1 if "cap" in seg else seg["category_id"]) for seg in items[i]["segment"]]
        assert out["local_categories"][:n].tolist() == cats
        assert out["global_text"] == scene.caption
    long_ds = _ds(path, tmp_path / "global_imgs", caption_keys=("detailed_caption",))
    assert long_ds[0]["global_text"] == syn.make_scene(syn.scene_seed(11, 0), 64).long_caption
    assert ds.stats["skipped_missing"] == 0 and ds.stats["dropped_boxes"] == 0


def test_default_transforms_and_loader(tmp_path):
    path = syn.write_mgrs(tmp_path, 4, seed=1, size=64)
    ds = MGRSJsonDataset(path, tmp_path / "global_imgs", image_size=S, min_size=8, tokenizer="farslip-test-tiny")
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=ds.collate_fn)
    batch = next(iter(loader))
    assert batch["global_image"].shape == (2, 3, S, S) and batch["local_images"].shape == (2, 4, 3, S, S)
    assert batch["local_texts"].shape == (2, 4, 77) and batch["boxes"].shape == (2, 4, 5)
    assert math.isclose(float(batch["boxes"][..., 4].max()), 1.0)


def test_bad_json_is_an_error(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"not": "a list"}))
    with pytest.raises(ValueError, match="JSON list"):
        MGRSJsonDataset(tmp_path / "t.json", tmp_path)
