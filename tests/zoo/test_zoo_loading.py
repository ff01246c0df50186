"""Each baseline family's release format, fabricated (tiny stand-in architecture, same repository, file,
subfolder, revision, URL and archive member as the real entry) in a hand-made offline Hub cache or the
URL download cache, loads strictly through stock ``open_clip.create_model(arch, pretrained=tag)``."""
from __future__ import annotations

import hashlib

import open_clip
import pytest
import torch

import farslip_ext
from farslip_ext import hub
from farslip_ext.catalogue import CATALOGUE, PretrainedEntry
from open_clip.model import QuickGELU
from tests.helpers.checkpoints import make_hub_cache
from tests.helpers.zoo_fixtures import (
    farslip_training_file,
    georsclip_file,
    lrsclip_file,
    real_entry,
    register_standin,
    register_tiny_gelu,
    remoteclip_file,
    sha256,
    skyclip_zip,
)

TINY, TINY_LONG = "farslip-test-tiny", "farslip-test-tiny-long"


def _quick_gelu(model) -> bool:
    acts = {type(m) for m in model.modules() if isinstance(m, (QuickGELU, torch.nn.GELU))}
    assert len(acts) == 1, acts
    return acts == {QuickGELU}


def _assert_loaded(model, want):
    got = model.state_dict()
    assert set(got) == set(want)
    for k, v in want.items():
        assert torch.equal(got[k], v), k


def _hub_cache_for(real, files, cache):
    """The real entry's repository / revision in a hand-made cache (a pinned revision is the snapshot)."""
    rev = real["revision"] if len(real.get("revision", "")) == 40 else None
    return make_hub_cache(cache, real["hf_hub_id"], files, revision_hex=rev)


@pytest.mark.parametrize("arch", ["ViT-B-32", "ViT-L-14"])
def test_remoteclip_bare_state_dict(tmp_path, hf_cache, farslip_cache, arch):
    gelu = register_tiny_gelu(tmp_path / "cfg")
    real = real_entry(arch, "remoteclip")
    src = tmp_path / real["hf_hub_filename"]
    want = remoteclip_file(gelu, src, seed=31)
    _hub_cache_for(real, {real["hf_hub_filename"]: src}, hf_cache)
    register_standin(arch, "remoteclip", gelu, sha256=sha256(src))  # the real revision, the fabricated file's hash
    model = open_clip.create_model(gelu, pretrained="remoteclip")
    _assert_loaded(model, want)
    assert not _quick_gelu(model) and model.context_length == 77
    register_standin(arch, "remoteclip", gelu, as_tag="remoteclip_pub", sha256=real["sha256"])  # the published hash refuses the stand-in
    with pytest.raises(farslip_ext.ChecksumError, match=real["sha256"]):
        open_clip.create_model(gelu, pretrained="remoteclip_pub")


@pytest.mark.parametrize("arch", ["ViT-B-32", "ViT-L-14", "ViT-H-14"])
def test_georsclip_file_in_a_hub_subfolder(tmp_path, hf_cache, farslip_cache, arch):
    gelu = register_tiny_gelu(tmp_path / "cfg")
    real = real_entry(arch, "georsclip")
    assert real["hf_hub_filename"].startswith("ckpt/")
    src = tmp_path / "RS5M.pt"
    want = georsclip_file(gelu, src, seed=32)
    snap = _hub_cache_for(real, {real["hf_hub_filename"]: src}, hf_cache)
    assert (snap / "ckpt").is_dir()
    register_standin(arch, "georsclip", gelu)
    model = open_clip.create_model(gelu, pretrained="georsclip")
    _assert_loaded(model, want)
    assert not _quick_gelu(model)


@pytest.mark.parametrize("arch,quick", [("ViT-B-32", False), ("ViT-L-14-quickgelu", True)])
def test_skyclip_zip_with_a_training_checkpoint(tmp_path, farslip_cache, arch, quick):
    tiny = TINY if quick else register_tiny_gelu(tmp_path / "cfg")
    real = real_entry(arch, "skyclip_top50pct")
    d = register_standin(arch, "skyclip_top50pct", tiny)
    entry = PretrainedEntry.from_dict(tiny, "skyclip_top50pct", d)
    archive = hub._url_cache_path(entry, None)  # where a download of the real URL lands
    want = skyclip_zip(tiny, archive, real["archive_member"], seed=33)
    model = open_clip.create_model(tiny, pretrained="skyclip_top50pct")
    _assert_loaded(model, want)
    assert _quick_gelu(model) is quick
    # with a sha256 the archive is verified (and cached under that hash)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    d2 = register_standin(arch, "skyclip_top50pct", tiny, as_tag="skyclip_sha", sha256=digest)
    pinned = hub._url_cache_path(PretrainedEntry.from_dict(tiny, "skyclip_sha", d2), None)
    pinned.parent.mkdir(parents=True)
    pinned.write_bytes(archive.read_bytes())
    _assert_loaded(open_clip.create_model(tiny, pretrained="skyclip_sha"), want)
    register_standin(arch, "skyclip_top50pct", tiny, as_tag="skyclip_bad", sha256="0" * 64)
    bad = hub._url_cache_path(CATALOGUE.entry(tiny, "skyclip_bad"), None)
    bad.parent.mkdir(parents=True)
    bad.write_bytes(archive.read_bytes())
    with pytest.raises(farslip_ext.ChecksumError):
        open_clip.create_model(tiny, pretrained="skyclip_bad")


def test_skyclip_offline_without_the_archive_names_the_url(farslip_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    real = real_entry("ViT-L-14-quickgelu", "skyclip_top50pct")
    register_standin("ViT-L-14-quickgelu", "skyclip_top50pct", TINY)
    with pytest.raises(farslip_ext.WeightsNotAvailableError, match=real["url"].replace(".", r"\.")):
        open_clip.create_model(TINY, pretrained="skyclip_top50pct")


def test_lrsclip_two_table_longclip_without_masks(tmp_path, hf_cache, farslip_cache):
    real = real_entry("farslip-vitb16-longclip", "lrsclip")
    src = tmp_path / real["hf_hub_filename"]
    want = lrsclip_file(TINY_LONG, src, seed=34)
    assert "mask1" not in torch.load(src, weights_only=True)
    _hub_cache_for(real, {real["hf_hub_filename"]: src}, hf_cache)
    register_standin("farslip-vitb16-longclip", "lrsclip", TINY_LONG)
    model = open_clip.create_model(TINY_LONG, pretrained="lrsclip")
    _assert_loaded(model, want)
    assert _quick_gelu(model) and model.context_length == 248
    assert open_clip.get_tokenizer(TINY_LONG).context_length == 248


@pytest.mark.parametrize("arch,tag,long_clip", [("farslip-vitb16", "s2", True), ("farslip-vitb32", "s1", False),
                                                ("farslip-vitb32-ctx248", "s2", True),
                                                ("farslip-vitb16-ctx77", "s1", False)])
def test_farslip_training_dicts(tmp_path, hf_cache, farslip_cache, arch, tag, long_clip):
    tiny = TINY_LONG if long_clip else TINY
    real = real_entry(arch, tag)
    src = tmp_path / real["hf_hub_filename"]
    want = farslip_training_file(tiny, src, seed=35, long_clip=long_clip)
    _hub_cache_for(real, {real["hf_hub_filename"]: src}, hf_cache)
    register_standin(arch, tag, tiny)
    model = open_clip.create_model(tiny, pretrained=tag)
    _assert_loaded(model, want)
    assert _quick_gelu(model) and model.context_length == (248 if long_clip else 77)


@pytest.mark.parametrize("arch", ["farslip-vitb16-vc", "farslip-vitb32-vc"])
def test_farslip2_vc_is_a_user_supplied_file(tmp_path, arch):
    with pytest.raises(farslip_ext.WeightsNotAvailableError, match=r"FarSLIP2_VC_ViT-B-\d\d\.pt.*pretrained='<path"):
        open_clip.create_model(arch, pretrained="s2")
    # the file, once the user has it, loads into the 77-token QuickGELU architecture (tiny stand-in here)
    src = tmp_path / "FarSLIP2_VC.pt"
    want = farslip_training_file(TINY, src, seed=36, long_clip=False)
    lm = farslip_ext.load(TINY, str(src))
    _assert_loaded(lm.model, want)
    assert lm.context_length == 77 and _quick_gelu(lm.model)


def test_farslip_ext_load_follows_the_same_entries(tmp_path, hf_cache, farslip_cache):
    """farslip_ext.load(arch, tag) and stock open_clip build the same model from one catalogue entry."""
    real = real_entry("farslip-vitb16-longclip", "lrsclip")
    src = tmp_path / real["hf_hub_filename"]
    lrsclip_file(TINY_LONG, src, seed=37)
    _hub_cache_for(real, {real["hf_hub_filename"]: src}, hf_cache)
    register_standin("farslip-vitb16-longclip", "lrsclip", TINY_LONG)
    lm = farslip_ext.load(TINY_LONG, "lrsclip")
    stock = open_clip.create_model(TINY_LONG, pretrained="lrsclip")
    for k, v in lm.model.state_dict().items():
        assert torch.equal(stock.state_dict()[k], v), k
    assert lm.tokenizer.context_length == 248 and CATALOGUE.entry(TINY_LONG, "lrsclip").source == real["source"]
