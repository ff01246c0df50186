"""`farslip convert` and `farslip export` from the command line: the LongCLIP trap, the random-weights trap,
file permissions, and the model card's usage line."""
from __future__ import annotations

import json
import stat

import pytest
from safetensors import safe_open

from farslip_ext.cli import main
from tests.helpers.checkpoints import random_state_dict, save_container, to_long_clip_two_table


@pytest.fixture(scope="module")
def long_ckpt(tmp_path_factory):
    """A 248-token tiny checkpoint in the reference's two-table LongCLIP training container."""
    two, _ = to_long_clip_two_table(random_state_dict("farslip-test-tiny-long", seed=5))
    return save_container(two, tmp_path_factory.mktemp("ckpt") / "long.pt", "training")


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_convert_says_the_context_length(tmp_path, capsys, long_ckpt):
    rc, out, err = _run(capsys, "convert", long_ckpt, tmp_path / "long.safetensors")
    assert rc == 0, err
    res = json.loads(out)
    assert res["arch"] == "farslip-test-tiny-long" and res["context_length"] == 248 and res["long_clip"] is True
    assert res["arch_context_length"] == 248
    assert "text context 248 tokens (LongCLIP)" in err
    with safe_open(str(tmp_path / "long.safetensors"), framework="pt") as f:
        assert f.get_slice("positional_embedding").get_shape()[0] == 248
        assert f.metadata()["context_length"] == "248"


def test_convert_refuses_a_77_token_arch_for_a_248_token_file(tmp_path, capsys, long_ckpt):
    dst = tmp_path / "wrong.safetensors"
    rc, out, err = _run(capsys, "convert", long_ckpt, dst, "--arch", "farslip-test-tiny")
    assert rc == 2 and out == "" and not dst.exists()
    (line,) = [ln for ln in err.splitlines() if ln]
    assert "248-token text tower" in line and "--arch farslip-test-tiny is a 77-token architecture" in line
    assert "--arch farslip-test-tiny-long" in line and "interpolate" in line


def test_convert_with_a_matching_explicit_arch(tmp_path, capsys, long_ckpt):
    rc, out, err = _run(capsys, "convert", long_ckpt, tmp_path / "ok.safetensors", "--arch", "farslip-test-tiny-long")
    assert rc == 0, err
    assert json.loads(out)["load_with"]["open_clip"] == (
        f"open_clip.create_model('farslip-test-tiny-long', pretrained='{tmp_path / 'ok.safetensors'}')")


def test_convert_warns_when_no_registered_arch_matches(tmp_path, capsys, long_ckpt, monkeypatch):
    """Without a 248-token twin, an explicit 77-token arch is converted with a warning and the load line
    carries force_context_length."""
    from farslip_ext.commands import weights

    real = weights.arch_context
    monkeypatch.setattr(weights, "arch_context", lambda a: 77 if a == "farslip-test-tiny-long" else real(a))
    rc, out, err = _run(capsys, "convert", long_ckpt, tmp_path / "w.safetensors", "--arch", "farslip-test-tiny")
    assert rc == 0, err
    assert "warning:" in err and "force_context_length=248" in err
    res = json.loads(out)
    assert res["context_length"] == 248 and res["arch_context_length"] == 77
    assert res["load_with"]["open_clip"].endswith("force_context_length=248)")


def test_convert_refuses_to_overwrite_before_reading(tmp_path, capsys, long_ckpt):
    dst = tmp_path / "exists.safetensors"
    dst.write_bytes(b"keep")
    rc, _, err = _run(capsys, "convert", long_ckpt, dst)
    assert rc == 2 and "--overwrite" in err and dst.read_bytes() == b"keep"


def test_export_refuses_random_weights_without_the_flag(tmp_path, capsys):
    rc, out, err = _run(capsys, "export", "farslip-demo-tiny", tmp_path / "out")
    assert rc == 2 and out == ""
    assert "randomly initialised" in err and "--random-init" in err and "tags of farslip-demo-tiny: demo" in err
    assert not (tmp_path / "out").exists()
    rc, _, err = _run(capsys, "export", "farslip-demo-tiny", tmp_path / "out", "--random-init", "--pretrained", "demo")
    assert rc == 2 and "contradict" in err


def test_export_random_init_when_asked(tmp_path, capsys):
    rc, out, err = _run(capsys, "export", "farslip-test-tiny", tmp_path / "rand", "--random-init")
    assert rc == 0, err
    card = (tmp_path / "rand" / "README.md").read_text()
    assert "RANDOM weights" in card and "random init" in card


def test_export_files_are_readable_by_others_and_the_card_names_the_repo(tmp_path, capsys):
    out_dir = tmp_path / "hub"
    rc, out, err = _run(capsys, "export", "farslip-demo-tiny", out_dir, "--pretrained", "demo",
                        "--repo-id", "my-lab/farslip-demo")
    assert rc == 0, err
    res = json.loads(out)
    assert res["context_length"] == 77 and res["repo_id"] == "my-lab/farslip-demo"
    assert res["load_with"] == "open_clip.create_model_and_transforms('hf-hub:my-lab/farslip-demo')"
    assert res["files"] == ["README.md", "open_clip_config.json", "open_clip_model.safetensors"]
    for p in out_dir.iterdir():
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode & stat.S_IROTH and mode & stat.S_IRGRP, (p.name, oct(mode))
    card = (out_dir / "README.md").read_text()
    assert "create_model_and_transforms('hf-hub:my-lab/farslip-demo')" in card
    assert "get_tokenizer('hf-hub:my-lab/farslip-demo')" in card and "local-dir:" not in card
    assert "farslip_ext/assets/demo_clip.safetensors" in card  # the source of the weights


def test_export_without_repo_id_names_the_folder_and_the_hub_form(tmp_path, capsys):
    rc, out, err = _run(capsys, "export", "farslip-demo-tiny", tmp_path / "hub2", "--pretrained", "demo")
    assert rc == 0, err
    card = (tmp_path / "hub2" / "README.md").read_text()
    assert "local-dir:hub2" in card and "hf-hub:ORG/NAME" in card
    assert "--repo-id" in err


def test_export_rejects_a_malformed_repo_id(tmp_path, capsys):
    rc, _, err = _run(capsys, "export", "farslip-demo-tiny", tmp_path / "x", "--pretrained", "demo",
                      "--repo-id", "not a repo")
    assert rc == 2 and "ORG/NAME" in err and not (tmp_path / "x").exists()


def test_export_of_a_long_clip_file_with_a_77_token_arch_says_so(tmp_path, capsys, long_ckpt):
    rc, out, err = _run(capsys, "export", "farslip-test-tiny", tmp_path / "lh", "--pretrained", long_ckpt)
    assert rc == 0, err
    assert json.loads(out)["context_length"] == 248
    assert "248-token text tower but farslip-test-tiny declares 77" in err
    cfg = json.loads((tmp_path / "lh" / "open_clip_config.json").read_text())
    assert cfg["model_cfg"]["text_cfg"]["context_length"] == 248
    assert "Text context length" in (tmp_path / "lh" / "README.md").read_text()


def test_export_refuses_a_folder_with_files(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("x")
    rc, _, err = _run(capsys, "export", "farslip-demo-tiny", tmp_path / "full", "--pretrained", "demo")
    assert rc == 2 and "--overwrite" in err and (tmp_path / "full" / "mine.txt").read_text() == "x"
