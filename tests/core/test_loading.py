"""The one loader: every source resolved once, converted at most once, typed errors, finite weights."""
from __future__ import annotations

import hashlib

import open_clip
import pytest
import torch

import farslip_ext
from farslip_ext import convert as convert_mod
from farslip_ext.catalogue import CATALOGUE
from farslip_ext.openclip_bridge import sync
from tests.helpers.checkpoints import make_hub_cache, random_state_dict, save_container, to_long_clip_two_table


@pytest.fixture
def conversions(monkeypatch):
    """Counts conversions: every conversion of a checkpoint object infers (checks) its architecture once."""
    calls = []
    orig = convert_mod.infer_arch

    def spy(sd, candidates=None):
        calls.append(candidates)
        return orig(sd, candidates)

    monkeypatch.setattr(convert_mod, "infer_arch", spy)
    return calls


def _tag(arch, tag, repo, filename, sha256=None, **extra):
    CATALOGUE.add_pretrained({arch: {tag: dict(hf_hub_id=repo, hf_hub_filename=filename, sha256=sha256, **extra)}})
    sync()


def test_tag_is_converted_once_and_then_read_from_the_cache(tmp_path, hf_cache, farslip_cache, conversions):
    sd = random_state_dict("farslip-test-tiny-long", seed=11)
    two, pe = to_long_clip_two_table(sd)
    src = save_container(two, tmp_path / "long.pt", "training")
    make_hub_cache(hf_cache, "farslip-test/long", {"long.pt": src})
    _tag("farslip-test-tiny-long", "t1", "farslip-test/long", "long.pt", context_length=248)
    lm = farslip_ext.load("farslip-test-tiny-long", "t1")
    assert len(conversions) == 1
    assert lm.arch == "farslip-test-tiny-long" and lm.context_length == 248 and lm.tokenizer.context_length == 248
    torch.testing.assert_close(lm.model.positional_embedding, pe, rtol=0, atol=0)
    assert not lm.model.training and not any(p.requires_grad for p in lm.model.parameters())
    again = farslip_ext.load("farslip-test-tiny-long", "t1")
    assert len(conversions) == 1  # the cached safetensors is loaded as is
    # stock open_clip uses the same converted file, without converting again
    stock = open_clip.create_model("farslip-test-tiny-long", pretrained="t1")
    assert len(conversions) == 1
    for k, v in again.model.state_dict().items():
        assert torch.equal(stock.state_dict()[k], v), k


def test_file_without_architecture_is_converted_once(tmp_path, conversions):
    sd = random_state_dict("farslip-test-tiny", seed=12)
    path = save_container(sd, tmp_path / "ckpt.pt", "state_dict_module")
    lm = farslip_ext.load(str(path))
    assert len(conversions) == 1 and conversions[0] is None  # inferred among the catalogue's architectures
    assert lm.arch == "farslip-test-tiny" and lm.context_length == 77
    for k, v in sd.items():
        assert torch.equal(lm.model.state_dict()[k], v), k


def test_stock_open_clip_keeps_cache_dir_and_typed_errors(tmp_path, farslip_cache):
    """``open_clip.create_model(arch, pretrained=tag, cache_dir=X)`` downloads into X (here: resolves from X
    offline) and a checksum failure reaches the caller as farslip_ext.ChecksumError."""
    sd = random_state_dict("farslip-test-tiny", seed=13)
    src = save_container(sd, tmp_path / "tiny.pt", "bare")
    cache = tmp_path / "my-cache"
    make_hub_cache(cache, "farslip-test/tiny", {"tiny.pt": src})
    _tag("farslip-test-tiny", "t1", "farslip-test/tiny", "tiny.pt", sha256=hashlib.sha256(src.read_bytes()).hexdigest())
    model = open_clip.create_model("farslip-test-tiny", pretrained="t1", cache_dir=str(cache))
    assert torch.equal(model.state_dict()["visual.conv1.weight"], sd["visual.conv1.weight"])
    with pytest.raises(farslip_ext.WeightsNotAvailableError):  # the default (empty) cache has no such file
        open_clip.create_model("farslip-test-tiny", pretrained="t1")
    _tag("farslip-test-tiny", "t2", "farslip-test/tiny", "tiny.pt", sha256="0" * 64)
    with pytest.raises(farslip_ext.ChecksumError, match="expects 0000"):
        open_clip.create_model("farslip-test-tiny", pretrained="t2", cache_dir=str(cache))


def test_non_finite_weights_are_refused_naming_the_tensors(tmp_path):
    sd = random_state_dict("farslip-test-tiny", seed=14)
    sd["visual.proj"][0, 0] = float("nan")
    sd["text_projection"][1, 1] = float("inf")
    path = save_container(sd, tmp_path / "bad.pt", "bare")
    with pytest.raises(farslip_ext.NonFiniteWeightsError, match=r"2 tensor\(s\) hold NaN or infinite values \(text_projection, visual.proj\)"):
        farslip_ext.load("farslip-test-tiny", str(path))
    with pytest.raises(farslip_ext.NonFiniteWeightsError):
        farslip_ext.convert_checkpoint_file(path, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_sources_and_their_errors(tmp_path):
    lm = farslip_ext.load("farslip-test-tiny")  # random init
    assert lm.source == "farslip-test-tiny (random init)" and lm.precision.name == "fp32"
    with pytest.raises(ValueError, match=r"unknown OpenCLIP model 'farslip-test-tinyy'.*did you mean"):
        farslip_ext.load("farslip-test-tinyy")
    with pytest.raises(FileNotFoundError, match="looks like a checkpoint file"):
        farslip_ext.load(str(tmp_path / "missing.pt"))
    with pytest.raises(FileNotFoundError, match="looks like a checkpoint file"):
        farslip_ext.load("farslip-test-tiny", str(tmp_path / "missing.pt"))
    with pytest.raises(farslip_ext.WeightsNotAvailableError, match="neither a tag"):
        farslip_ext.load("farslip-test-tiny", "s7")


def test_precision_and_device_are_applied(tmp_path):
    sd = random_state_dict("farslip-test-tiny", seed=15)
    path = save_container(sd, tmp_path / "ckpt.pt", "bare")
    lm = farslip_ext.load("farslip-test-tiny", str(path), precision="bf16")
    assert lm.model.visual.conv1.weight.dtype == torch.bfloat16  # open_clip's mixed low-precision weights
    assert lm.model.ln_final.weight.dtype == torch.float32
    assert torch.equal(lm.model.visual.conv1.weight, sd["visual.conv1.weight"].to(torch.bfloat16))
    assert farslip_ext.load("farslip-test-tiny", precision="auto").precision.name == "fp32"  # CPU
    if not torch.cuda.is_available():
        with pytest.raises(farslip_ext.ConfigError, match="device='cuda:3' but CUDA is not available"):
            farslip_ext.load("farslip-test-tiny", device="cuda:3")


def test_stock_architecture_with_our_file_warns_about_context_and_activation(tmp_path, caplog):
    """A GELU, 77-token architecture outside the catalogue given a 248-token QuickGELU FarSLIP file: the loader
    follows the file's context and says so, and warns that QuickGELU weights meet nn.GELU."""
    import json

    from farslip_ext.models.quickgelu import QuickGELUWarning

    cfg = open_clip.get_model_config("farslip-test-tiny-long")
    cfg.pop("quick_gelu", None)
    cfg["text_cfg"]["context_length"] = 77
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "stock-like-tiny.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "cfg")
    sd = random_state_dict("farslip-test-tiny-long", seed=17)
    path = save_container(sd, tmp_path / "long.pt", "bare")
    with pytest.warns(QuickGELUWarning):
        lm = farslip_ext.load("stock-like-tiny", str(path))
    assert lm.context_length == 248 and lm.tokenizer.context_length == 248
    assert "248-token text tower; building stock-like-tiny with context_length=248 instead of its 77" in caplog.text


def test_stock_open_clip_warns_before_interpolating_a_files_text_positions(tmp_path):
    from farslip_ext.compat import TextContextWarning

    sd = random_state_dict("farslip-test-tiny-long", seed=18)
    path = save_container(sd, tmp_path / "long.pt", "bare")
    out = tmp_path / "long.safetensors"
    farslip_ext.convert_checkpoint_file(path, out)
    with pytest.warns(TextContextWarning, match="248-token text tower but the model was built with 77"):
        open_clip.create_model("farslip-test-tiny", pretrained=str(out))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", TextContextWarning)
        open_clip.create_model("farslip-test-tiny-long", pretrained=str(out))  # matching context: silent
