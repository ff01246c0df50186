"""``farslip benchmark`` over two tiny models and two fabricated datasets per task family: every cell's
number checked against an independent computation, an interrupted run resumed to the same leaderboard as
an uninterrupted one, missing data and weights listed as skipped cells, and the output folder read by
CLIP_benchmark's ``build`` rule."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import open_clip
import pytest
import torch
from PIL import Image

import farslip_ext
from farslip_ext.cli import main as cli_main
from farslip_ext.evaluation import leaderboard as lb
from farslip_ext.evaluation.zoo import parse_model_spec
from tests.helpers.ovss_fixtures import make_dataset
from tests.helpers.zoo_fixtures import clip_benchmark_build, farslip_training_file

CLASSES = ["forest", "river", "farmland", "harbor", "airport", "beach"]
T1, T2 = "a satellite photo of {}.", "a satellite image of {}"  # FarSLIP's two prompts, written out here
PREFIX = "a satellite image. "
CLS = {"aid": "aid/aid_img_txt_pairs_test.csv", "eurosat": "eurosat/eurosat_img_txt_pairs_test.csv"}
RET = {"RSICD": "RSICD/RSICD_img_txt_pairs_test.csv", "UCM": "ucmcaptions/ucmcaptions_img_txt_pairs_test.csv"}
_ORIG_EVALUATE = lb._Runner.evaluate
FAST_OVSS = dict(slide_crop=64, slide_stride=32, resize_long_side=96, num_workers=0, batch_size=2, device="cpu",
                 log_level="WARNING", templates=["a photo of {c}.", "an aerial image of {c}."])


def _img(path: Path, rng: random.Random) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), tuple(rng.randrange(256) for _ in range(3))).save(path)
    px = Image.open(path).load()  # some texture, so the tiny models' scores differ between images
    for i in range(0, 64, 4):
        px[i, i] = (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def _csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([",".join(header)] + [",".join(r) for r in rows]) + "\n", encoding="utf-8")


def make_benchmark_data(root: Path, seed: int = 0) -> None:
    rng = random.Random(seed)
    for name, rel in CLS.items():
        folder = (root / rel).parent
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "classnames.txt").write_text("\n".join(CLASSES) + "\n")
        rows = []
        for j in range(12):
            p = f"{folder.name}/img/{j}.png"
            _img(root / p, rng)
            rows.append((p, CLASSES[j % len(CLASSES)]))
        _csv(root / rel, ("filepath", "label"), rows)
    for name, rel in RET.items():
        rows = []
        for i in range(6):
            p = f"{Path(rel).parent}/img/{i}.png"
            _img(root / p, rng)
            rows += [(p, f"scene {i} with {CLASSES[i]}"), (p, "a shared caption" if i % 2 else f"another view {i}")]
        _csv(root / rel, ("filepath", "title"), rows)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Model A: a 77-token tiny CLIP (bare file); model B: a 248-token LongCLIP tiny CLIP in FarSLIP's
    training container (two tables, masks, DDP keys)."""
    d = tmp_path_factory.mktemp("lb-models")
    torch.manual_seed(0)
    sd_a = {k: v + 0.05 * torch.randn(v.shape) for k, v in open_clip.create_model("farslip-test-tiny").state_dict().items()}
    torch.save(sd_a, d / "tiny_a.pt")
    sd_b = farslip_training_file("farslip-test-tiny-long", d / "tiny_b.pt", seed=5, long_clip=True)
    return {"A": (f"farslip-test-tiny:{d / 'tiny_a.pt'}", "farslip-test-tiny", sd_a),
            "B": (f"farslip-test-tiny-long:{d / 'tiny_b.pt'}", "farslip-test-tiny-long", sd_b)}


# ------------------------------------------------------------------------------ independent numbers
def _stock(arch: str, sd):
    model, _, preprocess = open_clip.create_model_and_transforms(arch)
    model.load_state_dict(sd)
    return model.eval(), preprocess, open_clip.get_tokenizer(arch)


def _rank_order(scores: List[float]) -> List[int]:
    return sorted(range(len(scores)), key=lambda c: (-scores[c], c))


def expected_top1(arch: str, sd, root: Path, rel: str) -> float:
    model, preprocess, tok = _stock(arch, sd)
    with torch.no_grad():
        cols = []
        for c in CLASSES:
            embs = [model.encode_text(tok([t.format(c)]))[0] for t in (T1, T2)]
            m = sum(e / e.norm() for e in embs) / 2
            cols.append(m / m.norm())
        hits = n = 0
        for line in (root / rel).read_text().splitlines()[1:]:
            p, label = line.split(",")
            f = model.encode_image(preprocess(Image.open(root / p).convert("RGB"))[None])[0]
            f = f / f.norm()
            hits += _rank_order([float(f @ col) for col in cols])[0] == CLASSES.index(label)
            n += 1
    return 100 * hits / n


def expected_mean_recalls(arch: str, sd, root: Path, rel: str) -> Tuple[float, float]:
    model, preprocess, tok = _stock(arch, sd)
    lines = [ln.split(",") for ln in (root / rel).read_text().splitlines()[1:]]
    paths = list(dict.fromkeys(p for p, _ in lines))
    caps = list(dict.fromkeys(PREFIX + c for _, c in lines))
    gt = {(paths.index(p), caps.index(PREFIX + c)) for p, c in lines}
    with torch.no_grad():
        img = [model.encode_image(preprocess(Image.open(root / p).convert("RGB"))[None])[0] for p in paths]
        txt = [model.encode_text(tok([c]))[0] for c in caps]
    img = [v / v.norm() for v in img]
    txt = [v / v.norm() for v in txt]
    out = []
    for Q, K, match in ((img, txt, lambda q, k: (q, k) in gt), (txt, img, lambda q, k: (k, q) in gt)):
        recalls = []
        for k_ in (1, 5, 10):
            hits = sum(any(match(qi, j) for j in _rank_order([float(q @ k) for k in K])[:k_]) for qi, q in enumerate(Q))
            recalls.append(hits / len(Q))
        out.append(100 * sum(recalls) / 3)
    return out[0], out[1]


# -------------------------------------------------------------------------------------------- runs
def _config(out: Path, specs: List[str], data: Path, tasks=("zeroshot", "retrieval"), **kw) -> lb.BenchmarkConfig:
    datasets = {"zeroshot": list(CLS), "retrieval": list(RET), "ovss": ["VDD", "UDD5"]}
    datasets.update(kw.pop("datasets", {}))
    return lb.BenchmarkConfig(models=[parse_model_spec(s) for s in specs], tasks=list(tasks), output_dir=out,
                              data_root=data, ovss_data_root=data / "ovss", datasets=datasets, device="cpu",
                              precision="fp32", batch_size=5, workers=0, progress=False, figure=kw.pop("figure", False),
                              ovss_overrides=dict(FAST_OVSS), **kw)


def _interrupt_after(monkeypatch, n: int) -> None:
    orig = lb._Runner.evaluate
    count = [0]

    def evaluate(self, lm, cell):
        if count[0] == n:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the run
        count[0] += 1
        return orig(self, lm, cell)

    monkeypatch.setattr(lb._Runner, "evaluate", evaluate)


def _count_loads(monkeypatch) -> list:
    calls = []
    orig = farslip_ext.load

    def load(model, pretrained=None, **kw):
        calls.append((model, pretrained))
        return orig(model, pretrained, **kw)

    monkeypatch.setattr(farslip_ext, "load", load)
    return calls


def test_zeroshot_and_retrieval_cells_resume_to_the_uninterrupted_leaderboard(tmp_path, tiny_models, monkeypatch):
    data = tmp_path / "data"
    make_benchmark_data(data)
    specs = [f"tinyA={tiny_models['A'][0]}", f"tinyB={tiny_models['B'][0]}"]
    loads = _count_loads(monkeypatch)
    full = lb.run_benchmark(_config(tmp_path / "full", specs, data, figure=True))
    assert (full.computed, full.reused, full.skipped) == (8, 0, 0)
    assert loads == [(tiny_models[k][1], tiny_models[k][0].split(":", 1)[1]) for k in "AB"]  # once per model

    board = full.leaderboard
    assert [m["context_length"] for m in board["models"]] == [77, 248]  # each model's text context follows its file
    for key, name in (("A", "tinyA"), ("B", "tinyB")):
        _, arch, sd = tiny_models[key]
        row = next(r for r in board["tasks"]["zeroshot"]["rows"] if r["model"] == name)
        for ds, rel in CLS.items():
            assert row["values"][ds] == pytest.approx(expected_top1(arch, sd, data, rel), abs=1e-6), (name, ds)
        assert row["mean"] == pytest.approx((row["values"]["aid"] + row["values"]["eurosat"]) / 2)
        row = next(r for r in board["tasks"]["retrieval"]["rows"] if r["model"] == name)
        for ds, rel in RET.items():
            i2t, t2i = expected_mean_recalls(arch, sd, data, rel)
            assert row["values"][f"{ds}_i2t"] == pytest.approx(i2t, abs=1e-6)
            assert row["values"][f"{ds}_t2i"] == pytest.approx(t2i, abs=1e-6)

    # interrupted after 3 cells, then run again: only the 5 missing cells are evaluated
    _interrupt_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        lb.run_benchmark(_config(tmp_path / "resumed", specs, data, figure=True))
    monkeypatch.undo()
    loads = _count_loads(monkeypatch)
    again = lb.run_benchmark(_config(tmp_path / "resumed", specs, data, figure=True))
    assert (again.computed, again.reused) == (5, 3)
    assert len(loads) == 2  # model A still had pending cells
    for name in ("leaderboard.json", "leaderboard.md"):
        assert (tmp_path / "resumed" / "report" / name).read_text() == (tmp_path / "full" / "report" / name).read_text()
    assert (tmp_path / "full" / "report" / "leaderboard.png").stat().st_size > 1000
    # a third run reuses everything and loads nothing
    loads.clear()
    third = lb.run_benchmark(_config(tmp_path / "resumed", specs, data))
    assert (third.computed, third.reused, loads) == (0, 8, [])
    assert third.leaderboard == full.leaderboard

    # the output folder is what `clip_benchmark build` reads: one row per cell, no other JSON beside them
    rows = clip_benchmark_build(tmp_path / "full", tmp_path / "benchmark.csv")
    assert len(rows) == 8
    assert {r["model_fullname"].split(" ")[0] for r in rows} == {"farslip-test-tiny", "farslip-test-tiny-long"}
    assert {r["task"] for r in rows} == {"zeroshot_classification", "zeroshot_retrieval"}
    rec = json.loads(next((tmp_path / "full").glob("aid_tiny_a.pt_farslip-test-tiny_en_*.json")).read_text())
    assert rec["metrics"]["acc1"] * 100 == pytest.approx(board["tasks"]["zeroshot"]["rows"][0]["values"]["aid"])
    assert rec["context_length"] == 77 and rec["model_name"] == "tinyA"


def test_a_changed_checkpoint_is_evaluated_again(tmp_path, tiny_models):
    data = tmp_path / "data"
    make_benchmark_data(data)
    ckpt = tmp_path / "ckpt.pt"
    torch.save(tiny_models["A"][2], ckpt)
    cfg = lambda: _config(tmp_path / "o", [f"farslip-test-tiny:{ckpt}"], data, tasks=["zeroshot"])  # noqa: E731
    assert lb.run_benchmark(cfg()).computed == 2
    torch.save({k: v * 1.01 for k, v in tiny_models["A"][2].items()}, ckpt)  # retrained: same name, new weights
    assert lb.run_benchmark(cfg()).computed == 2
    assert lb.run_benchmark(cfg()).reused == 2


def test_missing_data_and_weights_are_listed_as_skipped_cells(tmp_path, tiny_models, hf_cache, farslip_cache):
    data = tmp_path / "data"
    make_benchmark_data(data)
    specs = [f"tinyA={tiny_models['A'][0]}", "farslip-vitb16:s2", "lrsclip-vitb16"]  # the last two: no weights here
    cfg = _config(tmp_path / "o", specs, data, datasets={"zeroshot": ["aid", "fmow"], "retrieval": ["UCM"]})
    run = lb.run_benchmark(cfg)
    skipped = {(s["model"], s["task"], s["dataset"]): s["reason"] for s in run.leaderboard["skipped"]}
    assert skipped[("tinyA", "zeroshot", "fmow")].startswith("data missing: benchmark 'fmow' expects")
    for m in ("farslip-vitb16:s2", "lrsclip-vitb16"):
        assert skipped[(m, "zeroshot", "aid")].startswith("weights missing:")
        assert "hf download" in skipped[(m, "retrieval", "UCM")]  # the reason says how to get the file
        assert (m, "zeroshot", "fmow") in skipped
    assert run.computed == 2 and run.skipped == 7
    md = (tmp_path / "o" / "report" / "leaderboard.md").read_text()
    assert "## Skipped cells" in md and "| tinyA | zeroshot | fmow | data missing" in md
    row = run.leaderboard["tasks"]["zeroshot"]["rows"][1]
    assert row["paper_row"] == "FarSLIP-s2 B/16" and row["published"]["aid"] == 73.95 and row["values"] == {}
    with pytest.raises(lb.MissingInput, match="data missing"):
        lb.run_benchmark(_config(tmp_path / "o2", specs[:1], data, datasets={"zeroshot": ["fmow"]},
                                 on_missing="error"))


def test_cli_tolerance_and_exit_status(tmp_path, tiny_models, capsys):
    data = tmp_path / "data"
    make_benchmark_data(data)
    args = ["benchmark", "--models", f"mine={tiny_models['A'][0]}", "--tasks", "cls", "--data-root", str(data),
            "--zeroshot-datasets", "aid,eurosat", "--device", "cpu", "--workers", "0", "--precision", "fp32",
            "--output-dir", str(tmp_path / "o"), "--no-progress", "--no-figure"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "## zeroshot (top-1 %)" in out and "2 cells evaluated, 0 reused, 0 skipped" in out
    # compared with the paper's FarSLIP-s2 B/16 row by file name: a random tiny model is far from it
    ckpt = Path(tiny_models["A"][0].split(":", 1)[1])
    named = tmp_path / "FarSLIP2_ViT-B-16.pt"
    named.write_bytes(ckpt.read_bytes())
    rc = cli_main(args[:2] + [f"farslip-test-tiny:{named}"] + args[3:] + ["--tolerance", "1"])
    assert rc == 1
    board = json.loads((tmp_path / "o" / "report" / "leaderboard.json").read_text())
    assert board["ok"] is False and {d["key"] for d in board["deviations"]} == {"aid", "eurosat"}
    assert cli_main(["benchmark", "--list-models"]) == 0
    assert "| `remoteclip-vitb32` | `ViT-B-32:remoteclip` | 77 | no |" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- OVSS
def test_ovss_cells_share_the_loaded_model_and_resume(tmp_path, tiny_models, monkeypatch):
    """Real ``run_ovss`` (mmseg Runner.test()) on two fabricated layouts; each cell equals a direct
    ``run_ovss(arch, file)`` call, and an interrupted run resumes to the same leaderboard."""
    from farslip_ext.segmentation import run_ovss

    data = tmp_path / "data"
    for i, key in enumerate(("vdd", "udd5")):
        make_dataset(key, data / "ovss", seed=10 + i)
    specs = [f"tinyA={tiny_models['A'][0]}", f"tinyB={tiny_models['B'][0]}"]
    full = lb.run_benchmark(_config(tmp_path / "full", specs, data, tasks=["ovss"],
                                    datasets={"ovss": ["VDD", "UDD5", "LoveDA"]}))
    rows = {r["model"]: r for r in full.leaderboard["tasks"]["ovss"]["rows"]}
    for key, name in (("A", "tinyA"), ("B", "tinyB")):
        arch, path = tiny_models[key][0].split(":", 1)
        for ds in ("VDD", "UDD5"):
            direct = run_ovss(arch, path, [ds], data / "ovss", tmp_path / "direct" / name, **FAST_OVSS)
            assert rows[name]["values"][ds] == pytest.approx(direct[ds], abs=1e-6), (name, ds)
    skipped = {(s["model"], s["dataset"]): s["reason"] for s in full.leaderboard["skipped"]}
    assert set(skipped) == {("tinyA", "LoveDA"), ("tinyB", "LoveDA")}
    assert all(r.startswith("data missing:") for r in skipped.values())
    assert rows["tinyB"]["paper_row"] is None and full.computed == 4

    _interrupt_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        lb.run_benchmark(_config(tmp_path / "resumed", specs, data, tasks=["ovss"],
                                 datasets={"ovss": ["VDD", "UDD5", "LoveDA"]}))
    monkeypatch.undo()
    again = lb.run_benchmark(_config(tmp_path / "resumed", specs, data, tasks=["ovss"],
                                     datasets={"ovss": ["VDD", "UDD5", "LoveDA"]}))
    assert (again.computed, again.reused) == (3, 1)
    assert (tmp_path / "resumed" / "report" / "leaderboard.json").read_text() == \
        (tmp_path / "full" / "report" / "leaderboard.json").read_text()
    rows = clip_benchmark_build(tmp_path / "full", tmp_path / "b.csv")
    assert len(rows) == 4 and {r["task"] for r in rows} == {"open_vocabulary_segmentation"}


def test_ovss_cells_through_a_stand_in_run_ovss(tmp_path, tiny_models, monkeypatch):
    """The benchmark's side of the run_ovss contract, independent of mmseg: one call per (model, dataset) with
    the shared LoadedModel, the preset and the overrides; a missing folder (FileNotFoundError) is a skip."""
    import sys
    import types

    calls = []

    def run_ovss(model, pretrained=None, datasets="all", data_root="data", work_dir="w", preset="farslip", **kw):
        (ds,) = datasets
        if not (Path(data_root) / ds).is_dir():
            raise FileNotFoundError(f"{ds}: dataset folder not found under {data_root}")
        calls.append((model, ds, preset, kw))
        score = float(model.model.visual.proj.sum()) % 1.0  # a number that depends on the model's weights
        return {ds.lower(): round(100 * score, 2), "Mean": round(100 * score, 2)}

    fake = types.ModuleType("farslip_ext.segmentation")
    fake.run_ovss = run_ovss
    monkeypatch.setitem(sys.modules, "farslip_ext.segmentation", fake)
    data = tmp_path / "data"
    for ds in ("VDD", "UDD5"):
        (data / "ovss" / ds).mkdir(parents=True)
    specs = [f"tinyA={tiny_models['A'][0]}", f"tinyB={tiny_models['B'][0]}"]
    cfg = lambda out: _config(out, specs, data, tasks=["ovss"], datasets={"ovss": ["VDD", "UDD5", "LoveDA"]})  # noqa
    full = lb.run_benchmark(cfg(tmp_path / "full"))
    assert [(c[0].arch, c[1]) for c in calls] == [("farslip-test-tiny", "VDD"), ("farslip-test-tiny", "UDD5"),
                                                 ("farslip-test-tiny-long", "VDD"), ("farslip-test-tiny-long", "UDD5")]
    assert calls[0][0] is calls[1][0] and calls[0][2] == "farslip" and calls[0][3] == FAST_OVSS
    for (model, ds, _, _), row in zip(calls[::2], full.leaderboard["tasks"]["ovss"]["rows"]):
        assert row["values"]["VDD"] == pytest.approx(round(100 * (float(model.model.visual.proj.sum()) % 1.0), 2))
        assert row["mean"] is None  # LoveDA is missing, so the mean over the requested sets is not claimed
    assert {s["dataset"] for s in full.leaderboard["skipped"]} == {"LoveDA"}
    _interrupt_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        lb.run_benchmark(cfg(tmp_path / "resumed"))
    monkeypatch.setattr(lb._Runner, "evaluate", _ORIG_EVALUATE)  # the fake segmentation module stays
    again = lb.run_benchmark(cfg(tmp_path / "resumed"))
    assert (again.computed, again.reused) == (3, 1)
    assert (tmp_path / "resumed" / "report" / "leaderboard.json").read_text() == \
        (tmp_path / "full" / "report" / "leaderboard.json").read_text()
    assert len(clip_benchmark_build(tmp_path / "full", tmp_path / "b.csv")) == 4

