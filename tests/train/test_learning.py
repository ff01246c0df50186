"""Stage 1, stage 2 and the CLIP baseline learn on fabricated data in the real on-disk formats: the loss
falls and held-out zero-shot accuracy rises above its starting value. The datasets are swapped by
config alone (RS5M shards, MGRS-200k JSON, a CSV of pairs); the loop is the same."""
from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from farslip_ext.data import synthetic
from farslip_ext.data.transforms import SquashTransform
from farslip_ext.train.config import load_config
from farslip_ext.train.loop import train

SIZE = 64


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    shards = synthetic.write_rs5m_shards(root / "rs5m", n=96, shard_size=48, seed=1, size=SIZE)
    mgrs = synthetic.write_mgrs(root / "mgrs", n=96, seed=2, size=SIZE)
    pairs = synthetic.write_skyscript_csv(root / "pairs", n=96, seed=3, size=SIZE)
    test_csv, names = synthetic.write_classification_csv(root / "heldout", n_per_class=6, seed=99, size=SIZE)
    return dict(shards=shards, mgrs=mgrs, pairs=pairs, test_csv=test_csv, names=names, root=root)


def zero_shot_accuracy(model, test_csv: Path, names: Path) -> float:
    """Independent of the evaluators: prompt 'a satellite image of {c}', argmax cosine."""
    classes = [l.strip() for l in names.read_text().splitlines() if l.strip()]
    tok = open_clip.get_tokenizer("farslip-test-tiny")
    tf = SquashTransform(image_size=SIZE)
    rows = list(csv.DictReader(open(test_csv)))
    imgs = torch.stack([tf(Image.open(test_csv.parent / r["filepath"]).convert("RGB")) for r in rows])
    labels = torch.tensor([int(r["label"]) for r in rows])
    model.eval()
    with torch.no_grad():
        t = F.normalize(model.encode_text(tok([f"a satellite image of {c}" for c in classes])), dim=-1)
        i = F.normalize(model.encode_image(imgs), dim=-1)
    model.train()
    return float(((i @ t.T).argmax(-1) == labels).float().mean())


def _losses(work: Path):
    rows = list(csv.DictReader(open(work / "metrics.csv")))
    return [float(r["loss"]) for r in rows]


def _run(tmp_path, data_cfg: str, losses: str, steps_per_epoch: str = "None", epochs: int = 6, lr: float = 5e-4):
    cfg = tmp_path / "cfg.py"
    cfg.write_text(textwrap.dedent(f"""
        model = dict(name='farslip-test-tiny', pretrained=None)
        task = dict(type='FarSLIPTask', losses={losses}, region_head=dict(type='CropClsHead'))
        data = dict(train={data_cfg}, batch_size=16, num_workers=0, pin_memory=False)
        optim = dict(lr={lr}, weight_decay=0.1, impl='foreach')
        schedule = dict(epochs={epochs}, warmup_steps=3, steps_per_epoch={steps_per_epoch})
        train = dict(work_dir=r'{tmp_path / "run"}', device='cpu', precision='fp32', seed=0,
                     save_every_steps=1000, log_every=1, progress=False)
    """))
    return load_config(cfg)


def _check_learning(tmp_path, cfg, data):
    import farslip_ext

    before_model = farslip_ext.create_model("farslip-test-tiny")
    torch.manual_seed(0)
    trainer_result = train(cfg)
    after = farslip_ext.create_model("farslip-test-tiny",
                                     pretrained=str(tmp_path / "run" / "checkpoints" / "final.pt"))
    losses = _losses(tmp_path / "run")
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 * 0.9, losses
    torch.manual_seed(0)
    start = zero_shot_accuracy(open_clip.create_model("farslip-test-tiny"), data["test_csv"], data["names"])
    end = zero_shot_accuracy(after, data["test_csv"], data["names"])
    assert end > start and end >= 0.2, (start, end)
    del before_model
    return trainer_result


def test_stage1_on_rs5m_shards_learns(tmp_path, data):
    urls = [str(p) for p in data["shards"]]
    cfg = _run(tmp_path, f"dict(type='RS5MWebDataset', urls={urls!r}, image_size={SIZE}, shuffle_buffer=64, "
                         f"shuffle_initial=16, require_enough_shards=False, "
                         f"transform=dict(type='MultiCropTransform', image_size={SIZE}, num_crops=2))",
               "dict(global_itc=dict(type='GlobalITCLoss'), distill=dict(type='PatchDistillLoss', loss_weight=0.1))",
               steps_per_epoch="6")
    res = _check_learning(tmp_path, cfg, data)
    assert res["step"] == 36


def test_stage2_on_mgrs_json_learns(tmp_path, data):
    images = data["mgrs"].parent / "global_imgs"
    cfg = _run(tmp_path, f"dict(type='MGRSJsonDataset', json_path=r'{data['mgrs']}', image_root=r'{images}', "
                         f"image_size={SIZE}, "
                         f"min_size=4, max_boxes=2)",
               "dict(global_itc=dict(type='GlobalITCLoss'), region=dict(type='RegionCategoryLoss'))", epochs=12)
    _check_learning(tmp_path, cfg, data)


def test_clip_baseline_on_csv_pairs_learns(tmp_path, data):
    cfg = _run(tmp_path, f"dict(type='ImageTextDataset', path=r'{data['pairs']}', image_size={SIZE}, "
                         f"transform=dict(type='SquashTransform', image_size={SIZE}))",
               "dict(global_itc=dict(type='GlobalITCLoss'))")
    _check_learning(tmp_path, cfg, data)
