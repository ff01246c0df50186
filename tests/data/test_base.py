"""The public dataset base class (counted, logged skips for any format) and the typed batch contract."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from farslip_ext.data import (BATCH_KEYS, Batch, SkippingDataset, SkipSample, SquashTransform, UnreadableDataError,
                              check_batch, load_image)
from farslip_ext.errors import DataError
from farslip_ext.registry import TRAIN_DATASETS
from farslip_ext.train.features import COMPUTED_FEATURES


def _format(tmp_path):
    """A new format in a few lines: a text index 'image<TAB>caption'."""

    @TRAIN_DATASETS.register_module(force=True)
    class TsvPairs(SkippingDataset):
        STAT_KEYS = SkippingDataset.STAT_KEYS + ("skipped_no_caption",)

        def __init__(self, index, tokenizer=None, max_skip=100):
            super().__init__(max_skip=max_skip, tokenizer=tokenizer)
            self.rows = [line.split("\t") for line in open(index).read().splitlines()]
            self.transform = SquashTransform(32)

        def __len__(self):
            return len(self.rows)

        def item_name(self, idx):
            return self.rows[idx][0]

        def load(self, idx):
            path, caption = self.rows[idx]
            if not caption:
                raise SkipSample("skipped_no_caption", "empty caption")
            return {"global_image": self.transform(load_image(tmp_path / path)), "global_text": self.tokenize(caption)}

    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "index.tsv").write_text("ok.png\ta road\nmissing.png\ta lake\ncorrupt.png\ta field\nok.png\t\n"
                                        "ok.png\ta forest\n")
    return TsvPairs


def test_any_format_gets_counted_logged_skips(tmp_path, caplog):
    _format(tmp_path)
    ds = TRAIN_DATASETS.build(dict(type="TsvPairs", index=str(tmp_path / "index.tsv")))
    with caplog.at_level(logging.WARNING):
        items = [ds[i] for i in range(len(ds))]
    # items 1 (missing), 2 (corrupt), 3 (no caption) are each replaced by the next readable one, item 4:
    # ds[1] reads 1,2,3,4; ds[2] reads 2,3,4; ds[3] reads 3,4 -> 11 reads, 5 returned
    assert [it["global_text"] for it in items] == ["a road", "a forest", "a forest", "a forest", "a forest"]
    assert ds.stats == {"seen": 11, "yielded": 5, "skipped_missing": 1, "skipped_corrupt": 2, "skipped_no_caption": 3}
    logged = caplog.text
    assert "item 1 (missing.png) skipped, image missing" in logged and "item 2 (corrupt.png) skipped, unreadable" in logged
    assert "item 3 (ok.png) skipped (skipped_no_caption): empty caption" in logged
    ds = TRAIN_DATASETS.build(dict(type="TsvPairs", index=str(tmp_path / "index.tsv"), tokenizer="farslip-test-tiny"))
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=ds.collate_fn)))
    assert batch["global_image"].shape == (2, 3, 32, 32) and batch["global_text"].shape == (2, 77)
    check_batch(batch, ("global_image", "global_text"))


def test_all_unreadable_is_a_data_error(tmp_path):
    cls = _format(tmp_path)
    (tmp_path / "bad.tsv").write_text("missing.png\ta\ncorrupt.png\tb\n")
    ds = cls(tmp_path / "bad.tsv")
    with pytest.raises(UnreadableDataError, match="2 consecutive items from index 0 were unreadable") as err:
        ds[0]
    assert isinstance(err.value, DataError) and isinstance(err.value, RuntimeError)


def test_the_batch_contract_is_one_typed_dict():
    assert BATCH_KEYS == ("global_image", "global_text", "subset_images", "subset_boxes", "local_images",
                          "local_texts", "local_categories", "boxes", "label")
    assert set(Batch.__annotations__) == set(BATCH_KEYS)
    used = {k for spec in COMPUTED_FEATURES.values() for k in spec.batch_keys}
    assert used <= set(BATCH_KEYS)  # every feature is computed from contract keys
    with pytest.raises(DataError, match=r"lacks \['boxes'\] needed by me"):
        check_batch({"global_image": torch.zeros(1)}, ("global_image", "boxes"), needed_by="me")
