"""Downloads and caches: verified converted-weights cache, URL sources, archives, offline behaviour."""
from __future__ import annotations

import json
import zipfile

import pytest
import torch

import farslip_ext
from farslip_ext import hub
from farslip_ext.catalogue import PretrainedEntry
from tests.helpers.checkpoints import make_hub_cache, random_state_dict, save_container


def _entry(**d):
    return PretrainedEntry.from_dict("farslip-test-tiny", "t1", d)


def test_truncated_converted_cache_is_rebuilt(tmp_path, hf_cache, farslip_cache, caplog):
    sd = random_state_dict("farslip-test-tiny", seed=21)
    src = save_container(sd, tmp_path / "tiny.pt", "bare")
    make_hub_cache(hf_cache, "farslip-test/tiny", {"tiny.pt": src})
    entry = _entry(hf_hub_id="farslip-test/tiny", hf_hub_filename="tiny.pt")
    path, info = hub.fetch_converted(entry)
    assert info["size"] == path.stat().st_size and len(info["sha256"]) == 64
    from safetensors.torch import load_file

    good = {k: v.clone() for k, v in load_file(str(path)).items()}
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a full disk, a killed copy ...
    again, info2 = hub.fetch_converted(entry)
    assert again == path and "do not match their record" in caplog.text
    assert info2["sha256"] == hub.sha256_file(again)
    rebuilt = load_file(str(again))
    assert rebuilt.keys() == good.keys() and all(torch.equal(rebuilt[k], good[k]) for k in good)
    # a corrupt sidecar is not trusted either
    path.with_suffix(".json").write_text("{not json")
    path3, info3 = hub.fetch_converted(entry)
    assert info3["sha256"] == hub.sha256_file(path3)


def test_unreadable_safetensors_names_the_file(tmp_path):
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(farslip_ext.CheckpointFormatError, match=rf"{bad} is not a readable safetensors file"):
        farslip_ext.load("farslip-test-tiny", str(bad))


def test_url_entry_offline_gives_instructions(farslip_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    entry = _entry(url="https://example.invalid/weights/tiny.pt")
    with pytest.raises(farslip_ext.WeightsNotAvailableError, match=r"downloads are off.*put it at .*tiny\.pt"):
        hub.fetch(entry)


def test_url_entry_from_the_download_cache_with_archive(tmp_path, farslip_cache):
    sd = random_state_dict("farslip-test-tiny", seed=22)
    inner = save_container(sd, tmp_path / "epoch_20.pt", "state_dict")
    entry = _entry(url="https://example.invalid/ckpt/tiny.zip", archive_member="run/epoch_20.pt")
    cached = hub._url_cache_path(entry, None)
    cached.parent.mkdir(parents=True)
    with zipfile.ZipFile(cached, "w") as zf:
        zf.write(inner, "run/epoch_20.pt")
    path = hub.fetch(entry)
    assert path.name == "epoch_20.pt" and path.read_bytes() == inner.read_bytes()
    lm = farslip_ext.load("farslip-test-tiny", str(path))
    assert torch.equal(lm.model.state_dict()["text_projection"], sd["text_projection"])


@pytest.mark.parametrize("member", ["../../escape.pt", "/abs/escape.pt"])
def test_archive_members_cannot_escape_the_cache(tmp_path, member):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(member, b"x")
    with pytest.raises(farslip_ext.WeightsNotAvailableError, match="refusing to extract"):
        hub.extract_member(archive, member, tmp_path / "out" / "escape.pt")
    assert not (tmp_path / "escape.pt").exists()


def test_manual_entry_explains_how_to_get_the_file():
    entry = _entry(manual="Request the file from the authors (licence forbids redistribution).")
    with pytest.raises(farslip_ext.WeightsNotAvailableError, match=r"Request the file.*pretrained='<path"):
        hub.fetch(entry)


def test_entry_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one source"):
        _entry(url="https://x/y.pt", hf_hub_id="a/b", hf_hub_filename="y.pt")
    with pytest.raises(ValueError, match="exactly one source"):
        _entry(sha256="0" * 64)


def test_packaged_demo_weights_are_verified(tmp_path):
    from farslip_ext.catalogue import CATALOGUE

    entry = CATALOGUE.entry("farslip-demo-tiny", "demo")
    path, info = hub.fetch_converted(entry)
    assert path == hub.packaged_path(entry) and info["context_length"] == 77
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["sha256"] == entry.sha256
