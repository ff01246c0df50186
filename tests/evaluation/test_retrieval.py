"""Image-text retrieval: recall against brute force, a hand-worked many-to-many example through the four
benchmark layouts (prefix, caption column, deduplication, splits), bad rows, the CLI end to end through a
real tiny open_clip model, and benchmarks/reproduce.py's tolerance check and exit status."""
from __future__ import annotations

import importlib.util
import json
import random
import sys
import types
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import pytest
import torch
from PIL import Image

# Imported at collection, before conftest's per-test registry snapshots (see test_zeroshot.py).
import farslip_ext.evaluation as ev
from farslip_ext.cli import main as cli_main
from farslip_ext.published import load_published_results
from tests.helpers.fake_clip import (
    FakeCLIP,
    FakeTokenizer,
    IdTransform,
    save_id_png,
    write_csv,
)

REPO = Path(__file__).resolve().parents[2]
PREFIX = "a satellite image. "  # docs/reference/method.md §4.6, written out here


# ------------------------------------------------------------------------------ designed fake model




# --------------------------------------------------------------------------------------- brute force
def brute_force_recalls(img: torch.Tensor, txt: torch.Tensor, pairs: Sequence[Tuple[int, int]],
                        ks: Sequence[int] = (1, 5, 10, 100)) -> Dict[str, float]:
    """Plain loops: cosine scores, a stable descending sort per query, hit if any match is in the top k."""
    def norm(v: List[float]) -> List[float]:
        n = sum(x * x for x in v) ** 0.5
        return [x / n for x in v]

    I = [norm(r) for r in img.tolist()]
    T = [norm(r) for r in txt.tolist()]
    out = {}
    for name, Q, K, gt in (("text_retrieval", I, T, {(a, b) for a, b in pairs}),
                           ("image_retrieval", T, I, {(b, a) for a, b in pairs})):
        hits = {k: 0 for k in ks}
        for qi, q in enumerate(Q):
            scores = [sum(a * b for a, b in zip(q, k)) for k in K]
            order = sorted(range(len(K)), key=lambda j: (-scores[j], j))
            for k in ks:
                hits[k] += any((qi, j) in gt for j in order[:k])
        for k in ks:
            out[f"{name}_recall@{k}"] = hits[k] / len(Q)
        out[f"{name}_mean_recall"] = (out[f"{name}_recall@1"] + out[f"{name}_recall@5"] + out[f"{name}_recall@10"]) / 3
    out["mean_recall"] = (out["text_retrieval_mean_recall"] + out["image_retrieval_mean_recall"]) / 2
    return out


def test_recall_matches_brute_force_with_ties_and_many_to_many():
    rng = random.Random(0)
    g = torch.Generator().manual_seed(0)
    n_img, n_txt = 130, 170  # more than 100 keys, so R@100 is not trivially 1
    # Half the rows are +-basis vectors (cosines exactly -1/0/1 in floating point: many exact ties), half
    # Gaussian (no ties).
    basis = torch.cat([torch.eye(4), -torch.eye(4)])
    img = torch.randn(n_img, 4, generator=g)
    img[::2] = basis[torch.randint(0, 8, (len(img[::2]),), generator=g)]
    txt = torch.randn(n_txt, 4, generator=g)
    txt[::2] = basis[torch.randint(0, 8, (len(txt[::2]),), generator=g)]
    pairs = {(rng.randrange(n_img), t) for t in range(n_txt)}       # every caption has an image
    pairs |= {(i, rng.randrange(n_txt)) for i in range(n_img)}      # every image has a caption
    pairs |= {(rng.randrange(n_img), rng.randrange(n_txt)) for _ in range(80)}  # extra many-to-many links
    pairs = sorted(pairs)
    i2t = [[t for i, t in pairs if i == q] for q in range(n_img)]
    t2i = [[i for i, t in pairs if t == q] for q in range(n_txt)]
    got = ev.retrieval_metrics(torch.nn.functional.normalize(img, dim=-1), torch.nn.functional.normalize(txt, dim=-1),
                               i2t, t2i, chunk_size=7)
    want = brute_force_recalls(img, txt, pairs)
    assert set(want) <= set(got)
    for k, v in want.items():
        assert got[k] == pytest.approx(v), k
    assert 0 < got["text_retrieval_recall@1"] < got["text_retrieval_recall@100"] < 1


def test_first_match_rank_ties_keep_index_order():
    q = torch.tensor([[1.0, 0.0]])
    keys = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # keys 0 and 1 tie
    assert ev.first_match_ranks(q, keys, [[1]]).tolist() == [1]
    assert ev.first_match_ranks(q, keys, [[0, 1]]).tolist() == [0]
    assert ev.first_match_ranks(q, keys, [[2]]).tolist() == [2]
    with pytest.raises(ValueError, match="no match"):
        ev.first_match_ranks(q, keys, [[]])


def test_designed_ranks_give_known_recall_at_every_k():
    """Twelve one-hot images; caption j's scores are strictly decreasing along a designed order with its
    image at position r_j, so text->image ranks are exactly r_j."""
    rng = random.Random(3)
    ranks = [0, 4, 5, 9, 10, 11]
    n = 12
    txt, pairs = [], []
    for j, r in enumerate(ranks):
        gt = (5 * j) % n
        others = [i for i in range(n) if i != gt]
        rng.shuffle(others)
        order = others[:r] + [gt] + others[r:]
        v = torch.zeros(n)
        for pos, i in enumerate(order):
            v[i] = float(n - pos)
        txt.append(v)
        pairs.append((gt, j))
    got = ev.first_match_ranks(torch.nn.functional.normalize(torch.stack(txt), dim=-1), torch.eye(n),
                               [[i] for i, _ in pairs])
    assert got.tolist() == ranks
    r = ev.recall_at_k(got)
    assert r == pytest.approx({1: 1 / 6, 5: 2 / 6, 10: 4 / 6, 100: 1.0})


# ----------------------------------------------------------- hand-worked example, 4 benchmark layouts
# Rows (image, caption); unique captions in order of first appearance: c0, c0b, c1, c2, shared, c3.
ROWS = [(0, "c0"), (0, "c0b"), (1, "c1"), (2, "c2"), (2, "shared"), (3, "shared"), (3, "c3")]
# Caption embeddings over the one-hot image axes 0..3.
CAPTION_VECS = {"c0": [4, 3, 2, 1], "c0b": [1, 4, 3, 2], "c1": [3, 2.5, 4, 1], "c2": [1, 2, 3.2, 4],
                "shared": [2, 4, 1, 3], "c3": [3.5, 1, 2, 3]}
# Worked by hand (cosine, i.e. captions normalised; norms sqrt(30), sqrt(30), sqrt(32.25), sqrt(31.24),
# sqrt(30), sqrt(26.25)):
#   text->image first-match ranks: c0 0, c0b 3, c1 2, c2 1, shared 1 (image 3), c3 1  -> R@1 1/6, R@5 1
#   image->text: img0 0 (c0 .730 top), img1 3 (c0 .548, c0b .730, shared .730 ahead of c1 .440),
#                img2 1 (c1 .704 ahead of c2 .573), img3 1 (c2 .716 ahead of c3 .586)  -> R@1 1/4, R@5 1
HAND = {"text_retrieval_recall@1": 1 / 4, "text_retrieval_recall@5": 1.0, "text_retrieval_recall@10": 1.0,
        "text_retrieval_recall@100": 1.0, "text_retrieval_mean_recall": 0.75,
        "image_retrieval_recall@1": 1 / 6, "image_retrieval_recall@5": 1.0, "image_retrieval_recall@10": 1.0,
        "image_retrieval_recall@100": 1.0, "image_retrieval_mean_recall": 13 / 18, "mean_recall": (0.75 + 13 / 18) / 2}

# The reference files (SkyScript cross_modal_retrieval.ipynb, FarSLIP tests), written out by hand:
# (csv, caption column, prefixed?, decoy CSVs of other splits)
RET_LAYOUT = {
    "RSICD": ("RSICD/RSICD_img_txt_pairs_test.csv", "title", True, ["RSICD/RSICD_img_txt_pairs_train.csv"]),
    "RSITMD": ("RSITMD/RSITMD_img_txt_pairs_test.csv", "title", True, ["RSITMD/RSITMD_img_txt_pairs_val.csv"]),
    "UCM": ("ucmcaptions/ucmcaptions_img_txt_pairs_test.csv", "title", True,
            ["ucmcaptions/ucmcaptions_img_txt_pairs_train.csv"]),
    "SkyScript": ("SkyScript_test_30K_filtered_by_CLIP_openai.csv", "title_multi_objects", False,
                  ["SkyScript_val_5K_filtered_by_CLIP_openai.csv"]),
}


def _build_retrieval_layout(root: Path) -> Tuple[FakeCLIP, FakeTokenizer]:
    texts, vecs = [], []
    for name, (csv_rel, col, prefixed, decoys) in RET_LAYOUT.items():
        folder = Path(csv_rel).parent
        rows = []
        for img, cap in ROWS:
            rel = str(folder / "images" / f"{name}_{img}.png")
            save_id_png(root / rel, img)
            raw = f"{name} {cap}"
            other = f"wrong column {name} {cap}"
            rows.append((rel, raw, other) if col == "title" else (rel, other, raw))
            text = (PREFIX + raw) if prefixed else raw
            if text not in texts:
                texts.append(text)
                vecs.append(CAPTION_VECS[cap])
        header = ("filepath", "title", "title_multi_objects") if col == "title_multi_objects" else \
            ("filepath", "title", "other")
        write_csv(root / csv_rel, header, rows)
        for d in decoys:  # a wrong split would hit captions the tokenizer does not know
            write_csv(root / d, header, [(rows[0][0], "decoy", "decoy")])
    return FakeCLIP(torch.eye(4), torch.tensor(vecs)), FakeTokenizer(texts)


def test_four_benchmarks_hand_worked_recall(tmp_path):
    model, tok = _build_retrieval_layout(tmp_path)
    res = ev.run_retrieval_benchmarks(model, tok, IdTransform(), list(RET_LAYOUT), tmp_path, progress=False)
    assert list(res) == list(RET_LAYOUT)
    for name, m in res.items():
        for k, v in HAND.items():
            assert m[k] == pytest.approx(v), (name, k)
        assert (m["n_images"], m["n_texts"], m["n_pairs"], m["n_skipped"]) == (4, 6, 7, 0)
    pct = ev.retrieval_percent(res)
    assert pct["RSICD_i2t"] == pytest.approx(75.0) and pct["UCM_t2i"] == pytest.approx(100 * 13 / 18)
    assert ev.retrieval_benchmark("ucmcaptions").name == "UCM"


def test_deduplication_and_many_to_many_ground_truth(tmp_path):
    for i in range(3):
        save_id_png(tmp_path / f"{i}.png", i)
    write_csv(tmp_path / "d.csv", ("filepath", "title"),
              [("0.png", "a"), ("1.png", "b"), ("0.png", "a"), ("2.png", "a"), ("1.png", "c"), ("0.png", "c")])
    ds = ev.ImageTextRetrievalCsv(tmp_path / "d.csv", caption_prefix=PREFIX)
    assert ds.images == [str(tmp_path / f"{i}.png") for i in (0, 1, 2)]
    assert ds.captions == [PREFIX + "a", PREFIX + "b", PREFIX + "c"]
    assert ds.pairs == [(0, 0), (0, 2), (1, 1), (1, 2), (2, 0)]  # the duplicate row counts once
    assert ds.image_to_texts == [[0, 2], [1, 2], [0]] and ds.text_to_images == [[0, 2], [1], [0, 1]]


def test_missing_image_and_empty_caption_are_errors_or_counted_skips(tmp_path):
    for i in range(2):
        save_id_png(tmp_path / f"{i}.png", i)
    write_csv(tmp_path / "d.csv", ("filepath", "title"), [("0.png", "a"), ("nope.png", "b"), ("1.png", "")])
    with pytest.raises(ev.BenchmarkDataError, match=r"line 4: empty caption.*--on-bad-row skip"):
        ev.ImageTextRetrievalCsv(tmp_path / "d.csv")
    write_csv(tmp_path / "d.csv", ("filepath", "title"), [("0.png", "a"), ("nope.png", "b"), ("1.png", "c")])
    with pytest.raises(ev.BenchmarkDataError, match=r"1 of 3 rows.*line 3: 'nope.png'"):
        ev.ImageTextRetrievalCsv(tmp_path / "d.csv")
    ds = ev.ImageTextRetrievalCsv(tmp_path / "d.csv", on_bad_row="skip")
    assert ds.skipped == {"missing_image": 1} and ds.captions == ["a", "c"]
    model = FakeCLIP(torch.eye(2), torch.eye(2))
    m = ev.zeroshot_retrieval(model, FakeTokenizer(["a", "c"]), IdTransform(), ds, progress=False)
    assert m["n_skipped"] == 1 and m["skipped_missing_image"] == 1 and m["text_retrieval_recall@1"] == 1.0
    write_csv(tmp_path / "e.csv", ("filepath", "title"), [])
    with pytest.raises(ev.BenchmarkDataError, match="no usable rows"):
        ev.ImageTextRetrievalCsv(tmp_path / "e.csv")
    with pytest.raises(ev.BenchmarkDataError, match=r"no column\(s\) \['title_multi_objects'\]"):
        ev.ImageTextRetrievalCsv(tmp_path / "d.csv", caption_key="title_multi_objects")


# ------------------------------------------------------------------ CLI end to end, real tiny model
def _tiny_checkpoint(path: Path) -> dict:
    import open_clip

    torch.manual_seed(7)
    sd = open_clip.create_model("farslip-test-tiny").state_dict()
    torch.save(sd, path)
    return sd


def _write_tiny_retrieval_set(root: Path, csv_rel: str, rng: random.Random, n_img: int = 5) -> None:
    rows = []
    for i in range(n_img):
        rel = f"{Path(csv_rel).parent}/img/{i}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), tuple(rng.randrange(256) for _ in range(3))).save(root / rel)
        rows += [(rel, f"scene number {i}"), (rel, "a shared caption" if i % 2 else f"another view {i}")]
    write_csv(root / csv_rel, ("filepath", "title"), rows)


def test_cli_retrieval_tiny_model_end_to_end(tmp_path, capsys):
    import open_clip

    root = tmp_path / "bench"
    _write_tiny_retrieval_set(root, RET_LAYOUT["RSITMD"][0], random.Random(1))
    ckpt = tmp_path / "tiny.pt"
    sd = _tiny_checkpoint(ckpt)
    out = tmp_path / "out"
    rc = cli_main(["retrieval", "--model", "farslip-test-tiny", "--pretrained", str(ckpt), "--data-root", str(root),
                   "--datasets", "rsitmd", "--device", "cpu", "--workers", "0", "--batch-size", "3",
                   "--output-dir", str(out), "--compare", "B/32:FarSLIP-s1", "--no-progress"])
    assert rc == 0
    assert "| RSITMD | 5 | 9 | 0 |" in capsys.readouterr().out  # 5 + 1 shared + 3 "another view"
    rec = json.loads((out / "RSITMD_tiny.pt_farslip-test-tiny_en_zeroshot_retrieval.json").read_text())
    assert set(rec) == {"dataset", "model", "pretrained", "task", "metrics", "language"}
    assert rec["task"] == "zeroshot_retrieval" and rec["dataset"] == "RSITMD"

    # Independent: stock open_clip, one image / one caption at a time, prefix added here.
    model, _, preprocess = open_clip.create_model_and_transforms("farslip-test-tiny")
    model.load_state_dict(sd)
    model.eval()
    tok = open_clip.get_tokenizer("farslip-test-tiny")
    lines = [ln.split(",") for ln in (root / RET_LAYOUT["RSITMD"][0]).read_text().splitlines()[1:]]
    paths = list(dict.fromkeys(p for p, _ in lines))
    caps = list(dict.fromkeys(PREFIX + c for _, c in lines))
    pairs = sorted({(paths.index(p), caps.index(PREFIX + c)) for p, c in lines})
    with torch.no_grad():
        img = torch.stack([model.encode_image(preprocess(Image.open(root / p).convert("RGB"))[None])[0] for p in paths])
        txt = torch.stack([model.encode_text(tok([c]))[0] for c in caps])
    want = brute_force_recalls(img, txt, pairs)
    for k, v in want.items():
        assert rec["metrics"][k] == pytest.approx(v), k
    assert json.loads((out / "report" / "zeroshot_retrieval_summary.json").read_text())["published"]["RSITMD_t2i"] == 32.8


# --------------------------------------------------------------------------- benchmarks/reproduce.py
def _reproduce():
    spec = importlib.util.spec_from_file_location("farslip_benchmarks_reproduce", REPO / "benchmarks" / "reproduce.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


OVSS_MOD = "farslip_ext.segmentation"  # the benchmark imports run_ovss from here


def _fake_ovss(monkeypatch, numbers: Dict[str, float], calls: list) -> None:
    fake = types.ModuleType(OVSS_MOD)

    def run_ovss(model, pretrained=None, datasets="all", data_root="data", work_dir="w", preset="farslip", **kw):
        calls.append(dict(model=model, pretrained=pretrained, datasets=list(datasets), data_root=data_root,
                          work_dir=work_dir, preset=preset, **kw))
        return dict(numbers)

    fake.run_ovss = run_ovss
    monkeypatch.setitem(sys.modules, OVSS_MOD, fake)


def test_reproduce_ovss_within_and_outside_tolerance(tmp_path, monkeypatch, capsys):
    import farslip_ext

    paper = dict(load_published_results()["ovss_miou"]["B/16"]["FarSLIP2"])
    calls: list = []
    _fake_ovss(monkeypatch, {k.lower(): v for k, v in paper.items()}, calls)  # keys like 'openearthmap' match too
    ckpt = tmp_path / "tiny.pt"
    _tiny_checkpoint(ckpt)
    rp = _reproduce()
    args = ["--model", "farslip-test-tiny", "--pretrained", str(ckpt), "--backbone", "B/16", "--method", "FarSLIP-s2",
            "--tasks", "ovss", "--ovss-data-root", str(tmp_path), "--ovss-arg", "slide_stride=112", "--device", "cpu",
            "--output-dir", str(tmp_path / "o1")]
    assert rp.main(args) == 0
    names = [k for k in paper if k != "Mean"]
    assert [c["datasets"] for c in calls] == [[n] for n in names]  # one cell per dataset
    assert all(c["slide_stride"] == 112 and c["preset"] == "farslip" for c in calls)
    assert all(c["model"] is calls[0]["model"] for c in calls)  # the model is loaded once and shared
    assert isinstance(calls[0]["model"], farslip_ext.LoadedModel) and calls[0]["model"].arch == "farslip-test-tiny"
    rep = json.loads((tmp_path / "o1" / "report" / "reproduce.json").read_text())
    assert rep["ok"] is True and rep["paper_row"] == ["B/16", "FarSLIP-s2"] and len(rep["deviations"]) == 9
    assert [d["key"] for d in rep["deviations"]] == names + ["Mean"]
    assert rep["deviations"][-1]["ours"] == pytest.approx(sum(paper[n] for n in names) / 8)

    calls.clear()
    off = dict(paper, LoveDA=paper["LoveDA"] - 2.5)
    _fake_ovss(monkeypatch, off, calls)
    assert rp.main(args[:-1] + [str(tmp_path / "o2")]) == 1
    rep = json.loads((tmp_path / "o2" / "report" / "reproduce.json").read_text())
    bad = [d for d in rep["deviations"] if not d["ok"]]
    assert [d["key"] for d in bad] == ["LoveDA"] and bad[0]["deviation"] == pytest.approx(-2.5)
    assert "**NO**" in (tmp_path / "o2" / "report" / "reproduce.md").read_text()
    assert rp.main(args[:-1] + [str(tmp_path / "o3"), "--tol-ovss", "3"]) == 0
    # a rerun into o2 reuses its eight finished cells: run_ovss is not called again
    calls.clear()
    assert rp.main(args[:-1] + [str(tmp_path / "o2"), "--tol-ovss", "3"]) == 0 and calls == []


def test_reproduce_without_segmentation_or_paper_row_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, OVSS_MOD, None)  # import fails as if the module did not exist
    rp = _reproduce()
    rc = rp.main(["--model", "farslip-vitb32", "--pretrained", "s1", "--tasks", "cls,ovss", "--data-root",
                  str(tmp_path), "--output-dir", str(tmp_path / "o")])
    assert rc == 2 and "--tasks cls,ret" in capsys.readouterr().err
    rc = rp.main(["--model", "farslip-test-tiny", "--tasks", "cls", "--data-root", str(tmp_path)])
    assert rc == 2 and "pass --backbone" in capsys.readouterr().err
    rc = rp.main(["--model", "farslip-test-tiny", "--tasks", "cls", "--backbone", "B/16", "--method", "FarSLIP-s9"])
    assert rc == 2 and "no row 'FarSLIP-s9'" in capsys.readouterr().err


def test_reproduce_classification_and_retrieval_tiny_model(tmp_path, capsys):
    """A random tiny model is far from the paper: every number is compared, and the exit status is 1."""
    rng = random.Random(2)
    root = tmp_path / "bench"
    cls_files = {"SkyScript_cls": "SkyScript_cls/img_txt_pairs_val.csv", "aid": "aid/aid_img_txt_pairs_test.csv",
                 "eurosat": "eurosat/eurosat_img_txt_pairs_test.csv", "fmow": "fmow/fmow_img_txt_pairs_val.csv",
                 "millionaid": "millionaid/img_txt_pairs_train.csv", "patternnet": "patternnet/img_txt_pairs_train.csv",
                 "nwpu": "nwpu/img_txt_pairs_train.csv", "rsicb": "rsicb256/img_txt_pairs_train.csv"}
    for name, rel in cls_files.items():
        folder = root / Path(rel).parent
        folder.mkdir(parents=True)
        (folder / "classnames.txt").write_text("forest\nriver\nport\n")
        rows = []
        for j in range(3):
            p = f"{folder.name}/i{j}.png"
            Image.new("RGB", (64, 64), tuple(rng.randrange(256) for _ in range(3))).save(root / p)
            rows.append((p, ["forest", "river", "port"][j]))
        write_csv(root / rel, ("filepath", "label"), rows)
    for name in ("RSICD", "RSITMD", "UCM"):
        _write_tiny_retrieval_set(root, RET_LAYOUT[name][0], rng, n_img=3)
    ckpt = tmp_path / "tiny.pt"
    _tiny_checkpoint(ckpt)
    out = tmp_path / "out"
    rc = _reproduce().main(["--model", "farslip-test-tiny", "--pretrained", str(ckpt), "--tasks", "cls,ret",
                            "--backbone", "B/16", "--method", "FarSLIP-s2", "--data-root", str(root), "--device", "cpu",
                            "--workers", "0", "--output-dir", str(out), "--no-progress"])
    assert rc == 1
    rep = json.loads((out / "report" / "reproduce.json").read_text())
    keys = [(d["task"], d["key"]) for d in rep["deviations"]]
    assert keys == [("cls", k) for k in ("SkyScript_cls", "aid", "eurosat", "fmow", "millionaid", "patternnet", "nwpu",
                                         "rsicb", "mean")] + \
        [("ret", f"{d}_{x}") for d in ("RSICD", "RSITMD", "UCM") for x in ("i2t", "t2i")]
    by_key = {(d["task"], d["key"]): d for d in rep["deviations"]}
    paper = load_published_results()["zeroshot_top1"]["B/16"]["FarSLIP-s2"]
    for name in cls_files:
        rec = json.loads((out / f"{name}_tiny.pt_farslip-test-tiny_en_zeroshot_classification.json").read_text())
        assert by_key[("cls", name)]["ours"] == pytest.approx(100 * rec["metrics"]["acc1"])
        assert by_key[("cls", name)]["published"] == paper[name]
    mean = sum(by_key[("cls", n)]["ours"] for n in cls_files) / 8
    assert by_key[("cls", "mean")]["ours"] == pytest.approx(mean)
    rec = json.loads((out / "UCM_tiny.pt_farslip-test-tiny_en_zeroshot_retrieval.json").read_text())
    assert by_key[("ret", "UCM_t2i")]["ours"] == pytest.approx(100 * rec["metrics"]["image_retrieval_mean_recall"])
    assert "numbers within tolerance" in capsys.readouterr().out
