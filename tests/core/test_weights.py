"""Checkpoint conversion, strict loading and the Hugging Face download path (offline, hand-made cache)."""
from __future__ import annotations

import hashlib
import time

import open_clip
import pytest
import torch

import farslip_ext
from farslip_ext.catalogue import CATALOGUE
from farslip_ext.openclip_bridge import sync
from farslip_ext.convert import CheckpointFormatError, convert_state_dict
from tests.helpers.checkpoints import make_hub_cache, random_state_dict, save_container, to_long_clip_two_table

CONTAINERS = ["bare", "state_dict", "module", "state_dict_module", "fp16", "training"]


def _assert_params_equal(model, expected, fp16=False):
    got = model.state_dict()
    assert set(got) == set(expected)
    for k, v in expected.items():
        want = v.half().float() if fp16 and v.is_floating_point() else v
        assert torch.equal(got[k], want.to(got[k].dtype)), k


@pytest.mark.parametrize("container", CONTAINERS)
def test_tiny_containers_load_bit_identical(tmp_path, container):
    sd = random_state_dict("farslip-test-tiny", seed=1)
    path = save_container(sd, tmp_path / f"{container}.pt", container)
    model = farslip_ext.create_model("farslip-test-tiny", pretrained=str(path))
    _assert_params_equal(model, sd, fp16=container == "fp16")


@pytest.mark.parametrize("container", ["training", "fp16"])
def test_long_clip_two_table_is_folded(tmp_path, container):
    sd = random_state_dict("farslip-test-tiny-long", seed=2)
    two, expected_pe = to_long_clip_two_table(sd)
    path = save_container(two, tmp_path / "long.pt", container)
    model = farslip_ext.create_model("farslip-test-tiny-long", pretrained=str(path))
    fp16 = container == "fp16"
    want = dict(sd, positional_embedding=expected_pe)
    _assert_params_equal(model, want, fp16=fp16)
    assert model.context_length == 248


def test_fold_reproduces_two_table_text_encoding():
    """The folded model's encode_text equals the reference two-table encoding, computed by hand."""
    sd = random_state_dict("farslip-test-tiny-long", seed=4)
    two, _ = to_long_clip_two_table(sd)
    model = farslip_ext.create_model("farslip-test-tiny-long")
    model.load_state_dict(convert_state_dict(two).state_dict)
    model.eval()
    tok = open_clip.get_tokenizer("farslip-test-tiny-long")
    long_caption = " ".join(["a dense residential block next to a river with a bridge and farmland"] * 5)
    text = tok(["a satellite image of farmland", long_caption])
    assert (text[1] != 0).sum() > 40  # reaches beyond the 20 kept positions
    with torch.no_grad():
        got = model.encode_text(text)
        # Reference: token embedding + pe*mask1 + pe_res*mask2, then the same blocks, argmax pooling.
        x = torch.nn.functional.embedding(text, two["token_embedding.weight"])
        x = x + two["positional_embedding"] * two["mask1"] + two["positional_embedding_res"] * two["mask2"]
        x = model.transformer(x, attn_mask=model.attn_mask)
        x = torch.nn.functional.layer_norm(x, (x.shape[-1],), two["ln_final.weight"], two["ln_final.bias"])
        x = x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ two["text_projection"]
    torch.testing.assert_close(got, x, rtol=0, atol=1e-6)


def test_vitb16_long_clip_fp16_training_container(tmp_path):
    """A full-size seeded ViT-B/16 LongCLIP checkpoint in the reference's DDP training container."""
    sd = random_state_dict("farslip-vitb16", seed=5)
    two, expected_pe = to_long_clip_two_table(sd)
    path = save_container({k: v.half() for k, v in two.items()}, tmp_path / "b16.pt", "training")
    conv = convert_state_dict(torch.load(path, weights_only=True))
    assert conv.arch == "farslip-vitb16" and conv.long_clip_folded and conv.context_length == 248
    model = farslip_ext.create_model("farslip-vitb16", pretrained=str(path))
    want = dict(sd, positional_embedding=expected_pe)
    _assert_params_equal(model, want, fp16=True)


def test_arch_inferred_from_tensors_and_77_context():
    sd = random_state_dict("farslip-test-tiny", seed=6)
    conv = convert_state_dict({"state_dict": sd})
    assert conv.arch == "farslip-test-tiny" and conv.context_length == 77 and not conv.long_clip


def test_file_that_fits_no_architecture_names_shapes(tmp_path):
    sd = random_state_dict("farslip-test-tiny", seed=7)
    sd["visual.conv1.weight"] = torch.zeros(64, 3, 8, 8)
    with pytest.raises(CheckpointFormatError, match=r"visual.conv1.weight: \(64, 3, 8, 8\)"):
        convert_state_dict(sd)
    with pytest.raises(CheckpointFormatError, match="no state dict"):
        convert_state_dict({"epoch": 3, "optimizer": {"x": 1}, "foo": "bar"})
    with pytest.raises(CheckpointFormatError, match="mask1"):
        convert_state_dict(dict(sd, mask1=torch.ones(77, 1)))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": random_state_dict("farslip-test-tiny"), "cfg": _Unpicklable()}, path)
    with pytest.raises(CheckpointFormatError, match="weights_only"):
        farslip_ext.create_model("farslip-test-tiny", pretrained=str(path))


class _Unpicklable:
    pass


# --- the Hub path -----------------------------------------------------------------------------------


def _register_tiny_tag(repo="farslip-test/tiny", filename="tiny.pt", sha256=None, arch="farslip-test-tiny", tag="t1"):
    CATALOGUE.add_pretrained({arch: {tag: {"hf_hub_id": repo, "hf_hub_filename": filename, "revision": "main",
                                           "sha256": sha256, "quick_gelu": True}}})
    sync()


def test_stock_create_model_downloads_converts_and_loads_vitb16_s2(tmp_path, hf_cache, farslip_cache):
    """open_clip.create_model('farslip-vitb16', pretrained='s2') from a hand-made hub cache."""
    sd = random_state_dict("farslip-vitb16", seed=8)
    two, expected_pe = to_long_clip_two_table(sd)
    src = save_container({k: v.half() for k, v in two.items()}, tmp_path / "FarSLIP2_ViT-B-16.pt", "state_dict_module")
    make_hub_cache(hf_cache, "ZhenShiL/FarSLIP", {"FarSLIP2_ViT-B-16.pt": src})
    model = open_clip.create_model("farslip-vitb16", pretrained="s2")
    _assert_params_equal(model, dict(sd, positional_embedding=expected_pe), fp16=True)
    # converted once, cached
    assert len(list((farslip_cache / "converted" / "farslip-vitb16").glob("s2-*.safetensors"))) == 1


def test_tag_with_custom_cache_dir_and_sha256(tmp_path, farslip_cache):
    sd = random_state_dict("farslip-test-tiny", seed=9)
    src = save_container(sd, tmp_path / "tiny.pt", "bare")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    cache = tmp_path / "my-cache"
    make_hub_cache(cache, "farslip-test/tiny", {"tiny.pt": src})
    _register_tiny_tag(sha256=digest)
    model = farslip_ext.create_model("farslip-test-tiny", pretrained="t1", cache_dir=cache)
    _assert_params_equal(model, sd)
    _register_tiny_tag(sha256="0" * 64, tag="t2")
    with pytest.raises(farslip_ext.ChecksumError, match="expects 0000"):
        farslip_ext.create_model("farslip-test-tiny", pretrained="t2", cache_dir=cache)


def test_context_decided_by_tensors(tmp_path, hf_cache, farslip_cache):
    """A 77-token file under a 248-token arch: farslip_ext follows the file; stock open_clip gets a clear
    error instead of a silent interpolation of the text positions."""
    sd = random_state_dict("farslip-test-tiny", seed=10)  # 77 positions
    src = save_container(sd, tmp_path / "short.pt", "bare")
    make_hub_cache(hf_cache, "farslip-test/tiny", {"short.pt": src})
    _register_tiny_tag(filename="short.pt", arch="farslip-test-tiny-long", tag="s1")
    model = farslip_ext.create_model("farslip-test-tiny-long", pretrained="s1")
    assert model.context_length == 77
    _assert_params_equal(model, sd)
    with pytest.raises(farslip_ext.ContextLengthMismatch, match="force_context_length=77"):
        open_clip.create_model("farslip-test-tiny-long", pretrained="s1")
    # the fix the message names works with stock open_clip
    model = open_clip.create_model("farslip-test-tiny-long", pretrained="s1", force_context_length=77)
    _assert_params_equal(model, sd)


def test_offline_without_cache_fails_fast_with_instructions(hf_cache):
    t0 = time.perf_counter()
    with pytest.raises(farslip_ext.WeightsNotAvailableError) as err:  # the typed error survives open_clip
        open_clip.create_model("farslip-vitb16", pretrained="s2")
    assert time.perf_counter() - t0 < 5
    msg = str(err.value)
    assert "hf download ZhenShiL/FarSLIP FarSLIP2_ViT-B-16.pt" in msg and "pretrained=<file>" in msg
    with pytest.raises(farslip_ext.WeightsNotAvailableError):
        farslip_ext.create_model("farslip-vitb32", pretrained="s1")


def test_convert_never_overwrites_its_source_or_existing_files(tmp_path):
    import stat

    sd = random_state_dict("farslip-test-tiny", seed=16)
    src = save_container(sd, tmp_path / "ckpt.pt", "training")
    before = src.read_bytes()
    with pytest.raises(farslip_ext.DestinationExistsError, match="is the source file itself"):
        farslip_ext.convert_checkpoint_file(src, src, overwrite=True)
    (tmp_path / "link.pt").symlink_to(src)
    with pytest.raises(farslip_ext.DestinationExistsError, match="is the source file itself"):
        farslip_ext.convert_checkpoint_file(src, tmp_path / "link.pt", overwrite=True)
    assert src.read_bytes() == before
    dst = tmp_path / "out.safetensors"
    farslip_ext.convert_checkpoint_file(src, dst)
    assert stat.S_IMODE(dst.stat().st_mode) == 0o644  # readable by others, not safetensors' 0600
    with pytest.raises(farslip_ext.DestinationExistsError, match="already exists.*--overwrite"):
        farslip_ext.convert_checkpoint_file(src, dst)
    farslip_ext.convert_checkpoint_file(src, dst, overwrite=True)
    assert not list(tmp_path.glob("*.partial"))


def test_export_refuses_a_folder_with_files(tmp_path):
    import stat

    model = farslip_ext.create_model("farslip-test-tiny")
    out = farslip_ext.export_hub_folder(model, tmp_path / "hub", arch="farslip-test-tiny", repo_id="me/tiny")
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in out.iterdir())
    assert "hf-hub:me/tiny" in (out / "README.md").read_text()
    with pytest.raises(farslip_ext.DestinationExistsError, match="folder holds files"):
        farslip_ext.export_hub_folder(model, out, arch="farslip-test-tiny")
    farslip_ext.export_hub_folder(model, out, arch="farslip-test-tiny", overwrite=True)
