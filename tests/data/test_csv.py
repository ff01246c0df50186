"""SkyScript-style CSVs (docs/reference/method.md §3.3), classification CSVs (§3.5) and the generic CSV/JSONL image-text dataset."""
from __future__ import annotations

import json

import open_clip
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

import farslip_ext.data  # noqa: F401
from farslip_ext.data import synthetic as syn
from farslip_ext.data.datasets import ImageTextDataset, SkyScriptCsvDataset, load_image, read_classnames
from farslip_ext.data.transforms import OPENAI_MEAN, OPENAI_STD
from farslip_ext.registry import TRAIN_DATASETS


def test_skyscript_csv_items_match_the_written_scenes(tmp_path):
    csv_path = syn.write_skyscript_csv(tmp_path, 5, seed=4, size=48)
    assert csv_path.read_text().splitlines()[0] == "filepath,title,label"
    ds = SkyScriptCsvDataset(csv_path, image_size=32, label_key="label")
    assert len(ds) == 5
    for i in range(5):
        scene = syn.make_scene(syn.scene_seed(4, i), 48)
        item = ds[i]
        assert item["global_text"] == scene.caption and item["label"] == scene.scene_label
        img = load_image(tmp_path / f"images/{i:08d}.jpg")
        ref = TF.normalize(TF.to_tensor(TF.center_crop(TF.resize(img, 32, InterpolationMode.BICUBIC), 32)),
                           OPENAI_MEAN, OPENAI_STD)
        torch.testing.assert_close(item["global_image"], ref, rtol=0, atol=1e-6)
    tok = open_clip.get_tokenizer("farslip-test-tiny")
    batch = ds.collate_fn([ds[0], ds[1]])
    assert batch["global_image"].shape == (2, 3, 32, 32) and batch["label"] == [ds[0]["label"], ds[1]["label"]]
    assert batch["global_text"] == [ds[0]["global_text"], ds[1]["global_text"]]  # no tokenizer: strings stay
    tds = TRAIN_DATASETS.build(dict(type="SkyScriptCsvDataset", csv=str(csv_path), image_size=32), default_args=dict(tokenizer=tok))
    torch.testing.assert_close(tds[2]["global_text"], tok([syn.make_scene(syn.scene_seed(4, 2), 48).caption])[0])


def test_classification_csv_labels_and_classnames(tmp_path):
    csv_path, names_path = syn.write_classification_csv(tmp_path, 1, seed=0, size=32, classes=("forest", "water", "road"))
    assert read_classnames(names_path) == ["forest", "water", "road"]
    ds = ImageTextDataset(csv_path, caption_key=None, label_key="label", image_size=32)
    labels = [ds[i]["label"] for i in range(len(ds))]
    assert labels == [0, 1, 2] and all(isinstance(v, int) for v in labels)
    assert "global_text" not in ds[0]
    batch = ds.collate_fn([ds[i] for i in range(3)])
    assert batch["label"].tolist() == [0, 1, 2] and batch["global_image"].shape == (3, 3, 32, 32)


def test_jsonl_with_custom_columns_and_missing_image(tmp_path):
    syn.write_skyscript_csv(tmp_path, 2, seed=1, size=32)  # just for the images
    rows = [
        {"image": "images/00000000.jpg", "text": "first"},
        {"image": "images/nope.jpg", "text": "missing"},
        {"image": "images/00000001.jpg", "text": "second"},
    ]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = ImageTextDataset(tmp_path / "pairs.jsonl", filepath_key="image", caption_key="text", image_size=32,
                          tokenizer="farslip-test-tiny", context_length=16)
    assert ds[1]["global_text"].shape == (16,)
    assert ds.stats == {"seen": 2, "yielded": 1, "skipped_missing": 1, "skipped_corrupt": 0}


def test_missing_column_is_a_clear_error(tmp_path):
    (tmp_path / "a.csv").write_text("filepath,caption\nx.jpg,hello\n")
    with pytest.raises(KeyError, match="'title'.*columns are"):
        SkyScriptCsvDataset(tmp_path / "a.csv")
    with pytest.raises(ValueError, match="unknown table format"):
        ImageTextDataset(tmp_path / "a.csv", fmt="parquet")


def test_all_unreadable_raises_after_max_skip(tmp_path):
    (tmp_path / "a.csv").write_text("filepath,title\nx.jpg,a\ny.jpg,b\n")
    ds = SkyScriptCsvDataset(tmp_path / "a.csv", image_size=32)
    with pytest.raises(RuntimeError, match="unreadable"):
        ds[0]
    assert ds.stats["skipped_missing"] == 2
    with pytest.raises(IndexError):
        ds[2]
