"""Seeded synthetic nadir "aerial" scenes with exact masks, and writers for the real on-disk formats.

Nothing here is real remote-sensing data: scenes are painted with numpy from a seed so tests and
smoke trainings need no download. Each land-cover class has its own colour *and* texture
(stripes for farmland, roof grids for residential, car rows for parking lots, ...) so that a tiny
CLIP can learn to tell them apart. A scene carries:

* ``image`` (H, W, 3) uint8, ``mask`` (H, W) class ids, ``instances`` (H, W) region ids (-1: none);
* ``regions``: tight boxes ``(x1, y1, x2, y2)`` (pixel edges, end exclusive) of the visible pixels
  of each object instance, with category name and id (the MGRS-200k segment of docs/reference/method.md §3.2);
* ``scene_label`` (the class with most pixels), a short ``caption`` and a ``long_caption`` that
  describe the content (classes, coverage, positions, counts).

Writers produce the formats of docs/reference/method.md §3: RS5M webdataset shards (§3.1), MGRS-200k
``text_info.json`` + ``global_imgs/`` (docs/reference/method.md §3.2), SkyScript-style CSVs (§3.3) and classification CSVs
with ``classnames.txt`` (docs/reference/method.md §3.5). Same seed -> byte-identical files.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

__all__ = [
    "CLASSES",
    "CLASS_TO_ID",
    "BACKGROUND_CLASSES",
    "Region",
    "Scene",
    "make_scene",
    "scene_seed",
    "encode_image",
    "write_rs5m_shards",
    "write_mgrs",
    "write_coco_detection",
    "write_skyscript_csv",
    "write_classification_csv",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

#: Land-cover classes; the index is the category id.
CLASSES: Tuple[str, ...] = (
    "forest",
    "farmland",
    "residential",
    "water",
    "river",
    "road",
    "parking lot",
    "bare land",
    "beach",
    "meadow",
)
CLASS_TO_ID: Dict[str, int] = {c: i for i, c in enumerate(CLASSES)}
#: Classes used as the scene background when no dominant class is requested.
BACKGROUND_CLASSES: Tuple[str, ...] = ("forest", "farmland", "meadow", "bare land")

_PHRASE = {
    "forest": "forest",
    "farmland": "farmland",
    "residential": "residential buildings",
    "water": "a lake",
    "river": "a river",
    "road": "a road",
    "parking lot": "a parking lot",
    "bare land": "bare land",
    "beach": "a beach",
    "meadow": "meadow",
}
_PLURAL = {
    "forest": "forest patches",
    "farmland": "farmland fields",
    "residential": "residential blocks",
    "water": "lakes",
    "river": "rivers",
    "road": "roads",
    "parking lot": "parking lots",
    "bare land": "bare land patches",
    "beach": "beaches",
    "meadow": "meadow patches",
}


@dataclass
class Region:
    """One object instance: tight box of its visible pixels (``x2``/``y2`` exclusive)."""

    box: Tuple[int, int, int, int]
    category: str
    category_id: int
    area: int


@dataclass
class Scene:
    """A synthetic aerial scene (see the module docstring)."""

    image: np.ndarray
    mask: np.ndarray
    instances: np.ndarray
    regions: List[Region]
    scene_label: str
    caption: str
    long_caption: str
    seed: int
    coverage: Dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> Tuple[int, int]:
        """``(W, H)`` like PIL."""
        return (int(self.image.shape[1]), int(self.image.shape[0]))

    @property
    def scene_label_id(self) -> int:
        return CLASS_TO_ID[self.scene_label]

    def to_pil(self) -> Image.Image:
        return Image.fromarray(self.image)

    def region_caption(self, region: Region) -> str:
        """A short free-text description of one region (used as the MGRS ``cap``)."""
        ys, xs = np.nonzero(self.instances == self.regions.index(region))
        return f"{_PHRASE[region.category]} in the {_location(xs.mean(), ys.mean(), self.mask.shape[0])} of the image"


# ---------------------------------------------------------------------------------------------------
# noise and textures


def _smooth_noise(rng: np.random.Generator, size: int, cell: float) -> np.ndarray:
    """Bilinearly interpolated value noise in [0, 1] with feature size ``cell`` pixels."""
    cell = max(float(cell), 1.0)
    n = int(size / cell) + 2
    grid = rng.random((n, n))
    c = np.arange(size) / cell
    i0 = np.floor(c).astype(np.int64)
    f = c - i0
    rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def _fine(rng: np.random.Generator, size: int, amp: float) -> np.ndarray:
    return rng.normal(0.0, amp, (size, size, 1))


def _flat(color: Sequence[float], size: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(color, dtype=np.float64), (size, size, 3)).copy()


def _tex_forest(rng: np.random.Generator, s: int) -> np.ndarray:
    crowns = _smooth_noise(rng, s, max(2.0, s / 40))[..., None]
    low = _smooth_noise(rng, s, s / 4)[..., None]
    return _flat((32, 78, 36), s) + (crowns - 0.5) * 60 + (low - 0.5) * 20 + _fine(rng, s, 4)


def _tex_meadow(rng: np.random.Generator, s: int) -> np.ndarray:
    low = _smooth_noise(rng, s, s / 5)[..., None]
    return _flat((128, 172, 88), s) + (low - 0.5) * 18 + _fine(rng, s, 6)


def _tex_farmland(rng: np.random.Generator, s: int) -> np.ndarray:
    period = max(4.0, s / 20)
    angle = rng.choice([0.0, np.pi / 2, np.pi / 4])
    yy, xx = np.mgrid[0:s, 0:s]
    stripe = (np.floor((xx * np.cos(angle) + yy * np.sin(angle)) / period) % 2)[..., None]
    a, b = np.array([188, 168, 96.0]), np.array([112, 142, 58.0])
    return a * stripe + b * (1 - stripe) + _fine(rng, s, 5)


def _tex_water(rng: np.random.Generator, s: int) -> np.ndarray:
    low = _smooth_noise(rng, s, s / 3)[..., None]
    return _flat((22, 46, 102), s) + (low - 0.5) * 12 + _fine(rng, s, 2)


def _tex_river(rng: np.random.Generator, s: int) -> np.ndarray:
    low = _smooth_noise(rng, s, s / 8)[..., None]
    return _flat((62, 124, 152), s) + (low - 0.5) * 16 + _fine(rng, s, 3)


def _tex_road(rng: np.random.Generator, s: int) -> np.ndarray:
    return _flat((104, 104, 108), s) + _fine(rng, s, 3)


def _tex_parking(rng: np.random.Generator, s: int) -> np.ndarray:
    q = max(3, s // 28)
    yy, xx = np.mgrid[0:s, 0:s]
    img = _flat((162, 162, 160), s)
    img[xx % q == 0] = (238, 238, 232)
    ny, nx = s // (2 * q) + 1, s // q + 1
    occupied = rng.random((ny, nx)) < 0.55
    colors = rng.integers(0, 256, (ny, nx, 3)).astype(np.float64)
    sy, sx = yy // (2 * q), xx // q
    interior = (xx % q >= 1) & (yy % (2 * q) >= 1) & (yy % (2 * q) < 2 * q - 1)
    car = interior & occupied[sy, sx]
    img[car] = colors[sy[car], sx[car]]
    return img + _fine(rng, s, 3)


_ROOFS = np.array([(172, 68, 52), (204, 112, 62), (150, 150, 154), (224, 222, 212), (118, 58, 48)], dtype=np.float64)


def _tex_residential(rng: np.random.Generator, s: int) -> np.ndarray:
    c = max(4, s // 16)
    yy, xx = np.mgrid[0:s, 0:s]
    img = _flat((192, 186, 176), s)
    n = s // c + 1
    built = rng.random((n, n)) < 0.8
    roof = _ROOFS[rng.integers(0, len(_ROOFS), (n, n))]
    cy, cx = yy // c, xx // c
    inner = (xx % c >= 1) & (xx % c < c - 1) & (yy % c >= 1) & (yy % c < c - 1) & built[cy, cx]
    shadow = ((xx % c == c - 1) | (yy % c == c - 1)) & built[cy, cx]
    img[shadow] = (78, 76, 74)
    img[inner] = roof[cy[inner], cx[inner]]
    return img + _fine(rng, s, 3)


def _tex_bare(rng: np.random.Generator, s: int) -> np.ndarray:
    low = _smooth_noise(rng, s, s / 6)[..., None]
    return _flat((166, 134, 98), s) + (low - 0.5) * 34 + _fine(rng, s, 7)


def _tex_beach(rng: np.random.Generator, s: int) -> np.ndarray:
    return _flat((234, 216, 166), s) + _fine(rng, s, 4)


_TEXTURES: Dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "forest": _tex_forest,
    "farmland": _tex_farmland,
    "residential": _tex_residential,
    "water": _tex_water,
    "river": _tex_river,
    "road": _tex_road,
    "parking lot": _tex_parking,
    "bare land": _tex_bare,
    "beach": _tex_beach,
    "meadow": _tex_meadow,
}

# ---------------------------------------------------------------------------------------------------
# shapes (boolean masks)


def _ellipse(rng: np.random.Generator, s: int, rmin: float, rmax: float, wobble: float = 0.0) -> np.ndarray:
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    cx, cy = rng.uniform(0.15, 0.85, 2) * s
    rx, ry = rng.uniform(rmin, rmax, 2) * s
    d = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
    if wobble:
        d = d + (_smooth_noise(rng, s, s / 6) - 0.5) * wobble
    return d <= 1.0


def _rectangle(rng: np.random.Generator, s: int, lo: float, hi: float) -> np.ndarray:
    w, h = (rng.uniform(lo, hi, 2) * s).astype(int) + 1
    x0 = int(rng.integers(0, max(1, s - w)))
    y0 = int(rng.integers(0, max(1, s - h)))
    m = np.zeros((s, s), dtype=bool)
    m[y0 : y0 + h, x0 : x0 + w] = True
    return m


def _band(rng: np.random.Generator, s: int, width: float, wavy: bool) -> np.ndarray:
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    along, across = (xx, yy) if rng.random() < 0.5 else (yy, xx)
    centre = rng.uniform(0.2, 0.8) * s
    if wavy:
        amp, freq, phase = rng.uniform(0.05, 0.15) * s, rng.uniform(1.0, 2.5) * 2 * np.pi / s, rng.uniform(0, 2 * np.pi)
        centre = centre + amp * np.sin(freq * along + phase)
    half = max(1.0, width * s / 2)
    return np.abs(across - centre) <= half


def _object_mask(rng: np.random.Generator, cls: str, s: int) -> np.ndarray:
    if cls == "river":
        return _band(rng, s, rng.uniform(0.07, 0.13), wavy=True)
    if cls == "road":
        return _band(rng, s, rng.uniform(0.03, 0.05), wavy=False)
    if cls in ("farmland", "residential"):
        return _rectangle(rng, s, 0.22, 0.45)
    if cls == "parking lot":
        return _rectangle(rng, s, 0.18, 0.32)
    if cls == "water":
        return _ellipse(rng, s, 0.12, 0.24)
    return _ellipse(rng, s, 0.12, 0.26, wobble=0.6)  # forest, meadow, bare land, beach


# ---------------------------------------------------------------------------------------------------
# captions


def _location(cx: float, cy: float, s: int) -> str:
    v = ("upper", "middle", "lower")[min(2, int(3 * cy / s))]
    h = ("left", "center", "right")[min(2, int(3 * cx / s))]
    names = {
        ("upper", "left"): "upper left",
        ("upper", "center"): "top",
        ("upper", "right"): "upper right",
        ("middle", "left"): "left",
        ("middle", "center"): "center",
        ("middle", "right"): "right",
        ("lower", "left"): "lower left",
        ("lower", "center"): "bottom",
        ("lower", "right"): "lower right",
    }
    return f"{names[(v, h)]} part"


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _captions(mask: np.ndarray, regions: List[Region]) -> Tuple[str, str, Dict[str, float], str]:
    s = mask.shape[0]
    counts = np.bincount(mask.ravel(), minlength=len(CLASSES))
    coverage = {CLASSES[i]: float(c) / mask.size for i, c in enumerate(counts) if c > 0}
    order = sorted(coverage, key=lambda c: (-coverage[c], CLASS_TO_ID[c]))
    dominant = order[0]
    others = [c for c in order[1:] if coverage[c] >= 0.03][:3]
    short = f"an aerial image of {_PHRASE[dominant]}"
    if others:
        short += " with " + _join([_PHRASE[c] for c in others])
    long_parts = [
        f"A satellite image dominated by {_PHRASE[dominant]}, "
        f"which covers about {round(100 * coverage[dominant])}% of the scene."
    ]
    n_inst: Dict[str, int] = {}
    for r in regions:
        n_inst[r.category] = n_inst.get(r.category, 0) + 1
    for c in order[1:]:
        if coverage[c] < 0.01:
            continue
        ys, xs = np.nonzero(mask == CLASS_TO_ID[c])
        where = _location(xs.mean(), ys.mean(), s)
        text = _PHRASE[c]
        verb = "lie" if c == "residential" else "lies"
        long_parts.append(
            f"{text[0].upper() + text[1:]} {verb} mainly in the {where} of the image, "
            f"covering about {max(1, round(100 * coverage[c]))}%."
        )
        if n_inst.get(c, 0) >= 2:
            long_parts.append(f"There are {n_inst[c]} separate {_PLURAL[c]}.")
    return short + ".", " ".join(long_parts), coverage, dominant


# ---------------------------------------------------------------------------------------------------
# scenes


def scene_seed(seed: int, index: int) -> int:
    """The seed of scene ``index`` of a dataset generated with ``seed`` (well mixed, 32 bit)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def make_scene(
    seed: int,
    size: int = 224,
    dominant: Optional[str] = None,
    num_objects: Optional[int] = None,
    min_region_pixels: Optional[int] = None,
) -> Scene:
    """Paint one synthetic aerial scene.

    Args:
        seed: The scene's seed (same seed and arguments -> identical arrays).
        size: Side in pixels (square scenes).
        dominant: Force the background (and thus the scene label) to this class; other objects
            then cover at most half of the image.
        num_objects: Objects painted on the background (default: 2-5, random).
        min_region_pixels: Instances with fewer visible pixels get no region (default: 0.5% of the image).

    Returns:
        A :class:`Scene` whose ``regions[k].box`` is the tight box of ``instances == k`` and whose
        ``mask`` equals ``regions[k].category_id`` on those pixels.
    """
    if dominant is not None and dominant not in CLASS_TO_ID:
        raise ValueError(f"unknown class {dominant!r}; classes are {list(CLASSES)}")
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    rng = np.random.default_rng(seed)
    s = int(size)
    bg = dominant if dominant is not None else str(rng.choice(BACKGROUND_CLASSES))
    mask = np.full((s, s), CLASS_TO_ID[bg], dtype=np.uint8)
    inst = np.full((s, s), -1, dtype=np.int32)
    n_obj = int(rng.integers(2, 6)) if num_objects is None else int(num_objects)
    candidates = [c for c in CLASSES if c != bg and c != "beach"]
    inst_classes: List[str] = []
    for _ in range(n_obj):
        cls = str(rng.choice(candidates))
        shapes: List[Tuple[str, np.ndarray]] = []
        m = _object_mask(rng, cls, s)
        if cls == "water" and rng.random() < 0.5:
            # a beach ring around the lake: a dilated copy painted first
            pad = max(1, int(round(0.04 * s)))
            ring = m.copy()
            for axis in (0, 1):
                for shift in range(1, pad + 1):
                    ring |= np.roll(m, shift, axis) | np.roll(m, -shift, axis)
            shapes.append(("beach", ring))
        shapes.append((cls, m))
        saved = (mask.copy(), inst.copy(), len(inst_classes))
        for c, sm in shapes:
            mask[sm] = CLASS_TO_ID[c]
            inst[sm] = len(inst_classes)
            inst_classes.append(c)
        if dominant is not None and (mask == CLASS_TO_ID[bg]).mean() < 0.5:
            mask, inst = saved[0], saved[1]
            del inst_classes[saved[2] :]
    # regions: visible pixels of each instance; tiny remnants lose their instance id
    min_px = max(1, int(0.005 * s * s)) if min_region_pixels is None else int(min_region_pixels)
    regions: List[Region] = []
    final = np.full((s, s), -1, dtype=np.int32)
    for k, c in enumerate(inst_classes):
        ys, xs = np.nonzero(inst == k)
        if len(ys) < min_px:
            continue
        final[ys, xs] = len(regions)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        regions.append(Region(box=box, category=c, category_id=CLASS_TO_ID[c], area=int(len(ys))))
    # textures, in class-id order so the RNG stream does not depend on dict order
    img = np.zeros((s, s, 3), dtype=np.float64)
    for cid in np.unique(mask):
        sel = mask == cid
        img[sel] = _TEXTURES[CLASSES[int(cid)]](rng, s)[sel]
    img = img * rng.uniform(0.94, 1.06, 3) + rng.normal(0.0, 2.0, img.shape)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    short, long_, coverage, label = _captions(mask, regions)
    return Scene(
        image=image,
        mask=mask,
        instances=final,
        regions=regions,
        scene_label=label,
        caption=short,
        long_caption=long_,
        seed=int(seed),
        coverage=coverage,
    )


def encode_image(image: Union[np.ndarray, Image.Image], image_format: str = "jpeg", quality: int = 90) -> bytes:
    """Encode an image deterministically (PNG or JPEG bytes, no metadata)."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    buf = io.BytesIO()
    fmt = image_format.lower()
    if fmt in ("jpg", "jpeg"):
        pil.save(buf, format="JPEG", quality=int(quality))
    elif fmt == "png":
        pil.save(buf, format="PNG")
    else:
        raise ValueError(f"image_format must be 'jpeg' or 'png', got {image_format!r}")
    return buf.getvalue()


def _ext(image_format: str) -> str:
    return "png" if image_format.lower() == "png" else "jpg"


def _pick_caption(scene: Scene, caption: str) -> str:
    if caption == "short":
        return scene.caption
    if caption == "long":
        return scene.long_caption
    raise ValueError(f"caption must be 'short' or 'long', got {caption!r}")


# ---------------------------------------------------------------------------------------------------
# writers


def write_rs5m_shards(
    out_dir: PathLike,
    n: int,
    shard_size: int = 100,
    seed: int = 0,
    size: int = 224,
    prefix: str = "synthetic-train",
    image_format: str = "jpeg",
    quality: int = 90,
    caption: str = "short",
) -> List[Path]:
    """Write ``n`` scenes as RS5M-style webdataset shards (docs/reference/method.md §3.1) with webdataset's ``TarWriter``.

    Each sample has the members ``<key>.img_content`` (encoded image), ``<key>.img_name`` and
    ``<key>.caption``; tar headers use a fixed mtime/owner so files are byte-reproducible.

    Returns:
        The shard paths ``out_dir/{prefix}-{0000..}.tar``.
    """
    import webdataset as wds

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: List[Path] = []
    n_shards = max(1, -(-int(n) // int(shard_size)))
    for sh in range(n_shards):
        path = out / f"{prefix}-{sh:04d}.tar"
        with wds.TarWriter(str(path), encoder=False, mtime=0.0) as tw:
            for i in range(sh * shard_size, min(n, (sh + 1) * shard_size)):
                scene = make_scene(scene_seed(seed, i), size)
                tw.write(
                    {
                        "__key__": f"{i:08d}",
                        "img_content": encode_image(scene.image, image_format, quality),
                        "img_name": f"synthetic_{i:08d}.{_ext(image_format)}".encode("utf-8"),
                        "caption": _pick_caption(scene, caption).encode("utf-8"),
                    }
                )
        paths.append(path)
    logger.info("wrote %d synthetic RS5M samples in %d shard(s) to %s", n, len(paths), out)
    return paths


def write_mgrs(
    out_dir: PathLike,
    n: int,
    seed: int = 0,
    size: int = 224,
    image_format: str = "jpeg",
    quality: int = 90,
    cap_every: int = 0,
    bbox_keys: Sequence[str] = ("x1", "y1", "x2", "y2", "W", "H"),
) -> Path:
    """Write an MGRS-200k-style ``text_info.json`` and ``global_imgs/`` folder (docs/reference/method.md §3.2).

    Items carry ``global_filepath`` (relative to ``global_imgs``), ``global_caption`` (short),
    ``detailed_caption`` (long) and ``segment``: one entry per region with
    ``bbox`` = ``{x1, y1, x2, y2, W, H}`` in pixels (names from ``bbox_keys``, in that order),
    ``category`` and ``category_id``; every ``cap_every``-th segment also gets a ``cap``.

    Note: at ``size=224`` many objects are smaller than the reference ``min_size=64``; lower
    ``min_size`` or raise ``size`` when training on these files.

    Returns:
        The path of ``text_info.json`` (use ``image_root=out_dir/"global_imgs"``).
    """
    if len(bbox_keys) != 6:
        raise ValueError(f"bbox_keys needs 6 names (x1, y1, x2, y2, W, H), got {list(bbox_keys)}")
    out = Path(out_dir)
    img_dir = out / "global_imgs"
    img_dir.mkdir(parents=True, exist_ok=True)
    items = []
    seg_no = 0
    for i in range(int(n)):
        scene = make_scene(scene_seed(seed, i), size)
        name = f"{i:08d}.{_ext(image_format)}"
        (img_dir / name).write_bytes(encode_image(scene.image, image_format, quality))
        W, H = scene.size
        segments = []
        for r in scene.regions:
            seg = {
                "bbox": dict(zip(bbox_keys, (*r.box, W, H))),
                "category": r.category,
                "category_id": r.category_id,
            }
            seg_no += 1
            if cap_every and seg_no % cap_every == 0:
                seg["cap"] = scene.region_caption(r)
            segments.append(seg)
        items.append(
            {
                "global_filepath": name,
                "global_caption": scene.caption,
                "detailed_caption": scene.long_caption,
                "segment": segments,
            }
        )
    path = out / "text_info.json"
    path.write_text(json.dumps(items, indent=1), encoding="utf-8")
    logger.info("wrote %d synthetic MGRS items to %s", n, path)
    return path


def write_coco_detection(out_dir: PathLike, n: int, seed: int = 0, size: int = 224, image_format: str = "jpeg",
                         quality: int = 90) -> Path:
    """Write a COCO-style detection set: ``annotations.json`` and ``images/`` (a format for plugins' stage-2 data).

    ``images``: ``{id, file_name, width, height, caption}``; ``annotations``: ``{id, image_id, category_id,
    bbox: [x, y, w, h] in pixels, area, iscrowd: 0}``, one per region; ``categories``: ``{id, name}`` of
    the 10 synthetic classes. Returns the path of ``annotations.json`` (images under ``out_dir/"images"``).
    """
    out = Path(out_dir)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(int(n)):
        scene = make_scene(scene_seed(seed, i), size)
        name = f"{i:08d}.{_ext(image_format)}"
        (img_dir / name).write_bytes(encode_image(scene.image, image_format, quality))
        W, H = scene.size
        images.append({"id": i + 1, "file_name": name, "width": W, "height": H, "caption": scene.caption})
        for r in scene.regions:
            x1, y1, x2, y2 = r.box
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": r.category_id,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": r.area, "iscrowd": 0})
    categories = [{"id": CLASS_TO_ID[c], "name": c} for c in CLASSES]
    path = out / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}, indent=1),
                    encoding="utf-8")
    logger.info("wrote %d synthetic COCO-style images to %s", n, path)
    return path


def write_skyscript_csv(
    out_dir: PathLike,
    n: int,
    seed: int = 0,
    size: int = 224,
    name: str = "skyscript_val.csv",
    image_dir: str = "images",
    caption: str = "short",
    image_format: str = "jpeg",
    quality: int = 90,
) -> Path:
    """Write a SkyScript-style CSV ``filepath,title,label`` (docs/reference/method.md §3.3); images under ``out_dir/image_dir``.

    ``filepath`` is relative to ``out_dir``; ``title`` is the short (or long) caption; ``label`` the
    scene class name.
    """
    out = Path(out_dir)
    (out / image_dir).mkdir(parents=True, exist_ok=True)
    path = out / name
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["filepath", "title", "label"])
        for i in range(int(n)):
            scene = make_scene(scene_seed(seed, i), size)
            rel = f"{image_dir}/{i:08d}.{_ext(image_format)}"
            (out / rel).write_bytes(encode_image(scene.image, image_format, quality))
            w.writerow([rel, _pick_caption(scene, caption), scene.scene_label])
    return path


def write_classification_csv(
    out_dir: PathLike,
    n_per_class: int,
    seed: int = 0,
    size: int = 224,
    classes: Sequence[str] = CLASSES,
    name: str = "test.csv",
    image_dir: str = "images",
    image_format: str = "jpeg",
    quality: int = 90,
) -> Tuple[Path, Path]:
    """Write a classification benchmark: ``filepath,label`` CSV (label = index) and ``classnames.txt`` (docs/reference/method.md §3.5).

    Scene ``j`` of class ``c`` is painted with ``dominant=c``, so its label is exact.

    Returns:
        ``(csv_path, classnames_path)``; ``filepath`` is relative to ``out_dir``.
    """
    unknown = [c for c in classes if c not in CLASS_TO_ID]
    if unknown:
        raise ValueError(f"unknown classes {unknown}; classes are {list(CLASSES)}")
    out = Path(out_dir)
    (out / image_dir).mkdir(parents=True, exist_ok=True)
    path = out / name
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["filepath", "label"])
        i = 0
        for j in range(int(n_per_class)):
            for label, c in enumerate(classes):
                scene = make_scene(scene_seed(seed, i), size, dominant=c)
                rel = f"{image_dir}/{i:08d}.{_ext(image_format)}"
                (out / rel).write_bytes(encode_image(scene.image, image_format, quality))
                w.writerow([rel, label])
                i += 1
    names = out / "classnames.txt"
    names.write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")
    return path, names
