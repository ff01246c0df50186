"""The demo's embedded dataset: seeded synthetic scenes written in the real on-disk formats.

Everything comes from :mod:`farslip_ext.data.synthetic` (fabricated nadir scenes with exact masks,
scene labels, short/long captions and region boxes). Each part has its own seed stream
(:func:`stream_seed`), so the pretraining pairs, the training, validation and test sets never share
a scene (:data:`SPLITS`; ``tests/demo`` checks it by image hashes):

=================  ==========================================================  ====================
part               layout                                                      read by
=================  ==========================================================  ====================
``rs5m/``          RS5M webdataset shards (``img_content``/``img_name``/``caption``)  stage 1 (``RS5MWebDataset``)
``mgrs/``          MGRS-200k ``text_info.json`` + ``global_imgs/``              stage 2 (``MGRSJsonDataset``)
``rs5m_val/``      the same format as ``rs5m/``, other scenes                  held-out stage-1 objective
``mgrs_val/``      the same format as ``mgrs/``, other scenes                  held-out stage-2 objective
``cls/``           SkyScript classification CSV ``filepath,label`` + ``classnames.txt``  zero-shot classification
``retrieval/``     SkyScript CSV ``filepath,title,label``                      image-text retrieval
``ovss/``          ``OpenEarthMap/img_dir/val/*.tif`` + ``ann_dir/val/*.tif``  OVSS (mmseg ``Runner.test()``)
=================  ==========================================================  ====================

The OVSS set uses the OpenEarthMap benchmark layout (9 classes, label 0 scored as a class); the ten
synthetic classes are mapped onto its nine label values by :data:`OVSS_CLASS_MAP` and the class-name
file :data:`OVSS_CLASS_NAMES` names each label value with the demo's own vocabulary.
"""
from __future__ import annotations

import csv
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from farslip_ext.data import synthetic as syn

__all__ = [
    "DemoSizes",
    "FULL_SIZES",
    "QUICK_SIZES",
    "DemoData",
    "SEED_OFFSETS",
    "SPLITS",
    "stream_seed",
    "OVSS_BENCHMARK",
    "OVSS_CLASS_MAP",
    "OVSS_CLASS_NAMES",
    "OVSS_LEGEND",
    "PROMPT_TEMPLATES",
    "write_demo_data",
    "write_ovss_openearthmap",
    "write_class_names",
    "write_pretrain_pairs",
    "save_tif",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

#: Offsets added to the seed of the demo CLIP's pretraining data (``pretrain``) and of its held-out
#: check (``pretrain_eval``); the demo's own parts get :func:`stream_seed` instead.
SEED_OFFSETS: Dict[str, int] = dict(pretrain=1000, pretrain_eval=2000, rs5m=10, mgrs=20, cls=30, retrieval=40,
                                    ovss=50, rs5m_val=60, mgrs_val=70)

#: What each part of a demo run is used for: training, validation (the held-out training objective)
#: or test (the reported zero-shot, retrieval and OVSS metrics). No scene is in two parts.
SPLITS: Dict[str, str] = dict(rs5m="train (stage 1)", mgrs="train (stage 2)", rs5m_val="validation (stage 1)",
                              mgrs_val="validation (stage 2)", cls="test", retrieval="test", ovss="test")


def stream_seed(seed: int, part: str) -> int:
    """The seed of one part of the demo data for the run seed ``seed`` (a well-mixed 32-bit number).

    ``seed + offset`` would let ``--seed 970`` draw the test scenes from the stream the demo CLIP
    was pretrained on (``0 + 1000``); mixing ``(seed, part)`` keeps every part of every run apart
    from the pretraining streams.
    """
    s = syn.scene_seed(int(seed), 1_000_000 + SEED_OFFSETS[part])
    reserved = {SEED_OFFSETS["pretrain"], SEED_OFFSETS["pretrain_eval"], SEED_OFFSETS["pretrain_eval"] + 1}
    if s in reserved:  # pragma: no cover - a 1 in 10^9 event, but a silent overlap would be worse
        raise ValueError(f"demo seed {seed} maps part {part!r} onto a pretraining stream; use another --seed")
    return s

#: The benchmark layout the demo's OVSS set is written in (see farslip_ext.segmentation.benchmarks).
OVSS_BENCHMARK = "openearthmap"

#: OpenEarthMap label value (0..8) of each synthetic class. OpenEarthMap's classes are background,
#: bareland, grass, pavement, road, tree, water, cropland, building; ``water`` and ``river`` share
#: label 6, and ``beach`` takes label 0 (scored as a ninth class by the benchmark).
OVSS_CLASS_MAP: Dict[str, int] = {
    "beach": 0, "bare land": 1, "meadow": 2, "parking lot": 3, "road": 4, "forest": 5, "water": 6, "river": 6,
    "farmland": 7, "residential": 8,
}
#: The class-name file of the demo's OVSS set: line ``i`` names label value ``i`` (synonyms by commas).
OVSS_CLASS_NAMES: Tuple[str, ...] = ("beach", "bare land", "meadow", "parking lot", "road", "forest",
                                     "water,river", "farmland", "residential")
#: Short legend names of the nine label values (figures).
OVSS_LEGEND: Tuple[str, ...] = ("beach", "bare land", "meadow", "parking lot", "road", "forest", "water/river",
                                "farmland", "residential")

#: Prompts of the scene label in the pretraining pairs (the first two are the zero-shot templates
#: ``farslip``; the second is also the stage-2 region prompt).
PROMPT_TEMPLATES: Tuple[str, ...] = ("a satellite photo of {}.", "a satellite image of {}", "an aerial image of {}.")


@dataclass(frozen=True)
class DemoSizes:
    """How much data each part of the embedded dataset holds."""

    scene_size: int = 128
    rs5m: int = 512
    rs5m_shard: int = 128
    mgrs: int = 256
    mgrs_size: int = 192
    cls_per_class: int = 20
    retrieval: int = 200
    ovss: int = 12
    ovss_size: int = 192
    rs5m_val: int = 128
    mgrs_val: int = 64


FULL_SIZES = DemoSizes()
QUICK_SIZES = DemoSizes(scene_size=96, rs5m=24, rs5m_shard=12, mgrs=12, mgrs_size=128, cls_per_class=2,
                        retrieval=16, ovss=2, ovss_size=96, rs5m_val=8, mgrs_val=8)


@dataclass
class DemoData:
    """Paths of the written embedded dataset (all under ``root``)."""

    root: Path
    sizes: DemoSizes
    seed: int
    rs5m_urls: str
    rs5m_count: int
    mgrs_json: Path
    mgrs_images: Path
    cls_csv: Path
    cls_classnames: Path
    retrieval_csv: Path
    ovss_root: Path
    ovss_class_names: Path
    rs5m_val_urls: str = ""
    mgrs_val_json: Path = Path()
    mgrs_val_images: Path = Path()
    extra_ovss: Dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, object]:
        out = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items() if k != "sizes"}
        out["sizes"] = asdict(self.sizes)
        out["extra_ovss"] = {k: str(v) for k, v in self.extra_ovss.items()}
        return out


# --------------------------------------------------------------------------------------------- helpers
def save_tif(array: np.ndarray, path: PathLike) -> Path:
    """Write an RGB (H, W, 3) or single-channel 'L' (H, W) uint8 array as an uncompressed TIFF."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.ascontiguousarray(array, dtype=np.uint8)
    Image.fromarray(arr, mode="RGB" if arr.ndim == 3 else "L").save(path, format="TIFF")
    return path


def _label_lut() -> np.ndarray:
    lut = np.full(256, 255, dtype=np.uint8)
    for name, value in OVSS_CLASS_MAP.items():
        lut[syn.CLASS_TO_ID[name]] = value
    return lut


def write_class_names(path: PathLike, lines: Sequence[str] = OVSS_CLASS_NAMES) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_ovss_openearthmap(data_root: PathLike, n: int, seed: int, size: int) -> Path:
    """Write ``n`` scenes as ``<data_root>/OpenEarthMap/img_dir/val/*.tif`` (RGB) and ``ann_dir/val/*.tif``
    (single-channel labels 0..8 of :data:`OVSS_CLASS_MAP`). Every other scene is forced to a different
    dominant class so the few images cover all classes. Returns the ``OpenEarthMap`` folder."""
    root = Path(data_root) / "OpenEarthMap"
    lut = _label_lut()
    order = ("residential", "farmland", "water", "parking lot", "forest", "bare land", "meadow", "river", "beach",
             "road")
    for i in range(int(n)):
        dominant = order[(i // 2) % len(order)] if i % 2 == 0 else None
        if dominant in ("road", "river", "beach"):
            dominant = None  # thin classes make odd whole-scene backgrounds; they appear as objects
        scene = syn.make_scene(syn.scene_seed(seed, i), size, dominant=dominant)
        name = f"demo_{i:04d}.tif"
        save_tif(scene.image, root / "img_dir" / "val" / name)
        save_tif(lut[scene.mask], root / "ann_dir" / "val" / name)
    return root


# ------------------------------------------------------------------------------------------- pretraining
def write_pretrain_pairs(out_dir: PathLike, n_scenes: int, seed: int, size: int = 128, region_crops: bool = False,
                         min_region_side: int = 12) -> Tuple[Path, Dict[str, int]]:
    """Image-caption pairs for pretraining the demo CLIP: ``pairs.csv`` (``filepath,caption``) + images.

    Per scene (every other one forced to a dominant class, cycling through the classes): the short
    caption, a prompt of the scene label (:data:`PROMPT_TEMPLATES`) and one region caption
    (``"a road in the center part of the image"``), all paired with the whole scene, like the
    image-level web pairs a generic CLIP learns from. With ``region_crops`` also, per region whose box
    sides are at least ``min_region_side`` pixels, the crop with ``"a satellite image of {category}"``
    (off for the shipped model: region-level alignment is what the FarSLIP stages add).

    Returns:
        ``(csv_path, counts)`` with the numbers of scenes, crops and rows.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "regions").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows: List[Tuple[str, str]] = []
    n_crops = 0
    for i in range(int(n_scenes)):
        dominant = syn.CLASSES[(i // 2) % len(syn.CLASSES)] if i % 2 == 0 else None
        scene = syn.make_scene(syn.scene_seed(seed, i), size, dominant=dominant)
        rel = f"images/{i:06d}.jpg"
        (out / rel).write_bytes(syn.encode_image(scene.image))
        rows.append((rel, scene.caption))
        tpl = PROMPT_TEMPLATES[int(rng.integers(len(PROMPT_TEMPLATES)))]
        rows.append((rel, tpl.format(scene.scene_label)))
        if scene.regions:
            r = scene.regions[int(rng.integers(len(scene.regions)))]
            rows.append((rel, scene.region_caption(r)))
        for k, r in enumerate(scene.regions if region_crops else ()):
            x1, y1, x2, y2 = r.box
            if min(x2 - x1, y2 - y1) < min_region_side:
                continue
            crel = f"regions/{i:06d}_{k}.jpg"
            (out / crel).write_bytes(syn.encode_image(scene.image[y1:y2, x1:x2]))
            rows.append((crel, f"a satellite image of {r.category}"))
            n_crops += 1
    path = out / "pairs.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["filepath", "caption"])
        w.writerows(rows)
    counts = dict(scenes=int(n_scenes), region_crops=n_crops, rows=len(rows))
    logger.info("wrote %d pretraining pairs (%d scenes, %d region crops) to %s", len(rows), n_scenes, n_crops, path)
    return path, counts


# ------------------------------------------------------------------------------------------------ demo
def write_demo_data(root: PathLike, sizes: DemoSizes = FULL_SIZES, seed: int = 0) -> DemoData:
    """Write the embedded dataset under ``root`` (see the module docstring); returns its paths."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    s = sizes
    shards = syn.write_rs5m_shards(root / "rs5m", n=s.rs5m, shard_size=s.rs5m_shard,
                                   seed=stream_seed(seed, "rs5m"), size=s.scene_size, prefix="demo-train")
    urls = str(root / "rs5m" / f"demo-train-{{0000..{len(shards) - 1:04d}}}.tar")
    val_shards = syn.write_rs5m_shards(root / "rs5m_val", n=s.rs5m_val, shard_size=s.rs5m_shard,
                                       seed=stream_seed(seed, "rs5m_val"), size=s.scene_size, prefix="demo-val")
    val_urls = str(root / "rs5m_val" / f"demo-val-{{0000..{len(val_shards) - 1:04d}}}.tar")
    mgrs_json = syn.write_mgrs(root / "mgrs", n=s.mgrs, seed=stream_seed(seed, "mgrs"), size=s.mgrs_size,
                               cap_every=5)
    mgrs_val_json = syn.write_mgrs(root / "mgrs_val", n=s.mgrs_val, seed=stream_seed(seed, "mgrs_val"),
                                   size=s.mgrs_size, cap_every=5)
    cls_csv, cls_names = syn.write_classification_csv(root / "cls", n_per_class=s.cls_per_class,
                                                      seed=stream_seed(seed, "cls"), size=s.scene_size,
                                                      name="img_txt_pairs_val.csv")
    ret_csv = syn.write_skyscript_csv(root / "retrieval", n=s.retrieval, seed=stream_seed(seed, "retrieval"),
                                      size=s.scene_size, name="img_txt_pairs_test.csv")
    ovss_root = root / "ovss"
    write_ovss_openearthmap(ovss_root, s.ovss, stream_seed(seed, "ovss"), s.ovss_size)
    class_file = write_class_names(root / "ovss" / "cls_demo.txt")
    logger.info("embedded dataset written to %s", root)
    return DemoData(root=root, sizes=s, seed=seed, rs5m_urls=urls, rs5m_count=s.rs5m, mgrs_json=mgrs_json,
                    mgrs_images=root / "mgrs" / "global_imgs", cls_csv=cls_csv, cls_classnames=cls_names,
                    retrieval_csv=ret_csv, ovss_root=ovss_root, ovss_class_names=class_file,
                    rs5m_val_urls=val_urls, mgrs_val_json=mgrs_val_json,
                    mgrs_val_images=root / "mgrs_val" / "global_imgs")


def main(argv: Sequence[str] = None) -> int:
    """``python -m farslip_ext.demo.data OUT [--quick] [--seed N]``: write the embedded dataset and print
    its paths as JSON (the journeys in docs/journeys/ use it as "your data")."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m farslip_ext.demo.data",
                                description="Write the demo's embedded dataset (synthetic scenes in the real on-disk "
                                            "formats: RS5M shards, MGRS JSON, SkyScript CSVs, an OpenEarthMap-layout "
                                            "OVSS set) into OUT and print its paths as JSON.")
    p.add_argument("out", help="output folder (created; existing files of the same names are replaced)")
    p.add_argument("--quick", action="store_true", help="the tiny sizes of `farslip demo --quick` (seconds)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scenes (default 0)")
    args = p.parse_args(argv)
    data = write_demo_data(args.out, QUICK_SIZES if args.quick else FULL_SIZES, args.seed)
    print(json.dumps(data.to_dict(), indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
