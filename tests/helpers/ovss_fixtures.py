"""Fabricated OVSS data: tiny datasets in each benchmark's evaluated layout, tiny official releases for
the converters, and an IoU computed independently of mmseg (plain numpy loops).

Nothing here imports farslip_ext.segmentation: layouts, suffixes and label encodings are written out
from docs/reference/ovss-evaluation.md §5 directly, so the tests check the package against the spec, not against itself.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

# key -> (folder under the data root, image dir, label dir, image suffix, label suffix, raw label values,
#         reduce_zero_label, number of classes, names of the two files, image encoding)
LAYOUTS: Dict[str, dict] = {
    "openearthmap": dict(root="OpenEarthMap", img="img_dir/val", ann="ann_dir/val", isuf=".tif", lsuf=".tif",
                         values=list(range(9)), rzl=False, C=9, stems=["aachen_1", "accra_7"], fmt="TIFF"),
    "loveda": dict(root="LoveDA", img="img_dir/val", ann="ann_dir/val", isuf=".png", lsuf=".png",
                   values=list(range(8)), rzl=True, C=7, stems=["2522", "4191"], fmt="PNG"),
    "potsdam": dict(root="potsdam", img="img_dir/val", ann="ann_dir/val", isuf=".png", lsuf=".png",
                    values=list(range(7)), rzl=True, C=6, stems=["2_13_0_0_512_512", "2_13_512_0_1024_512"], fmt="PNG"),
    "vaihingen": dict(root="vaihingen", img="img_dir/val", ann="ann_dir/val", isuf=".png", lsuf=".png",
                      values=list(range(7)), rzl=True, C=6, stems=["area2_0_0_512_512", "area2_512_0_1024_512"],
                      fmt="PNG"),
    "udd5": dict(root="UDD5", img="val/src", ann="val/gt", isuf=".JPG", lsuf=".png",
                 values=list(range(5)), rzl=False, C=5, stems=["DJI_0538", "DJI_0601"], fmt="JPEG"),
    "vdd": dict(root="VDD", img="test/src", ann="test/gt", isuf=".JPG", lsuf=".png",
                values=list(range(7)), rzl=False, C=7, stems=["DJI_0001", "DJI_0337"], fmt="JPEG"),
    "uavid": dict(root="UAVid", img="img_dir/test", ann="ann_dir/test", isuf=".png", lsuf=".png",
                  values=list(range(7)) + [255], rzl=False, C=7, stems=["seq21_000000_0_1080_0_1280",
                                                                        "seq21_000100_0_1080_1280_2560"], fmt="BMP"),
    "isaid": dict(root="iSAID", img="img_dir/val", ann="ann_dir/val", isuf=".png", lsuf="_instance_color_RGB.png",
                  values=list(range(16)) + [255], rzl=False, C=16, stems=["P0003_0_896_0_896", "P0003_0_896_512_1408"],
                  fmt="BMP"),
}


def blocky_image(h: int, w: int, rng: np.random.Generator, block: int = 8) -> np.ndarray:
    """An RGB image of flat colour blocks plus a little noise (gives the tiny model spatially varying output)."""
    bh, bw = -(-h // block), -(-w // block)
    coarse = rng.integers(0, 256, size=(bh, bw, 3))
    img = np.kron(coarse, np.ones((block, block, 1)))[:h, :w]
    img = img + rng.integers(-10, 11, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def random_label(h: int, w: int, values: Sequence[int], rng: np.random.Generator, block: int = 8) -> np.ndarray:
    bh, bw = -(-h // block), -(-w // block)
    coarse = rng.choice(np.asarray(values), size=(bh, bw))
    return np.kron(coarse, np.ones((block, block), dtype=np.int64))[:h, :w].astype(np.uint8)


def make_dataset(key: str, data_root: Path, sizes: Sequence[Tuple[int, int]] = ((48, 64), (48, 64)),
                 seed: int = 0) -> dict:
    """Write two images + 'L' labels of ``key``'s layout under ``data_root``; returns paths and arrays."""
    spec = LAYOUTS[key]
    rng = np.random.default_rng(seed)
    root = Path(data_root) / spec["root"]
    (root / spec["img"]).mkdir(parents=True, exist_ok=True)
    (root / spec["ann"]).mkdir(parents=True, exist_ok=True)
    out = dict(root=root, images=[], labels=[], label_arrays=[], image_arrays=[], spec=spec)
    for stem, (h, w) in zip(spec["stems"], sizes):
        img = blocky_image(h, w, rng)
        lab = random_label(h, w, spec["values"], rng)
        ip = root / spec["img"] / f"{stem}{spec['isuf']}"
        lp = root / spec["ann"] / f"{stem}{spec['lsuf']}"
        Image.fromarray(img, "RGB").save(ip, format=spec["fmt"], **({"quality": 95} if spec["fmt"] == "JPEG" else {}))
        Image.fromarray(lab, "L").save(lp, format="TIFF" if spec["lsuf"].endswith(".tif") else "PNG")
        out["images"].append(ip)
        out["labels"].append(lp)
        out["label_arrays"].append(lab)
        out["image_arrays"].append(img)
    return out


def gt_for_metric(raw: np.ndarray, reduce_zero_label: bool) -> np.ndarray:
    """mmseg's reduce_zero_label written out: 0 -> 255, v -> v - 1 (255 stays 255)."""
    raw = raw.astype(np.int64)
    if not reduce_zero_label:
        return raw
    out = raw - 1
    out[raw == 0] = 255
    out[raw == 255] = 255
    return out


def miou_percent(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], num_classes: int,
                 ignore: int = 255) -> float:
    """mIoU in percent over a dataset with explicit per-class counting loops (IoUMetric semantics:
    ignored GT pixels are dropped, classes with empty union are skipped)."""
    inter = np.zeros(num_classes)
    union = np.zeros(num_classes)
    for pred, gt in zip(preds, gts):
        assert pred.shape == gt.shape, (pred.shape, gt.shape)
        valid = gt != ignore
        for c in range(num_classes):
            p, g = (pred == c) & valid, (gt == c) & valid
            inter[c] += np.logical_and(p, g).sum()
            union[c] += np.logical_or(p, g).sum()
    ious = [inter[c] / union[c] for c in range(num_classes) if union[c] > 0]
    return float(np.mean(ious) * 100)


# ------------------------------------------------------------------------- official releases (converters)
ISPRS_RGB = {1: (255, 255, 255), 2: (0, 0, 255), 3: (0, 255, 255), 4: (0, 255, 0), 5: (255, 255, 0), 6: (255, 0, 0),
             0: (0, 0, 0)}
ISAID_RGB = {0: (0, 0, 0), 1: (0, 0, 63), 2: (0, 63, 63), 3: (0, 63, 0), 4: (0, 63, 127), 5: (0, 63, 191),
             6: (0, 63, 255), 7: (0, 127, 63), 8: (0, 127, 127), 9: (0, 0, 127), 10: (0, 0, 191), 11: (0, 0, 255),
             12: (0, 191, 127), 13: (0, 127, 191), 14: (0, 127, 255), 15: (0, 100, 155)}
# UAVid: official colours; index 7 (moving car) must end up as 3 (car)
UAVID_RGB = {0: (0, 0, 0), 1: (128, 0, 0), 2: (128, 64, 128), 3: (192, 0, 192), 4: (0, 128, 0), 5: (128, 128, 0),
             6: (64, 64, 0), 7: (64, 0, 128)}


def colourise(idx: np.ndarray, palette: Dict[int, Tuple[int, int, int]]) -> np.ndarray:
    out = np.zeros(idx.shape + (3,), dtype=np.uint8)
    for y in range(idx.shape[0]):
        for x in range(idx.shape[1]):
            out[y, x] = palette[int(idx[y, x])]
    return out


def write_rgb(path: Path, arr: np.ndarray, fmt: Optional[str] = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "RGB").save(path, format=fmt)
    return path


def zip_folder(folder: Path, zip_path: Path, arc_root: str) -> Path:
    """Zip every file of ``folder`` under ``arc_root/`` (how the official releases ship)."""
    with zipfile.ZipFile(zip_path, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f"{arc_root}/{f.relative_to(folder).as_posix()}")
    return zip_path


def png_bytes(arr: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format="PNG")
    return buf.getvalue()


def tiny_checkpoint(path: Path, seed: int = 0, noise: float = 0.05) -> Path:
    """A ``farslip-test-tiny`` checkpoint: open_clip's own init plus seeded noise on every tensor (so
    LayerNorms and biases are non-trivial and predictions vary across pixels)."""
    import open_clip
    import torch

    import farslip_ext  # noqa: F401  (registers farslip-test-tiny)

    torch.manual_seed(seed)
    model = open_clip.create_model("farslip-test-tiny")
    g = torch.Generator().manual_seed(seed + 1)
    sd = {k: v + noise * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
          for k, v in model.state_dict().items()}
    torch.save(sd, path)
    return path


def np_resize_bilinear(arr: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize of (C, H, W) with half-pixel centres and edge clamping (``align_corners=False``),
    written out axis by axis in numpy."""
    arr = np.asarray(arr, dtype=np.float64)

    def axis_weights(n_in: int, n_out: int):
        scale = n_in / n_out
        src = (np.arange(n_out) + 0.5) * scale - 0.5
        src = np.maximum(src, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        w1 = src - i0
        return i0, i1, w1

    y0, y1, wy = axis_weights(arr.shape[1], out_h)
    x0, x1, wx = axis_weights(arr.shape[2], out_w)
    rows = arr[:, y0, :] * (1 - wy)[None, :, None] + arr[:, y1, :] * wy[None, :, None]
    return rows[:, :, x0] * (1 - wx)[None, None, :] + rows[:, :, x1] * wx[None, None, :]


# ------------------------------------------------------------------------- user configs and plugins
USER_CONFIG = '''
# A hand-written mmseg config, from scratch: no farslip_ext base config, mmseg's own dataset and transforms.
custom_imports = dict(imports=['farslip_ext.segmentation'], allow_failed_imports=False)
default_scope = 'mmseg'
model = dict(
    type='FarSLIPSeg',
    clip=dict(model='farslip-test-tiny', pretrained={weights!r}),
    class_names={class_names!r},
    templates=['a photo of {{c}}.', 'an aerial image of {{c}}.'],
    slide_crop=64, slide_stride=32, device='cpu', text_cache=False)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='LoveDADataset', data_root={data_root!r}, reduce_zero_label=True,
                 data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'), pipeline=test_pipeline))
test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_cfg = dict(type='TestLoop')
log_level = 'WARNING'
'''

LOVEDA_LINES = ["background", "building,roof,house", "road", "water", "barren", "forest", "agricultural"]


def write_user_config(path: Path, weights: Path, data_root: Path, class_names: Sequence[str] = tuple(LOVEDA_LINES)
                      ) -> Path:
    """A from-scratch LoveDA config (see :data:`USER_CONFIG`) whose CLIP is ``farslip-test-tiny`` + ``weights``."""
    path.write_text(USER_CONFIG.format(weights=str(weights), class_names=list(class_names), data_root=str(data_root)),
                    encoding="utf-8")
    return path


TOY_CONFIG = '''
# A benchmark that is not in the paper: a short config, completed from farslip_ext's base config.
benchmark = dict(name='Toyland', roots=['Toyland'], raw_label_values=[0, 1, 2, 255],
                 official_release='made up for a test', presets=dict(segearth=dict(prob_thd=0.2)))
model = dict(class_names='classnames:cls_toyland.txt')
test_dataloader = dict(
    batch_size=2,
    dataset=dict(type='BaseSegDataset', metainfo=dict(classes=('meadow', 'roof', 'pond')), data_root='data/Toyland',
                 data_prefix=dict(img_path='images', seg_map_path='labels'), img_suffix='.png',
                 seg_map_suffix='.png', reduce_zero_label=False))
'''


def write_toy_plugin(folder: Path) -> Tuple[Path, Path]:
    """``folder/configs/toyland.py`` and ``folder/classnames/cls_toyland.txt`` (3 classes, one with synonyms)."""
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "classnames").mkdir(parents=True, exist_ok=True)
    (folder / "configs" / "toyland.py").write_text(TOY_CONFIG, encoding="utf-8")
    (folder / "classnames" / "cls_toyland.txt").write_text("meadow,grass\nroof\npond,lake\n", encoding="utf-8")
    return folder / "configs", folder / "classnames"


def make_toy_dataset(data_root: Path, seed: int = 0, sizes: Sequence[Tuple[int, int]] = ((48, 64), (64, 48))) -> dict:
    rng = np.random.default_rng(seed)
    root = Path(data_root) / "Toyland"
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    out = dict(root=root, images=[], labels=[], label_arrays=[])
    for i, (h, w) in enumerate(sizes):
        img, lab = blocky_image(h, w, rng), random_label(h, w, [0, 1, 2, 255], rng)
        ip, lp = root / "images" / f"t{i}.png", root / "labels" / f"t{i}.png"
        Image.fromarray(img, "RGB").save(ip)
        Image.fromarray(lab, "L").save(lp)
        out["images"].append(ip)
        out["labels"].append(lp)
        out["label_arrays"].append(lab)
    return out
