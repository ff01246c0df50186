"""RS5M webdataset stream (docs/reference/method.md §3.1): members, deterministic shuffles, node/worker split, skip counters (§7.19)."""
from __future__ import annotations

import logging
import tarfile

import open_clip
import pytest
import torch
import webdataset as wds
from torch.utils.data import DataLoader

import farslip_ext.data  # noqa: F401
from farslip_ext.data import synthetic as syn
from farslip_ext.data.rs5m import RS5MWebDataset
from farslip_ext.data.transforms import SquashTransform
from farslip_ext.registry import TRAIN_DATASETS

SIZE = 32


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("rs5m")
    return [str(p) for p in syn.write_rs5m_shards(out, 12, shard_size=3, seed=3, size=SIZE)]


def _captions(n=12, seed=3):
    return [syn.make_scene(syn.scene_seed(seed, i), SIZE).caption for i in range(n)]


def _ds(urls, **kw):
    kw.setdefault("transform", SquashTransform(SIZE))
    return RS5MWebDataset(urls, image_size=SIZE, **kw)


def test_shard_members_are_the_rs5m_layout(shards):
    with tarfile.open(shards[0]) as tf:
        names = tf.getnames()
        assert names[:3] == ["00000000.caption", "00000000.img_content", "00000000.img_name"]
        assert tf.extractfile("00000000.img_name").read() == b"synthetic_00000000.jpg"
        assert tf.extractfile("00000000.caption").read().decode() == _captions(1)[0]
        assert tf.extractfile("00000000.img_content").read()[:2] == b"\xff\xd8"  # JPEG


def test_unshuffled_stream_yields_every_sample_in_order(shards):
    ds = _ds(shards, shuffle=False, keep_name=True)
    items = list(ds)
    assert [s["img_name"] for s in items] == [f"synthetic_{i:08d}.jpg" for i in range(12)]
    assert [s["global_text"] for s in items] == _captions()
    assert items[0]["global_image"].shape == (3, SIZE, SIZE)
    assert ds.stats == {"seen": 12, "yielded": 12, "skipped_missing": 0, "skipped_no_caption": 0, "skipped_corrupt": 0,
                        "shard_errors": 0}


def test_shuffles_are_deterministic_per_seed_and_epoch(shards):
    ds = _ds(shards, seed=7, shuffle_buffer=6, shuffle_initial=3, keep_name=True)
    first = [s["img_name"] for s in ds]
    again = [s["img_name"] for s in ds]
    assert first == again and sorted(first) == [f"synthetic_{i:08d}.jpg" for i in range(12)]
    assert first != [f"synthetic_{i:08d}.jpg" for i in range(12)]
    orders = {tuple(ds.shard_order(e)) for e in range(4)}
    assert len(orders) > 1  # the shard order changes with the epoch
    ds.set_epoch(3)
    assert ds.epoch == 3 and ds.shard_order() == ds.shard_order(3)
    other = _ds(shards, seed=7, epoch=3, shuffle_buffer=6, shuffle_initial=3, keep_name=True)
    assert [s["img_name"] for s in ds] == [s["img_name"] for s in other]


def test_split_by_node(shards, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    seen = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        ds = _ds(shards, seed=1, keep_name=True)
        order = ds.shard_order()
        names = [s["img_name"] for s in ds]
        expected_shards = order[rank::2]
        assert len(names) == 3 * len(expected_shards)
        expected = {f"synthetic_{int(p[-8:-4]) * 3 + k:08d}.jpg" for p in expected_shards for k in range(3)}
        assert set(names) == expected
        seen += names
    assert sorted(seen) == [f"synthetic_{i:08d}.jpg" for i in range(12)]


def test_too_few_shards_for_the_ranks_is_an_error(shards, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ValueError, match="got no shard"):
        list(_ds(shards[:1]))
    assert list(_ds(shards[:1], require_enough_shards=False)) == []


def test_dataloader_workers_split_shards(shards):
    tok = open_clip.get_tokenizer("farslip-test-tiny")
    ds = _ds(shards, shuffle=False, tokenizer=tok)
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=ds.collate_fn)
    batches = list(loader)
    assert len(batches) == 4
    texts = torch.cat([b["global_text"] for b in batches])
    assert texts.shape == (12, 77)
    expected = tok(_captions())
    got = sorted(map(tuple, texts.tolist()))
    assert got == sorted(map(tuple, expected.tolist()))


def test_default_multicrop_batches_in_pipeline(shards):
    ds = TRAIN_DATASETS.build(dict(type="RS5MWebDataset", urls=shards, image_size=SIZE, batch_size=5, shuffle=False),
                        default_args=dict(tokenizer="farslip-test-tiny"))
    batches = list(ds)
    assert len(batches) == 2  # 12 samples, partial batch dropped
    b = batches[0]
    assert b["global_image"].shape == (5, 3, SIZE, SIZE)
    assert b["subset_images"].shape == (5, 4, 3, SIZE, SIZE)
    assert b["subset_boxes"].shape == (5, 4, 5) and torch.all(b["subset_boxes"][..., 4] == 1)
    assert b["global_text"].shape == (5, 77)


def test_brace_notation(shards):
    pattern = shards[0].replace("0000.tar", "{0000..0003}.tar")
    assert _ds(pattern).urls == shards


def _write_corrupt_shard(path):
    scenes = [syn.make_scene(syn.scene_seed(9, i), SIZE) for i in range(5)]
    with wds.TarWriter(str(path), encoder=False, mtime=0.0) as tw:
        for i, sc in enumerate(scenes):
            img = syn.encode_image(sc.image, "jpeg")
            sample = {"__key__": f"{i:04d}", "img_content": img, "img_name": f"{i}.jpg".encode(), "caption": sc.caption.encode()}
            if i == 1:
                sample["img_content"] = img[: len(img) // 2]  # truncated image
            if i == 3:
                del sample["caption"]  # missing member
            tw.write(sample)
    return [sc.caption for sc in scenes]


def test_truncated_image_and_missing_caption_are_skipped_and_counted(tmp_path, caplog):
    caps = _write_corrupt_shard(tmp_path / "bad-0000.tar")
    ds = _ds([str(tmp_path / "bad-0000.tar")], shuffle=False)
    with caplog.at_level(logging.WARNING, logger="farslip_ext.data.rs5m"):
        items = list(ds)
    assert [s["global_text"] for s in items] == [caps[0], caps[2], caps[4]]
    assert ds.stats == {"seen": 5, "yielded": 3, "skipped_missing": 1, "skipped_no_caption": 0, "skipped_corrupt": 1,
                        "shard_errors": 0}
    assert "'0003'" in caplog.text and "'caption'" in caplog.text and "'0001'" in caplog.text


def test_truncated_shard_and_missing_file_do_not_crash(tmp_path, shards):
    data = open(shards[0], "rb").read()
    (tmp_path / "cut-0000.tar").write_bytes(data[: len(data) // 2])
    urls = [str(tmp_path / "cut-0000.tar"), str(tmp_path / "absent-0000.tar"), shards[1]]
    ds = _ds(urls, shuffle=False, keep_name=True)
    items = list(ds)
    st = ds.stats
    assert st["shard_errors"] == 2  # the truncated tar and the missing file
    assert st["seen"] == st["yielded"] + st["skipped_missing"] + st["skipped_corrupt"]
    names = [s["img_name"] for s in items]
    assert names[-3:] == [f"synthetic_{i:08d}.jpg" for i in (3, 4, 5)]  # the intact shard is read in full
    with pytest.raises(Exception):
        list(_ds(urls, shuffle=False, handler=wds.reraise_exception))


def test_empty_and_blank_captions_are_skipped_and_counted(tmp_path, caplog):
    scenes = [syn.make_scene(syn.scene_seed(11, i), SIZE) for i in range(5)]
    blanks = {1: b"", 2: b"   ", 4: " \n\t\u3000".encode("utf-8")}
    with wds.TarWriter(str(tmp_path / "blank-0000.tar"), encoder=False, mtime=0.0) as tw:
        for i, sc in enumerate(scenes):
            tw.write({"__key__": f"{i:04d}", "img_content": syn.encode_image(sc.image, "jpeg"),
                      "img_name": f"{i}.jpg".encode(), "caption": blanks.get(i, sc.caption.encode())})
    ds = _ds([str(tmp_path / "blank-0000.tar")], shuffle=False)
    with caplog.at_level(logging.WARNING, logger="farslip_ext.data.rs5m"):
        items = list(ds)
    assert [s["global_text"] for s in items] == [scenes[0].caption, scenes[3].caption]
    assert ds.stats == {"seen": 5, "yielded": 2, "skipped_missing": 0, "skipped_no_caption": 3, "skipped_corrupt": 0,
                        "shard_errors": 0}
    assert "'0001'" in caplog.text and "empty or blank 'caption'" in caplog.text and "blank-0000.tar" in caplog.text
    assert ds.pass_stats()["skipped_no_caption"] == 3


def test_shard_urls_are_checked_when_the_dataset_is_built(tmp_path, shards, caplog):
    from farslip_ext.errors import DataError

    folder = shards[0].rsplit("/", 1)[0]
    with pytest.raises(DataError, match=r"synthetic-trian-\{0000..0003\}.tar.*4 missing.*did you mean"):
        _ds(f"{folder}/synthetic-trian-{{0000..0003}}.tar")
    with pytest.raises(DataError, match=r"the folder .*nowhere does not exist"):
        _ds([f"{folder}/nowhere/a-0000.tar", f"{folder}/nowhere/a-0001.tar"])
    (tmp_path / "zero-0000.tar").write_bytes(b"")
    with pytest.raises(DataError, match=r"1 empty, 0 bytes"):
        _ds(str(tmp_path / "zero-0000.tar"))
    with caplog.at_level(logging.WARNING, logger="farslip_ext.data.rs5m"):  # some missing: a warning, not an error
        ds = _ds([shards[0], f"{folder}/synthetic-train-9999.tar"], shuffle=False)
    assert "1 of the 2 shard(s)" in caplog.text and len(ds.urls) == 2
