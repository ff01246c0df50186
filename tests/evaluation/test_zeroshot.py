"""Zero-shot scene classification: metrics against brute force, designed-embedding models whose accuracy
is known in advance, the eight SkyScript layouts and splits, bad rows, templates, and the CLI end to end
through a real tiny open_clip model (checked against an independent loop over stock open_clip)."""
from __future__ import annotations

import functools
import json
import math
import random
from pathlib import Path
from typing import Dict, List, Sequence

import pytest
import torch
from PIL import Image

# Imported at collection, before conftest's per-test registry snapshots, so the @register_module
# decorators of the evaluation package are part of every snapshot.
import farslip_ext.evaluation as ev
from farslip_ext.cli import main as cli_main
from farslip_ext.registry import EVAL_DATASETS, TEMPLATES
from tests.helpers.fake_clip import FakeCLIP, FakeTokenizer, IdTransform, write_csv
from tests.helpers.fake_clip import save_id_png as _save_png

save_id_png = functools.partial(_save_png, fill=7)

CLASSES = ["forest", "river", "farmland", "desert", "harbor", "airport", "beach"]  # 7 classes: top-5 is non-trivial
T1, T2 = "a satellite photo of {}.", "a satellite image of {}"  # FarSLIP's two prompts, written out here

# The reference layout (SkyScript benchmark_dataset_info.py + FarSLIP's split choices), written out by hand.
LAYOUT = {
    "SkyScript_cls": ("SkyScript_cls/img_txt_pairs_val.csv", ["SkyScript_cls/img_txt_pairs_train.csv",
                                                              "SkyScript_cls/img_txt_pairs_test.csv"]),
    "aid": ("aid/aid_img_txt_pairs_test.csv", ["aid/aid_img_txt_pairs_train.csv"]),
    "eurosat": ("eurosat/eurosat_img_txt_pairs_test.csv", ["eurosat/eurosat_img_txt_pairs_train.csv"]),
    "fmow": ("fmow/fmow_img_txt_pairs_val.csv", ["fmow/fmow_img_txt_pairs_train.csv"]),
    "millionaid": ("millionaid/img_txt_pairs_train.csv", ["millionaid/img_txt_pairs_test.csv"]),
    "patternnet": ("patternnet/img_txt_pairs_train.csv", ["patternnet/img_txt_pairs_test.csv"]),
    "nwpu": ("nwpu/img_txt_pairs_train.csv", ["nwpu/img_txt_pairs_val.csv"]),
    "rsicb": ("rsicb256/img_txt_pairs_train.csv", ["rsicb256/img_txt_pairs_test.csv"]),
}


# ------------------------------------------------------------------------------ designed fake model
def class_text_model(classes: Sequence[str]) -> tuple:
    """Text embeddings in R^(C+1): T1 -> 3 e_c, T2 -> e_c + e_C (a direction shared by all classes and
    orthogonal to every image). Each classifier column then has the same geometry, so an image's class
    scores are ordered exactly like its coordinates on e_0..e_{C-1}."""
    c = len(classes)
    texts, rows = [], []
    for i, name in enumerate(classes):
        e = torch.zeros(c + 1)
        e[i] = 1.0
        shared = torch.zeros(c + 1)
        shared[c] = 1.0
        texts += [T1.format(name), T2.format(name)]
        rows += [3 * e, e + shared]
    return FakeTokenizer(texts), torch.stack(rows)


def image_with_rank(label: int, rank: int, n_classes: int, rng: random.Random) -> torch.Tensor:
    """An image embedding whose class scores put the true class at position ``rank`` (0 = top)."""
    others = [c for c in range(n_classes) if c != label]
    rng.shuffle(others)
    order = others[:rank] + [label] + others[rank:]
    v = torch.zeros(n_classes + 1)
    for pos, c in enumerate(order):
        v[c] = float(n_classes - pos)  # strictly decreasing, no ties
    return v






# --------------------------------------------------------------------------------------- brute force
def brute_rank(scores: Sequence[float], target: int) -> int:
    order = sorted(range(len(scores)), key=lambda c: (-scores[c], c))  # descending, ties by index
    return order.index(target)


def test_class_ranks_and_metrics_match_brute_force():
    g = torch.Generator().manual_seed(0)
    n, c = 60, 12
    logits = torch.randint(0, 6, (n, c), generator=g).float()  # small integers: many ties
    targets = torch.randint(0, c, (n,), generator=g)
    ranks = ev.class_ranks(logits, targets)
    expected = [brute_rank(logits[i].tolist(), int(targets[i])) for i in range(n)]
    assert ranks.tolist() == expected
    m = ev.classification_metrics(ranks, targets, c)
    for k in (1, 5):
        assert m[f"acc{k}"] == pytest.approx(sum(r < k for r in expected) / n)
    per_class = []
    for cls in range(c):
        idx = [i for i in range(n) if int(targets[i]) == cls]
        if idx:
            per_class.append(sum(expected[i] == 0 for i in idx) / len(idx))
    assert m["mean_per_class_recall"] == pytest.approx(sum(per_class) / len(per_class))


def test_classifier_averages_normalised_template_embeddings():
    """W[:, c] = normalize(mean_t normalize(text(t, c))): checked with a hand loop, raw norms 0.1..10."""
    g = torch.Generator().manual_seed(1)
    classes = ["a", "b", "c"]
    templates = ["x {}", "y {}", "z {}"]
    texts = [t.format(c) for c in classes for t in templates]
    table = torch.randn(len(texts), 5, generator=g) * torch.tensor([0.1, 1.0, 10.0] * 3)[:, None]
    model, tok = FakeCLIP(torch.zeros(1, 5), table), FakeTokenizer(texts)
    tset = ev.PromptTemplates([t.replace("{}", "{c}") for t in templates])
    w = ev.build_classifier(model, tok, classes, tset.for_dataset(), progress=False)
    for ci, c in enumerate(classes):
        acc = [0.0] * 5
        for t in templates:
            v = table[tok.vocab[t.format(c)]].tolist()
            norm = math.sqrt(sum(x * x for x in v))
            acc = [a + x / norm / len(templates) for a, x in zip(acc, v)]
        norm = math.sqrt(sum(x * x for x in acc))
        assert w[:, ci].tolist() == pytest.approx([a / norm for a in acc], abs=1e-6)


# ------------------------------------------------------------------------- designed, all 8 layouts
def _build_layout(root: Path, ranks_per_dataset: Dict[str, List[int]]) -> tuple:
    """Every benchmark with its used split (images at the designed ranks) and decoy splits (all wrong)."""
    rng = random.Random(0)
    tok, text_table = class_text_model(CLASSES)
    images: List[torch.Tensor] = []
    for name, (used, decoys) in LAYOUT.items():
        folder = root / used.split("/")[0]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "classnames.txt").write_text("\n".join(CLASSES) + "\n")
        for csv_rel, ranks in [(used, ranks_per_dataset[name])] + [(d, [6, 6, 6]) for d in decoys]:
            rows = []
            for j, r in enumerate(ranks):
                label = (j * 3 + len(images)) % len(CLASSES)
                iid = len(images)
                images.append(image_with_rank(label, r, len(CLASSES), rng))
                rel = f"{folder.name}/images/{Path(csv_rel).stem}_{j}.png"
                save_id_png(root / rel, iid)
                # eurosat's CSV uses 0-based label indices, the others class names (both occur in the wild)
                rows.append((rel, label if name == "eurosat" else CLASSES[label]))
            write_csv(root / csv_rel, ("filepath", "label"), rows)
    assert len(images) < 256
    return FakeCLIP(torch.stack(images), text_table), tok


def test_eight_benchmarks_designed_accuracy(tmp_path):
    ranks = {  # rank of the true class for each image of the used split
        "SkyScript_cls": [0, 0, 0, 1, 4, 5],      # top1 3/6, top5 5/6
        "aid": [0, 1, 2, 3],                      # 1/4, 4/4
        "eurosat": [0, 0, 6, 6, 5],               # 2/5, 2/5
        "fmow": [1, 1, 1],                        # 0/3, 3/3
        "millionaid": [0, 0, 0, 0],               # 4/4, 4/4
        "patternnet": [4, 0, 5, 0, 2, 0, 6, 3],   # 3/8, 6/8
        "nwpu": [6, 0],                           # 1/2, 1/2
        "rsicb": [0, 4, 4, 4, 4],                 # 1/5, 5/5
    }
    expected = {"SkyScript_cls": (3 / 6, 5 / 6), "aid": (1 / 4, 1.0), "eurosat": (2 / 5, 2 / 5), "fmow": (0.0, 1.0),
                "millionaid": (1.0, 1.0), "patternnet": (3 / 8, 6 / 8), "nwpu": (1 / 2, 1 / 2), "rsicb": (1 / 5, 1.0)}
    model, tok = _build_layout(tmp_path, ranks)
    res = ev.run_zeroshot_benchmarks(model, tok, IdTransform(), list(LAYOUT), tmp_path, progress=False)
    assert list(res) == list(LAYOUT)
    for name, (top1, top5) in expected.items():
        assert res[name]["acc1"] == pytest.approx(top1), name
        assert res[name]["acc5"] == pytest.approx(top5), name
        assert res[name]["n_samples"] == len(ranks[name]) and res[name]["n_skipped"] == 0
        assert res[name]["n_classes"] == len(CLASSES)
    mean1 = sum(v[0] for v in expected.values()) / 8
    assert ev.mean_over_datasets(res)["acc1"] == pytest.approx(mean1)
    assert ev.zeroshot_percent(res)["mean"] == pytest.approx(100 * mean1)
    # names are case-insensitive and rsicb256 is the folder's name
    again = ev.run_zeroshot_benchmarks(model, tok, IdTransform(), ["RSICB256"], tmp_path, progress=False)
    assert again["rsicb"]["acc1"] == pytest.approx(1 / 5)


def test_wrong_template_would_not_be_silently_accepted(tmp_path):
    model, tok = _build_layout(tmp_path, {n: [0] for n in LAYOUT})
    with pytest.raises(KeyError):  # the fake tokenizer only knows FarSLIP's two prompts
        ev.run_zeroshot_benchmarks(model, tok, IdTransform(), ["aid"], tmp_path, templates="openai", progress=False)


# ----------------------------------------------------------------------------------- bad rows
def _small_set(root: Path, rows: List[tuple], classes: Sequence[str] = ("forest", "river")) -> Path:
    (root / "ds").mkdir(parents=True, exist_ok=True)
    (root / "ds" / "classnames.txt").write_text("\n".join(classes) + "\n")
    write_csv(root / "ds" / "data.csv", ("filepath", "label"), rows)
    return root / "ds" / "data.csv"


def test_missing_image_is_an_error_or_a_counted_skip(tmp_path):
    tok, text_table = class_text_model(["forest", "river"])
    rng = random.Random(1)
    table = torch.stack([image_with_rank(0, 0, 2, rng), image_with_rank(1, 1, 2, rng), image_with_rank(0, 0, 2, rng)])
    for i in range(3):
        save_id_png(tmp_path / "ds" / f"{i}.png", i)
    csv = _small_set(tmp_path, [("ds/0.png", "forest"), ("ds/1.png", "river"), ("ds/gone.png", "river"),
                                ("ds/2.png", "forest")])
    with pytest.raises(ev.BenchmarkDataError) as e:
        ev.SceneClassificationCsv(csv, tmp_path / "ds" / "classnames.txt", image_root=tmp_path)
    msg = str(e.value)
    assert "gone.png" in msg and "line 4" in msg and "--on-bad-row skip" in msg and "--image-root" in msg
    ds = ev.SceneClassificationCsv(csv, tmp_path / "ds" / "classnames.txt", image_root=tmp_path, on_bad_row="skip")
    m = ev.zeroshot_classification(FakeCLIP(table, text_table), tok, IdTransform(), ds, progress=False)
    # three usable images: ranks 0, 1, 0 -> top-1 2/3; the skipped row is counted, not scored
    assert m["acc1"] == pytest.approx(2 / 3) and m["n_samples"] == 3
    assert m["n_skipped"] == 1 and m["skipped_missing_image"] == 1


def test_image_root_hint_when_paths_are_relative_to_the_csv(tmp_path):
    save_id_png(tmp_path / "ds" / "img" / "a.png", 0)
    csv = _small_set(tmp_path, [("img/a.png", "forest")])
    with pytest.raises(ev.BenchmarkDataError, match=r"pass --image-root .*ds"):
        ev.SceneClassificationCsv(csv, tmp_path / "ds" / "classnames.txt", image_root=tmp_path)
    assert len(ev.SceneClassificationCsv(csv, tmp_path / "ds" / "classnames.txt")) == 1  # default: the CSV's folder


def test_unknown_class_is_an_error_naming_it_or_a_counted_skip(tmp_path):
    for i in range(2):
        save_id_png(tmp_path / "ds" / f"{i}.png", i)
    csv = _small_set(tmp_path, [("ds/0.png", "forest"), ("ds/1.png", "forrest")])
    with pytest.raises(ev.BenchmarkDataError) as e:
        ev.SceneClassificationCsv(csv, tmp_path / "ds" / "classnames.txt", image_root=tmp_path)
    assert "'forrest'" in str(e.value) and "did you mean 'forest'" in str(e.value) and "line 3" in str(e.value)
    ds = ev.SceneClassificationCsv(csv, tmp_path / "ds" / "classnames.txt", image_root=tmp_path, on_bad_row="skip")
    assert len(ds) == 1 and ds.skipped == {"unknown_label": 1}


def test_label_index_out_of_range_and_empty_labels(tmp_path):
    for i in range(3):
        save_id_png(tmp_path / "ds" / f"{i}.png", i)
    csv = _small_set(tmp_path, [("ds/0.png", 0), ("ds/1.png", 2)])
    with pytest.raises(ev.BenchmarkDataError, match=r"label index 2 is outside 0\.\.1"):
        ev.SceneClassificationCsv(csv, tmp_path / "ds" / "classnames.txt", image_root=tmp_path)
    csv = _small_set(tmp_path, [("ds/0.png", 1), ("ds/1.png", ""), ("ds/2.png", 0)])
    ds = ev.SceneClassificationCsv(csv, tmp_path / "ds" / "classnames.txt", image_root=tmp_path)
    assert ds.label_mode == "index" and [t for _, t in ds.samples] == [1, 0]
    assert ds.skipped == {"empty_label": 1}  # the reference drops null labels; we count them


def test_empty_dataset_and_malformed_files_are_errors(tmp_path):
    csv = _small_set(tmp_path, [])
    with pytest.raises(ev.BenchmarkDataError, match="no usable rows"):
        ev.SceneClassificationCsv(csv, tmp_path / "ds" / "classnames.txt")
    write_csv(csv, ("path", "label"), [("a.png", "forest")])
    with pytest.raises(ev.BenchmarkDataError, match=r"no column\(s\) \['filepath'\].*header has \['path', 'label'\]"):
        ev.SceneClassificationCsv(csv, tmp_path / "ds" / "classnames.txt")
    (tmp_path / "c.txt").write_text("forest\n\nriver\n")
    with pytest.raises(ev.BenchmarkDataError, match="blank"):
        ev.load_classnames(tmp_path / "c.txt")
    (tmp_path / "c.txt").write_text("forest\nriver\nforest\n")
    with pytest.raises(ev.BenchmarkDataError, match="more than once"):
        ev.load_classnames(tmp_path / "c.txt")
    with pytest.raises(FileNotFoundError, match=r"'aid' expects \['aid/aid_img_txt_pairs_test.csv', "
                                                r"'aid/classnames.txt'\].*does not exist.*--data-root"):
        ev.SceneClassificationCsv.from_benchmark("aid", tmp_path / "nowhere")
    with pytest.raises(KeyError, match=r"did you mean 'eurosat'.*known: \['SkyScript_cls'"):
        ev.classification_benchmark("eurosta")


# ---------------------------------------------------------------------------------- templates
def test_template_sets_are_registry_entries():
    assert {"FarSLIPSatelliteTemplates", "SkyScriptTemplates", "OpenAIImageNetTemplates"} <= set(TEMPLATES.names())
    assert {"SceneClassificationCsv", "ImageTextRetrievalCsv"} <= set(EVAL_DATASETS.names())
    assert ev.build_templates(None).prompts("river") == ["a satellite photo of river.", "a satellite image of river"]
    sky = TEMPLATES.build(dict(type="SkyScriptTemplates"))
    assert sky.prompts("gabled", "roof_shape") == ["a satellite photo of building, gabled.",
                                                   "a satellite image of building, gabled"]
    assert sky.prompts("paved", "surface") == ["a satellite photo of road, paved.", "a satellite image of road, paved"]
    assert sky.prompts("x", "rsicb") == sky.prompts("x", "aid") == ["a satellite photo of x.", "a satellite image of x"]
    with pytest.raises(KeyError, match="no prompt templates for dataset 'roofshape'.*did you mean 'roof_shape'"):
        ev.build_templates(dict(type="skyscript", fallback="error")).for_dataset("roofshape")
    import open_clip

    oa = ev.build_templates("openai")
    assert len(oa) == 80 and oa.prompts("dog") == [t("dog") for t in open_clip.OPENAI_IMAGENET_TEMPLATES]
    with pytest.raises(KeyError, match="did you mean 'skyscript'"):
        ev.build_templates("skyscrpt")


# ------------------------------------------------------------------ CLI end to end, real tiny model
def _tiny_checkpoint(path: Path) -> Dict[str, torch.Tensor]:
    import open_clip

    torch.manual_seed(123)
    sd = open_clip.create_model("farslip-test-tiny").state_dict()
    torch.save(sd, path)
    return sd


def _brute_force_accuracy(sd, root: Path, csv_rel: str, classes: Sequence[str]) -> tuple:
    """Independent of farslip_ext.evaluation: stock open_clip, per-image and per-template loops."""
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms("farslip-test-tiny")
    model.load_state_dict(sd)
    model.eval()
    tok = open_clip.get_tokenizer("farslip-test-tiny")
    with torch.no_grad():
        cols = []
        for c in classes:
            embs = [model.encode_text(tok([t.format(c)]))[0] for t in (T1, T2)]
            embs = [e / e.norm() for e in embs]
            m = sum(embs) / 2
            cols.append(m / m.norm())
        top1 = top5 = n = 0
        for line in (root / csv_rel).read_text().splitlines()[1:]:
            rel, label = line.split(",")
            img = preprocess(Image.open(root / rel).convert("RGB"))[None]
            f = model.encode_image(img)[0]
            f = f / f.norm()
            scores = [float(f @ col) for col in cols]
            r = brute_rank(scores, list(classes).index(label))
            top1 += r < 1
            top5 += r < 5
            n += 1
    return top1 / n, top5 / n


def test_cli_zeroshot_tiny_model_end_to_end(tmp_path, capsys):
    rng = random.Random(5)
    root = tmp_path / "bench"
    for name in ("aid", "nwpu"):
        used = LAYOUT[name][0]
        folder = root / used.split("/")[0]
        folder.mkdir(parents=True)
        (folder / "classnames.txt").write_text("\n".join(CLASSES) + "\n")
        rows = []
        for j in range(10):
            rel = f"{folder.name}/img/{j}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (72, 64), tuple(rng.randrange(256) for _ in range(3))).save(root / rel)
            rows.append((rel, CLASSES[j % len(CLASSES)]))
        write_csv(root / used, ("filepath", "label"), rows)
    ckpt = tmp_path / "tiny.pt"
    sd = _tiny_checkpoint(ckpt)
    out = tmp_path / "out"
    rc = cli_main(["zeroshot", "--model", "farslip-test-tiny", "--pretrained", str(ckpt), "--data-root", str(root),
                   "--datasets", "aid,nwpu", "--device", "cpu", "--workers", "0", "--batch-size", "4",
                   "--output-dir", str(out), "--compare", "B/16:FarSLIP-s2", "--no-progress"])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "| aid | test | 10 |" in stdout and "| nwpu | train | 10 |" in stdout and "73.95" in stdout
    for name in ("aid", "nwpu"):
        rec = json.loads((out / f"{name}_tiny.pt_farslip-test-tiny_en_zeroshot_classification.json").read_text())
        assert set(rec) == {"dataset", "model", "pretrained", "task", "metrics", "language"}
        assert rec["dataset"] == name and rec["task"] == "zeroshot_classification" and rec["language"] == "en"
        assert rec["model"] == "farslip-test-tiny" and rec["pretrained"] == str(ckpt)
        top1, top5 = _brute_force_accuracy(sd, root, LAYOUT[name][0], CLASSES)
        assert rec["metrics"]["acc1"] == pytest.approx(top1) and rec["metrics"]["acc5"] == pytest.approx(top5)
        assert rec["metrics"]["n_samples"] == 10
    summary = json.loads((out / "report" / "zeroshot_classification_summary.json").read_text())
    assert summary["published_row"] == ["B/16", "FarSLIP-s2"] and summary["templates"] == "farslip"
    assert (out / "report" / "zeroshot_classification.md").read_text().startswith("### Zero-shot classification")

    # The same weights as an open_clip folder (local-dir:, as stock open_clip loads it) give the same numbers.
    import open_clip

    import farslip_ext

    net = open_clip.create_model("farslip-test-tiny")
    net.load_state_dict(sd)
    folder = farslip_ext.export_hub_folder(net, tmp_path / "exported", arch="farslip-test-tiny")
    out2 = tmp_path / "out2"
    assert cli_main(["zeroshot", "--model", f"local-dir:{folder}", "--data-root", str(root), "--datasets", "aid",
                     "--device", "cpu", "--workers", "0", "--output-dir", str(out2), "--no-progress"]) == 0
    (rec2,) = [json.loads(p.read_text()) for p in out2.glob("aid_*.json")]
    rec1 = json.loads((out / "aid_tiny.pt_farslip-test-tiny_en_zeroshot_classification.json").read_text())
    assert rec2["model"] == f"local-dir:{folder}" and rec2["metrics"] == rec1["metrics"]


def test_cli_reports_bad_input_clearly(tmp_path, capsys):
    rc = cli_main(["zeroshot", "--model", "farslip-test-tiny", "--data-root", str(tmp_path), "--datasets", "aid",
                   "--device", "cpu", "--workers", "0", "--compare", "none"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "aid/aid_img_txt_pairs_test.csv" in err and "--data-root" in err
    rc = cli_main(["zeroshot", "--model", "farslip-test-tiny", "--data-root", str(tmp_path), "--templates", "nope",
                   "--device", "cpu"])
    assert rc == 2 and "unknown prompt templates 'nope'" in capsys.readouterr().err
