"""Working with CLIP_benchmark (https://github.com/LAION-AI/CLIP_benchmark): our output folders are what its
``build`` reads, and a 248-token FarSLIP checkpoint reaches its open_clip loader with the right text tower
through an exported ``local-dir:``/``hf-hub:`` folder."""
from __future__ import annotations

import json

import open_clip
import pytest
import torch
from safetensors import safe_open

import farslip_ext
from farslip_ext.cli import main as cli_main
from tests.helpers.zoo_fixtures import clip_benchmark_build, farslip_training_file
from tests.zoo.test_leaderboard import CLS, make_benchmark_data

LONG = " ".join(["a dense residential block beside a river with a bridge, farmland and a railway"] * 8)


def clip_benchmark_load(model_name: str, pretrained: str):
    """CLIP_benchmark's clip_benchmark/models/open_clip.py load_open_clip, line for line."""
    model, _, transform = open_clip.create_model_and_transforms(model_name, pretrained=pretrained, cache_dir=None)
    tokenizer = open_clip.get_tokenizer(model_name)
    return model, transform, tokenizer


def test_zeroshot_output_folder_is_what_clip_benchmark_build_reads(tmp_path, capsys):
    data = tmp_path / "data"
    make_benchmark_data(data)
    torch.manual_seed(1)
    net = open_clip.create_model("farslip-test-tiny")
    folder = farslip_ext.export_hub_folder(net, tmp_path / "exported", arch="farslip-test-tiny")
    out = tmp_path / "out"
    assert cli_main(["zeroshot", "--model", f"local-dir:{folder}", "--data-root", str(data), "--datasets",
                     ",".join(CLS), "--device", "cpu", "--workers", "0", "--output-dir", str(out),
                     "--no-progress"]) == 0
    rows = clip_benchmark_build(out, tmp_path / "benchmark.csv")  # a summary beside the records would raise here
    assert sorted(r["dataset"] for r in rows) == sorted(CLS)
    assert all(r["model_fullname"] == f"local-dir:{folder} " for r in rows)  # pretrained is "" (a string), not null
    assert (out / "report" / "zeroshot_classification_summary.json").is_file()
    assert sorted(p.name for p in out.glob("*.json")) == sorted(
        f"{d}_none_local-dir_{str(folder).strip('/').replace('/', '_')}_en_zeroshot_classification.json" for d in CLS)


def test_a_248_token_checkpoint_reaches_clip_benchmark_through_an_exported_folder(tmp_path, capsys):
    src = tmp_path / "FarSLIP2_ViT-B-16.pt"  # the reference trainer's container, LongCLIP text tower
    farslip_training_file("farslip-test-tiny-long", src, seed=8, long_clip=True)
    ref = farslip_ext.load("farslip-test-tiny-long", str(src))
    exported = tmp_path / "farslip2-tiny"
    assert cli_main(["export", "farslip-test-tiny-long", str(exported), "--pretrained", str(src)]) == 0
    capsys.readouterr()
    # `clip_benchmark eval --model local-dir:farslip2-tiny --pretrained s2 ...` (pretrained is only a label there)
    model, transform, tokenizer = clip_benchmark_load(f"local-dir:{exported}", "s2")
    assert model.context_length == 248 and tokenizer.context_length == 248
    model.eval()
    with torch.no_grad():
        want = ref.model.encode_text(ref.tokenizer([LONG, "a satellite image of farmland"]))
        got = model.encode_text(tokenizer([LONG, "a satellite image of farmland"]))
    assert (tokenizer([LONG])[0] != 0).sum() > 77  # the caption needs the LongCLIP positions
    assert torch.allclose(got, want, atol=1e-6)


def test_the_stock_name_plus_file_way_is_caught_where_farslip_ext_sees_it(tmp_path, capsys):
    src = tmp_path / "FarSLIP2_ViT-B-16.pt"
    farslip_training_file("farslip-test-tiny-long", src, seed=9, long_clip=True)
    # farslip_ext.load with the 77-token name builds what the file was trained with, and its tokenizer matches
    lm = farslip_ext.load("farslip-test-tiny", str(src))
    assert lm.context_length == 248 and lm.tokenizer.context_length == 248
    # farslip convert refuses the 77-token name (a matching 248-token architecture exists) ...
    dst = tmp_path / "conv.safetensors"
    assert cli_main(["convert", str(src), str(dst), "--arch", "farslip-test-tiny"]) == 2
    err = capsys.readouterr().err
    assert "248-token text tower" in err and "farslip-test-tiny-long" in err and not dst.exists()
    # ... and its output carries the context length, in the file and on stdout
    assert cli_main(["convert", str(src), str(dst)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["context_length"] == 248 and printed["arch"] == "farslip-test-tiny-long"
    with safe_open(str(dst), framework="pt") as f:
        assert f.metadata()["context_length"] == "248"
    # the benchmark names the context of every model it loaded
    from farslip_ext.evaluation import leaderboard as lb
    from farslip_ext.evaluation.zoo import parse_model_spec

    data = tmp_path / "data"
    make_benchmark_data(data)
    run = lb.run_benchmark(lb.BenchmarkConfig(models=[parse_model_spec(f"farslip-test-tiny:{src}")], tasks=["zeroshot"],
                                              output_dir=tmp_path / "o", data_root=data, datasets={"zeroshot": ["aid"]},
                                              device="cpu", precision="fp32", workers=0, figure=False))
    assert run.leaderboard["models"][0]["context_length"] == 248


def test_records_always_have_a_string_pretrained():
    from farslip_ext.evaluation.report import TASK_OVSS, clip_benchmark_record

    rec = clip_benchmark_record("VDD", "hf-hub:org/repo", None, TASK_OVSS, {"miou": 0.3}, context_length=77)
    assert rec["pretrained"] == "" and rec["context_length"] == 77
    with pytest.raises(ValueError, match="choose one of"):
        clip_benchmark_record("VDD", "m", "p", "segmentation", {})
