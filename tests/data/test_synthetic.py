"""Synthetic aerial scenes: determinism, exact mask/box consistency, captions, textures, writers."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import farslip_ext.data  # noqa: F401
from farslip_ext.data import synthetic as syn


def test_same_seed_same_scene_and_different_seed_different_scene():
    a, b = syn.make_scene(5, 64), syn.make_scene(5, 64)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert np.array_equal(a.instances, b.instances)
    assert a.regions == b.regions and a.caption == b.caption and a.long_caption == b.long_caption
    c = syn.make_scene(6, 64)
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (64, 64, 3) and a.image.dtype == np.uint8 and a.to_pil().size == (64, 64)


@pytest.mark.parametrize("seed", range(12))
def test_masks_boxes_and_labels_are_consistent(seed):
    s = syn.make_scene(seed, 64)
    assert s.mask.shape == s.instances.shape == (64, 64)
    assert set(np.unique(s.instances)) == set(range(len(s.regions))) | ({-1} if (s.instances == -1).any() else set())
    for k, r in enumerate(s.regions):
        ys, xs = np.nonzero(s.instances == k)
        assert r.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)  # tight, end exclusive
        assert r.area == len(ys) and r.area >= int(0.005 * 64 * 64)
        assert np.all(s.mask[ys, xs] == r.category_id) and syn.CLASSES[r.category_id] == r.category
        x1, y1, x2, y2 = r.box
        assert 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 64
    counts = np.bincount(s.mask.ravel(), minlength=len(syn.CLASSES))
    assert s.scene_label == syn.CLASSES[int(np.argmax(counts))]
    assert abs(sum(s.coverage.values()) - 1) < 1e-9
    assert syn._PHRASE[s.scene_label] in s.caption and syn._PHRASE[s.scene_label] in s.long_caption
    assert len(s.long_caption) > len(s.caption)


@pytest.mark.parametrize("cls", syn.CLASSES)
def test_forced_dominant_class_is_the_scene_label(cls):
    for seed in range(3):
        s = syn.make_scene(seed, 48, dominant=cls)
        assert s.scene_label == cls and s.coverage[cls] >= 0.5


def test_classes_have_distinct_colour_statistics():
    """Each class has its own mean colour (or, for look-alikes, its own texture contrast)."""
    feats = {}
    for c in syn.CLASSES:
        px = np.concatenate([syn.make_scene(100 + i, 64, dominant=c, num_objects=0).image.reshape(-1, 3) for i in range(2)])
        feats[c] = np.concatenate([px.mean(0), px.std(0)]).astype(np.float64)
    names = list(feats)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.linalg.norm(feats[a] - feats[b]) > 15, (a, b, feats[a], feats[b])


def test_unknown_class_is_an_error():
    with pytest.raises(ValueError, match="unknown class"):
        syn.make_scene(0, 64, dominant="glacier")


def _tree_bytes(root: Path):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_writers_are_byte_deterministic(tmp_path):
    for d in ("a", "b"):
        root = tmp_path / d
        syn.write_rs5m_shards(root / "rs5m", 5, shard_size=2, seed=1, size=32)
        syn.write_mgrs(root / "mgrs", 3, seed=1, size=32, cap_every=2)
        syn.write_skyscript_csv(root / "sky", 3, seed=1, size=32)
        syn.write_classification_csv(root / "cls", 1, seed=1, size=32, classes=("forest", "road"))
    a, b = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    assert a.keys() == b.keys() and a == b
    assert sorted(k for k in a if k.startswith("rs5m")) == [f"rs5m/synthetic-train-000{i}.tar" for i in range(3)]
    assert {"mgrs/text_info.json", "sky/skyscript_val.csv", "cls/test.csv", "cls/classnames.txt"} <= a.keys()
    other = tmp_path / "c"
    syn.write_mgrs(other, 3, seed=2, size=32)
    assert (other / "text_info.json").read_bytes() != a["mgrs/text_info.json"]


def test_mgrs_json_schema(tmp_path):
    path = syn.write_mgrs(tmp_path, 3, seed=4, size=64, cap_every=2, image_format="png")
    items = json.loads(path.read_text())
    assert len(items) == 3
    for i, it in enumerate(items):
        scene = syn.make_scene(syn.scene_seed(4, i), 64)
        assert (tmp_path / "global_imgs" / it["global_filepath"]).is_file()
        assert it["global_caption"] == scene.caption and it["detailed_caption"] == scene.long_caption
        assert len(it["segment"]) == len(scene.regions)
        for seg, r in zip(it["segment"], scene.regions):
            assert list(seg["bbox"]) == ["x1", "y1", "x2", "y2", "W", "H"]
            assert list(seg["bbox"].values()) == [*r.box, 64, 64]
            assert seg["category"] == r.category and seg["category_id"] == r.category_id
    caps = [seg["cap"] for it in items for seg in it["segment"] if "cap" in seg]
    assert caps and all(" part of the image" in c for c in caps)
    # PNG keeps the pixels exactly
    from PIL import Image

    first = np.asarray(Image.open(tmp_path / "global_imgs" / items[0]["global_filepath"]))
    assert np.array_equal(first, syn.make_scene(syn.scene_seed(4, 0), 64).image)
