"""Converters from each benchmark's official release to the evaluated layout (docs/reference/ovss-evaluation.md#5-dataset-layouts-on-disk).

Every label is written as a single-channel PIL ``'L'`` image, read back and compared, and its values
are checked against the dataset's label set. This is the fix for the most common SegEarth-OV
complaint (docs/reference/ovss-evaluation.md §6): converters that save ``'P'`` images without a palette, after which labels decode as
0/1 and classes silently disappear from the evaluation.

=============  ==========================================================  ===================================
dataset        official release (folders or the zips they ship in)        evaluated layout under the data root
=============  ==========================================================  ===================================
openearthmap   ``<region>/images/*.tif``, ``<region>/labels/*.tif``,        ``OpenEarthMap/{img,ann}_dir/val``
               ``val.txt``
loveda         ``Val/{Rural,Urban}/{images_png,masks_png}`` (``Val.zip``)   ``LoveDA/{img,ann}_dir/val``
potsdam        ``top_potsdam_<i>_<j>_RGB.tif``,                             ``potsdam/{img,ann}_dir/val`` (512 crops)
               ``top_potsdam_<i>_<j>_label_noBoundary.tif``
vaihingen      ``top/top_mosaic_09cm_area<N>.tif``,                         ``vaihingen/{img,ann}_dir/val`` (512 crops)
               ``top_mosaic_09cm_area<N>_noBoundary.tif``
uavid          ``test_gt/<seq>/{Images,Labels}/<frame>.png``                ``UAVid/{img,ann}_dir/test`` (1280×1080)
isaid          ``val/images/P*.png``,                                       ``iSAID/{img,ann}_dir/val`` (896, overlap 384)
               ``val/Semantic_masks/images/P*_instance_color_RGB.png``
udd5           ``val/{src/*.JPG, gt/*.png}``                                ``UDD5/val/{src,gt}``
vdd            ``test/{src/*.JPG, gt/*.png}``                               ``VDD/test/{src,gt}``
=============  ==========================================================  ===================================

Crops follow the reference converters: Potsdam/Vaihingen tiles of 512 at multiples of 512 with the last
one snapped to the border (mmseg's converters, 2016 / 398 val crops); iSAID and UAVid tiles with the
stated overlap, images smaller than a tile padded with 0 (labels with 255).
"""
from __future__ import annotations

import logging
import re
import shutil
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from farslip_ext.errors import DataError, LabelFormatError
from farslip_ext.ovss.benchmarks import Benchmark, find_dataset_root, get_benchmark

__all__ = [
    "LabelRangeError",
    "LabelFormatError",
    "ConversionReport",
    "CONVERTERS",
    "convert_dataset",
    "validate_layout",
    "read_index_label",
    "write_index_label",
    "colour_to_index",
    "tile_starts",
    "clip_starts",
    "ISPRS_PALETTE",
    "ISAID_PALETTE",
    "UAVID_PALETTE",
    "POTSDAM_VAL_TILES",
    "VAIHINGEN_VAL_AREAS",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: ISPRS colour labels (RGB) -> index; 0 = boundary/undefined (ignored through reduce_zero_label).
ISPRS_PALETTE: Dict[Tuple[int, int, int], int] = {
    (0, 0, 0): 0, (255, 255, 255): 1, (0, 0, 255): 2, (0, 255, 255): 3, (0, 255, 0): 4, (255, 255, 0): 5,
    (255, 0, 0): 6,
}
#: iSAID semantic masks (RGB) -> index (mmseg's ``iSAID_palette``).
ISAID_PALETTE: Dict[Tuple[int, int, int], int] = {
    (0, 0, 0): 0, (0, 0, 63): 1, (0, 63, 63): 2, (0, 63, 0): 3, (0, 63, 127): 4, (0, 63, 191): 5, (0, 63, 255): 6,
    (0, 127, 63): 7, (0, 127, 127): 8, (0, 0, 127): 9, (0, 0, 191): 10, (0, 0, 255): 11, (0, 191, 127): 12,
    (0, 127, 191): 13, (0, 127, 255): 14, (0, 100, 155): 15,
}
#: UAVid colour labels (RGB) -> index; static (192,0,192) and moving (64,0,128) car are both 3.
UAVID_PALETTE: Dict[Tuple[int, int, int], int] = {
    (0, 0, 0): 0, (128, 0, 0): 1, (128, 64, 128): 2, (192, 0, 192): 3, (0, 128, 0): 4, (128, 128, 0): 5,
    (64, 64, 0): 6, (64, 0, 128): 3,
}
#: mmseg's Potsdam val tiles (14 -> 2016 crops) and Vaihingen val areas (17 -> 398 crops).
POTSDAM_VAL_TILES = ("5_15", "6_15", "6_13", "3_13", "4_14", "6_14", "5_14", "2_13", "4_15", "2_14", "5_13", "4_13",
                     "3_14", "7_13")
VAIHINGEN_VAL_AREAS = ("area6", "area24", "area35", "area16", "area14", "area22", "area10", "area4", "area2", "area20",
                       "area8", "area31", "area33", "area27", "area38", "area12", "area29")


class LabelRangeError(LabelFormatError):
    """A label holds values outside the dataset's label set."""


@dataclass
class ConversionReport:
    """What a converter wrote."""

    dataset: str
    out_root: Path
    images: int = 0
    labels: int = 0
    label_counts: Dict[int, int] = field(default_factory=dict)
    unknown_colour_pixels: int = 0

    def summary(self) -> str:
        vals = ", ".join(f"{k}: {v}" for k, v in sorted(self.label_counts.items()))
        extra = f"; {self.unknown_colour_pixels} pixels of unknown colour" if self.unknown_colour_pixels else ""
        return f"{self.dataset}: {self.images} images, {self.labels} labels in {self.out_root} (label pixels {vals}){extra}"


# --------------------------------------------------------------------------------------- label I/O
def _bad_values(arr: np.ndarray, valid: Iterable[int]) -> Dict[int, int]:
    vals, counts = np.unique(arr, return_counts=True)
    ok = set(int(v) for v in valid)
    return {int(v): int(c) for v, c in zip(vals, counts) if int(v) not in ok}


def check_label_values(arr: np.ndarray, valid: Iterable[int], path: PathLike, fix: str = "") -> None:
    """Raise :class:`LabelRangeError` when ``arr`` holds a value outside ``valid`` (naming file, values, fix)."""
    valid = sorted(set(int(v) for v in valid))
    bad = _bad_values(arr, valid)
    if bad:
        shown = ", ".join(f"{v} ({c} px)" for v, c in list(bad.items())[:8])
        raise LabelRangeError(f"label {path} holds values outside the dataset's label set {valid}: {shown}. "
                              f"{fix or 'The file is not an index label of this dataset (wrong dataset, or a colour/palette image); re-create it from the official release.'}")


def read_index_label(path: PathLike, valid: Optional[Iterable[int]] = None) -> np.ndarray:
    """An index label as a 2-D uint8 array. ``'L'``/``'P'`` (indices, palette ignored), ``'I'``/``'I;16'``
    and grey-as-RGB images are accepted; true colour images are a :class:`LabelFormatError`."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.asarray(im)
    except Exception as e:
        raise LabelFormatError(f"cannot decode label {path} ({type(e).__name__}: {e}); re-download it") from None
    if mode == "1":
        arr = arr.astype(np.uint8)
    if arr.ndim == 3:
        if arr.shape[2] >= 3 and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
            arr = arr[..., 0]
        elif arr.shape[2] == 1:
            arr = arr[..., 0]
        else:
            raise LabelFormatError(f"label {path} is a {mode} colour image; this dataset's release ships index "
                                   f"labels (one class id per pixel). Check that you passed the right folder.")
    if arr.dtype != np.uint8:
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
            raise LabelRangeError(f"label {path} ({mode}) holds values outside 0..255")
        arr = arr.astype(np.uint8)
    if valid is not None:
        check_label_values(arr, valid, path)
    return np.ascontiguousarray(arr)


def write_index_label(arr: np.ndarray, path: PathLike, valid: Optional[Iterable[int]] = None) -> Path:
    """Save a single-channel ``'L'`` label (PNG, or TIFF for ``.tif``), verified by reading it back."""
    path = Path(path)
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise LabelFormatError(f"refusing to write {path}: a label must be 2-D, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
            raise LabelRangeError(f"refusing to write {path}: values outside 0..255")
        arr = arr.astype(np.uint8)
    if valid is not None:
        check_label_values(arr, valid, path, fix="This is a converter bug or an unexpected release file; "
                                                 "please report it with the source file name.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "TIFF" if path.suffix.lower() in (".tif", ".tiff") else "PNG"
    Image.fromarray(np.ascontiguousarray(arr), "L").save(path, format=fmt)
    with Image.open(path) as im:
        back_mode, back = im.mode, np.asarray(im)
    if back_mode != "L" or not np.array_equal(back, arr):  # pragma: no cover - guards against PIL surprises
        raise LabelFormatError(f"{path} did not read back as the written 'L' label (mode {back_mode})")
    return path


def colour_to_index(rgb: np.ndarray, palette: Dict[Tuple[int, int, int], int], unknown: int = 0
                    ) -> Tuple[np.ndarray, int]:
    """Map an RGB colour label to indices by exact colour match; returns (labels, #pixels of unknown colour)."""
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise LabelFormatError(f"expected an RGB colour label, got shape {rgb.shape}")
    rgb = rgb[..., :3].astype(np.int64)
    code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    uniq, inv = np.unique(code.ravel(), return_inverse=True)
    lut = np.full(len(uniq), unknown, dtype=np.uint8)
    known = np.zeros(len(uniq), dtype=bool)
    for i, c in enumerate(uniq.tolist()):
        key = ((c >> 16) & 255, (c >> 8) & 255, c & 255)
        if key in palette:
            lut[i] = palette[key]
            known[i] = True
    n_unknown = int((~known[inv]).sum())
    return lut[inv].reshape(code.shape), n_unknown


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as e:
        raise LabelFormatError(f"cannot decode {path} ({type(e).__name__}: {e}); re-download it") from None


# ------------------------------------------------------------------------------------------ tiling
def tile_starts(size: int, tile: int, step: int) -> List[int]:
    """Tile origins of the iSAID/UAVid converters: ``range(0, size, step)``, a tile that would overrun
    the border is shifted back to end at it (``size >= tile``)."""
    starts = []
    for s in range(0, size, step):
        if s + tile > size:
            s = size - tile
        if not starts or starts[-1] != s:
            starts.append(s)
    return starts


def clip_starts(size: int, clip: int) -> List[int]:
    """Tile origins of mmseg's Potsdam/Vaihingen converters: multiples of ``clip``, the last one snapped to
    ``size - clip`` (duplicates removed)."""
    if size <= clip:
        return [0]
    return sorted({min(k * clip, size - clip) for k in range(-(-size // clip))})


def _pad_to(arr: np.ndarray, h: int, w: int, value: int) -> np.ndarray:
    if arr.shape[0] >= h and arr.shape[1] >= w:
        return arr
    shape = (max(h, arr.shape[0]), max(w, arr.shape[1])) + arr.shape[2:]
    out = np.full(shape, value, dtype=arr.dtype)
    out[:arr.shape[0], :arr.shape[1]] = arr
    return out


# ------------------------------------------------------------------------------------------ sources
@contextmanager
def _source_roots(src: PathLike) -> Iterator[List[Path]]:
    """``[src]`` plus the extraction folders of every zip in (or equal to) ``src``."""
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"source {src} does not exist; pass the folder of the official release")
    zips = [src] if src.is_file() and zipfile.is_zipfile(src) else sorted(p for p in src.rglob("*.zip")) if src.is_dir() else []
    if src.is_file() and not zips:
        raise ValueError(f"source {src} is a file but not a zip archive; pass the release folder or its zip")
    if not zips:
        yield [src]
        return
    with tempfile.TemporaryDirectory(prefix="farslip-ovss-") as tmp:
        roots = [src] if src.is_dir() else []
        for i, z in enumerate(zips):
            # keep the zip's own folders in the path (e.g. val/images/part1) so split filters still work
            dst = Path(tmp) / str(i) / (z.relative_to(src).with_suffix("") if src.is_dir() else Path(z.stem))
            logger.info("extracting %s", z)
            with zipfile.ZipFile(z) as zf:
                root = dst.resolve()
                for m in zf.infolist():
                    # resolved-path containment, not a string prefix (a sibling "<dst>x/" shares the prefix)
                    if not (dst / m.filename).resolve().is_relative_to(root):
                        raise DataError(f"{z}: refusing to extract {m.filename!r} outside the target folder")
                zf.extractall(dst)
            roots.append(dst)
        yield roots


def _rglob(roots: Sequence[Path], pattern: str) -> List[Path]:
    seen, out = set(), []
    for r in roots:
        for p in sorted(r.rglob(pattern)):
            if p.is_file() and p.name not in seen or p.is_dir():
                out.append(p)
                seen.add(p.name)
    return out


def _prefer_split(paths: List[Path], split: str) -> List[Path]:
    """Only the paths under a folder called ``split`` when there are any (a whole release has several splits)."""
    inside = [p for p in paths if split.lower() in (part.lower() for part in p.parts[:-1])]
    return inside or paths


def _prepare_out(bench: Benchmark, data_root: PathLike, overwrite: bool) -> Tuple[Path, Path, Path]:
    root = Path(data_root) / bench.roots[0]
    img_dir, ann_dir = root / bench.img_dir, root / bench.ann_dir
    for d in (img_dir, ann_dir):
        if d.is_dir() and any(d.iterdir()):
            if not overwrite:
                raise FileExistsError(f"{d} already holds files; pass overwrite=True (--overwrite) to replace them")
            shutil.rmtree(d)
        d.mkdir(parents=True, exist_ok=True)
    return root, img_dir, ann_dir


def _progress(items: Sequence, desc: str, enabled: bool):
    if not enabled:
        return items
    from farslip_ext.logs import progress

    return progress(items, desc=desc, unit="file")


def _count(report: ConversionReport, arr: np.ndarray) -> None:
    vals, counts = np.unique(arr, return_counts=True)
    for v, c in zip(vals.tolist(), counts.tolist()):
        report.label_counts[int(v)] = report.label_counts.get(int(v), 0) + int(c)


def _need(found: Sequence, what: str, src: PathLike, bench: Benchmark) -> None:
    if not found:
        raise FileNotFoundError(f"{bench.name}: no {what} found in {src}. Expected the official release: "
                                f"{bench.official_release}")


def _save_rgb(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(arr), "RGB").save(path, format="PNG")


def _label_valid(bench: Benchmark) -> List[int]:
    return sorted(bench.raw_label_values)


# --------------------------------------------------------------------------------------- converters
def convert_openearthmap(src: PathLike, data_root: PathLike, *, overwrite: bool = False, progress: bool = True,
                         split_file: Optional[PathLike] = None) -> ConversionReport:
    """OpenEarthMap (without xBD): the files listed in ``val.txt``, images copied, labels checked (0..8)
    and written as ``'L'`` TIFFs."""
    bench = get_benchmark("openearthmap")
    with _source_roots(src) as roots:
        lists = [Path(split_file)] if split_file else _rglob(roots, "val.txt")
        _need(lists, "val.txt", src, bench)
        names = [ln.strip() for ln in lists[0].read_text().splitlines() if ln.strip()]
        names = [n if n.endswith(".tif") else f"{n}.tif" for n in names]
        images = {p.name: p for p in _rglob(roots, "*.tif") if p.parent.name == "images"}
        _need(images, "images/*.tif", src, bench)
        root, img_dir, ann_dir = _prepare_out(bench, data_root, overwrite)
        report = ConversionReport(bench.key, root)
        missing = [n for n in names if n not in images]
        if missing:
            raise FileNotFoundError(f"OpenEarthMap: {len(missing)} files of {lists[0]} are not in {src}, e.g. {missing[0]}")
        for n in _progress(names, "OpenEarthMap", progress):
            ip = images[n]
            lp = ip.parent.parent / "labels" / n
            if not lp.is_file():
                raise FileNotFoundError(f"OpenEarthMap: label {lp} for image {ip} is missing")
            lab = read_index_label(lp, _label_valid(bench))
            shutil.copyfile(ip, img_dir / n)
            write_index_label(lab, ann_dir / n)
            report.images += 1
            report.labels += 1
            _count(report, lab)
    return report


def convert_loveda(src: PathLike, data_root: PathLike, *, overwrite: bool = False, progress: bool = True
                   ) -> ConversionReport:
    """LoveDA val (Rural + Urban): images copied, labels checked (0..7) and written as ``'L'`` PNGs."""
    bench = get_benchmark("loveda")
    with _source_roots(src) as roots:
        img_dirs = [d for d in _rglob(roots, "images_png") if d.is_dir() and d.parent.parent.name.lower() == "val"]
        _need(img_dirs, "Val/<Rural|Urban>/images_png folders", src, bench)
        pairs = []
        for d in img_dirs:
            for ip in sorted(d.glob("*.png")):
                pairs.append((ip, d.parent / "masks_png" / ip.name))
        _need(pairs, "Val/*/images_png/*.png", src, bench)
        names = [ip.name for ip, _ in pairs]
        if len(set(names)) != len(names):
            raise ValueError(f"LoveDA: file names repeat across Rural/Urban in {src}; is the release mixed with a copy?")
        root, img_dir, ann_dir = _prepare_out(bench, data_root, overwrite)
        report = ConversionReport(bench.key, root)
        for ip, lp in _progress(pairs, "LoveDA", progress):
            if not lp.is_file():
                raise FileNotFoundError(f"LoveDA: mask {lp} for image {ip} is missing")
            lab = read_index_label(lp, _label_valid(bench))
            shutil.copyfile(ip, img_dir / ip.name)
            write_index_label(lab, ann_dir / ip.name)
            report.images += 1
            report.labels += 1
            _count(report, lab)
    return report


def _isprs_tiles(report: ConversionReport, bench: Benchmark, img: np.ndarray, lab: np.ndarray, prefix: str,
                 img_dir: Path, ann_dir: Path, clip: int) -> None:
    if img.shape[:2] != lab.shape[:2]:
        raise LabelFormatError(f"{bench.name} {prefix}: image {img.shape[:2]} and label {lab.shape[:2]} sizes differ")
    h, w = lab.shape
    for y0 in clip_starts(h, clip):
        for x0 in clip_starts(w, clip):
            y1, x1 = min(y0 + clip, h), min(x0 + clip, w)
            name = f"{prefix}_{x0}_{y0}_{x1}_{y1}.png"
            _save_rgb(img[y0:y1, x0:x1], img_dir / name)
            write_index_label(lab[y0:y1, x0:x1], ann_dir / name, _label_valid(bench))
            report.images += 1
            report.labels += 1
    _count(report, lab)


def convert_potsdam(src: PathLike, data_root: PathLike, *, overwrite: bool = False, progress: bool = True,
                    clip_size: int = 512, val_tiles: Sequence[str] = POTSDAM_VAL_TILES) -> ConversionReport:
    """ISPRS Potsdam val: ``2_Ortho_RGB`` + ``5_Labels_all_noBoundary`` colour labels → 512 crops, 0..6 labels."""
    bench = get_benchmark("potsdam")
    rx = re.compile(r"top_potsdam_(\d+)_(\d+)_RGB\.tif$")
    lx = re.compile(r"top_potsdam_(\d+)_(\d+)_label_noBoundary\.tif$")
    with _source_roots(src) as roots:
        images = {f"{m.group(1)}_{m.group(2)}": p for p in _rglob(roots, "top_potsdam_*_RGB.tif")
                  if (m := rx.search(p.name))}
        labels = {f"{m.group(1)}_{m.group(2)}": p for p in _rglob(roots, "top_potsdam_*_label_noBoundary.tif")
                  if (m := lx.search(p.name))}
        _need(images, "top_potsdam_<i>_<j>_RGB.tif (2_Ortho_RGB)", src, bench)
        if not labels and _rglob(roots, "top_potsdam_*_label.tif"):
            raise FileNotFoundError(f"Potsdam: {src} has the full labels (5_Labels_all) but the protocol uses the "
                                    f"eroded ones, top_potsdam_*_label_noBoundary.tif (5_Labels_all_noBoundary)")
        _need(labels, "top_potsdam_<i>_<j>_label_noBoundary.tif (5_Labels_all_noBoundary)", src, bench)
        return _convert_isprs_selection("Potsdam", "val tiles", bench, val_tiles, images, labels, src, data_root,
                                        overwrite, progress, clip_size)


def convert_vaihingen(src: PathLike, data_root: PathLike, *, overwrite: bool = False, progress: bool = True,
                      clip_size: int = 512, val_areas: Sequence[str] = VAIHINGEN_VAL_AREAS) -> ConversionReport:
    """ISPRS Vaihingen val: ``top/`` IRRG images + eroded ``*_noBoundary.tif`` labels → 512 crops, 0..6 labels."""
    bench = get_benchmark("vaihingen")
    rx = re.compile(r"top_mosaic_09cm_(area\d+)\.tif$")
    lx = re.compile(r"top_mosaic_09cm_(area\d+)_noBoundary\.tif$")
    with _source_roots(src) as roots:
        images = {m.group(1): p for p in _rglob(roots, "top_mosaic_09cm_area*.tif")
                  if p.parent.name == "top" and (m := rx.search(p.name))}
        labels = {m.group(1): p for p in _rglob(roots, "top_mosaic_09cm_area*_noBoundary.tif") if (m := lx.search(p.name))}
        _need(images, "top/top_mosaic_09cm_area<N>.tif (images in a folder named 'top')", src, bench)
        _need(labels, "top_mosaic_09cm_area<N>_noBoundary.tif (the eroded ground truth)", src, bench)
        return _convert_isprs_selection("Vaihingen", "val areas", bench, val_areas, images, labels, src, data_root,
                                        overwrite, progress, clip_size)


def _convert_isprs_selection(name: str, what: str, bench: Benchmark, wanted: Sequence[str], images: Dict[str, Path],
                             labels: Dict[str, Path], src: PathLike, data_root: PathLike, overwrite: bool,
                             progress: bool, clip_size: int) -> ConversionReport:
    """Shared tail of the ISPRS converters: check the selected tiles, then colour labels → indices, crops."""
    keys = [k for k in wanted if k in images]
    missing = [k for k in keys if k not in labels]
    if missing:
        raise FileNotFoundError(f"{name}: {what} {missing} have an image but no noBoundary label in {src}")
    _need(keys, f"{what} {list(wanted)}", src, bench)
    if len(keys) < len(wanted):
        logger.warning("%s: only %d of the %d %s are in %s", name, len(keys), len(wanted), what, src)
    root, img_dir, ann_dir = _prepare_out(bench, data_root, overwrite)
    report = ConversionReport(bench.key, root)
    for k in _progress(keys, name, progress):
        lab, unknown = colour_to_index(_read_rgb(labels[k]), ISPRS_PALETTE, unknown=0)
        if unknown:
            logger.warning("%s %s: %d pixels of a non-ISPRS colour set to 0 (ignored)", name, labels[k], unknown)
        report.unknown_colour_pixels += unknown
        _isprs_tiles(report, bench, _read_rgb(images[k]), lab, k, img_dir, ann_dir, clip_size)
    return report


def _tile_pair(report: ConversionReport, bench: Benchmark, img: np.ndarray, lab: np.ndarray, stem: str,
               img_dir: Path, ann_dir: Path, tile_h: int, tile_w: int, overlap: int, label_suffix: str) -> None:
    if img.shape[:2] != lab.shape[:2]:
        raise LabelFormatError(f"{bench.name} {stem}: image {img.shape[:2]} and label {lab.shape[:2]} sizes differ")
    img = _pad_to(img, tile_h, tile_w, 0)
    lab = _pad_to(lab, tile_h, tile_w, 255)
    h, w = lab.shape
    for x0 in tile_starts(w, tile_w, tile_w - overlap):
        for y0 in tile_starts(h, tile_h, tile_h - overlap):
            name = f"{stem}_{y0}_{y0 + tile_h}_{x0}_{x0 + tile_w}"
            _save_rgb(img[y0:y0 + tile_h, x0:x0 + tile_w], img_dir / f"{name}.png")
            write_index_label(lab[y0:y0 + tile_h, x0:x0 + tile_w], ann_dir / f"{name}{label_suffix}",
                              _label_valid(bench))
            report.images += 1
            report.labels += 1
    _count(report, lab)


def convert_uavid(src: PathLike, data_root: PathLike, *, overwrite: bool = False, progress: bool = True,
                  tile_h: int = 1080, tile_w: int = 1280, overlap: int = 0, split: str = "test_gt"
                  ) -> ConversionReport:
    """UAVid ``test_gt``: ``<seq>/Images`` + colour ``<seq>/Labels`` → 1280×1080 crops named
    ``<seq>_<frame>_<y0>_<y1>_<x0>_<x1>.png``; moving car merged into car (3), padding 255."""
    bench = get_benchmark("uavid")
    with _source_roots(src) as roots:
        pairs = []
        for d in _prefer_split(_rglob(roots, "Labels"), split):
            if not d.is_dir():
                continue
            for lp in sorted(d.glob("*.png")):
                pairs.append((d.parent / "Images" / lp.name, lp, d.parent.name))
        _need(pairs, "<seq>/Labels/*.png (the test_gt release)", src, bench)
        root, img_dir, ann_dir = _prepare_out(bench, data_root, overwrite)
        report = ConversionReport(bench.key, root)
        for ip, lp, seq in _progress(pairs, "UAVid", progress):
            if not ip.is_file():
                raise FileNotFoundError(f"UAVid: image {ip} for label {lp} is missing")
            lab, unknown = colour_to_index(_read_rgb(lp), UAVID_PALETTE, unknown=0)
            if unknown:
                logger.warning("UAVid %s: %d pixels of a non-UAVid colour set to 0 (clutter)", lp, unknown)
            report.unknown_colour_pixels += unknown
            _tile_pair(report, bench, _read_rgb(ip), lab, f"{seq}_{lp.stem}", img_dir, ann_dir, tile_h, tile_w,
                       overlap, ".png")
    return report


def convert_isaid(src: PathLike, data_root: PathLike, *, overwrite: bool = False, progress: bool = True,
                  patch: int = 896, overlap: int = 384, split: str = "val") -> ConversionReport:
    """iSAID val: DOTA images + ``Semantic_masks`` colour masks → 896 crops with overlap 384, labels 0..15,
    padding 255, named ``P<id>_<y0>_<y1>_<x0>_<x1>[_instance_color_RGB].png``."""
    bench = get_benchmark("isaid")
    ix = re.compile(r"^(P\d+)\.png$")
    lx = re.compile(r"^(P\d+)_instance_color_RGB\.png$")
    with _source_roots(src) as roots:
        images = {m.group(1): p for p in _prefer_split(_rglob(roots, "P*.png"), split) if (m := ix.match(p.name))}
        labels = {m.group(1): p for p in _prefer_split(_rglob(roots, "P*_instance_color_RGB.png"), split)
                  if (m := lx.match(p.name))}
        _need(images, "P<id>.png images (val/images)", src, bench)
        _need(labels, "P<id>_instance_color_RGB.png masks (val/Semantic_masks)", src, bench)
        ids = sorted(set(images) & set(labels))
        if len(ids) < len(labels):
            raise FileNotFoundError(f"iSAID: masks without an image in {src}, e.g. {sorted(set(labels) - set(images))[0]}")
        root, img_dir, ann_dir = _prepare_out(bench, data_root, overwrite)
        report = ConversionReport(bench.key, root)
        for pid in _progress(ids, "iSAID", progress):
            lab, unknown = colour_to_index(_read_rgb(labels[pid]), ISAID_PALETTE, unknown=0)
            if unknown:
                logger.warning("iSAID %s: %d pixels of a non-iSAID colour set to 0 (background)", labels[pid], unknown)
            report.unknown_colour_pixels += unknown
            _tile_pair(report, bench, _read_rgb(images[pid]), lab, pid, img_dir, ann_dir, patch, patch, overlap,
                       "_instance_color_RGB.png")
    return report


def _convert_src_gt(key: str, split: str, src: PathLike, data_root: PathLike, overwrite: bool, progress: bool
                    ) -> ConversionReport:
    bench = get_benchmark(key)
    with _source_roots(src) as roots:
        cands = [d for d in _rglob(roots, "gt") if d.is_dir() and (d.parent / "src").is_dir()
                 and (d.parent.name.lower() == split or len(roots) == 1 and d.parent == Path(src))]
        _need(cands, f"{split}/src + {split}/gt folders", src, bench)
        gt_dir = cands[0]
        src_dir = gt_dir.parent / "src"
        images = sorted(p for p in src_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        _need(images, f"images in {src_dir}", src, bench)
        root, img_dir, ann_dir = _prepare_out(bench, data_root, overwrite)
        report = ConversionReport(bench.key, root)
        renamed = 0
        for ip in _progress(images, bench.name, progress):
            lp = gt_dir / f"{ip.stem}.png"
            if not lp.is_file():
                raise FileNotFoundError(f"{bench.name}: label {lp} for image {ip} is missing")
            lab = read_index_label(lp, _label_valid(bench))
            if ip.suffix == bench.img_suffix:
                shutil.copyfile(ip, img_dir / ip.name)
            elif ip.suffix.lower() in (".jpg", ".jpeg"):
                shutil.copyfile(ip, img_dir / f"{ip.stem}{bench.img_suffix}")
                renamed += 1
            else:
                with Image.open(ip) as im:
                    im.convert("RGB").save(img_dir / f"{ip.stem}{bench.img_suffix}", format="JPEG", quality=100)
                renamed += 1
            write_index_label(lab, ann_dir / f"{ip.stem}.png")
            report.images += 1
            report.labels += 1
            _count(report, lab)
        if renamed:
            logger.info("%s: %d images written with the suffix %s the dataset lists", bench.name, renamed, bench.img_suffix)
    return report


def convert_udd5(src: PathLike, data_root: PathLike, *, overwrite: bool = False, progress: bool = True
                 ) -> ConversionReport:
    """UDD5 val: images copied as ``*.JPG``, index labels checked (0..4) and rewritten as ``'L'`` PNGs
    (a ``'P'`` label keeps its indices)."""
    return _convert_src_gt("udd5", "val", src, data_root, overwrite, progress)


def convert_vdd(src: PathLike, data_root: PathLike, *, overwrite: bool = False, progress: bool = True
                ) -> ConversionReport:
    """VDD test: images copied as ``*.JPG``, index labels checked (0..6) and rewritten as ``'L'`` PNGs."""
    return _convert_src_gt("vdd", "test", src, data_root, overwrite, progress)


CONVERTERS: Dict[str, Callable[..., ConversionReport]] = {
    "openearthmap": convert_openearthmap,
    "loveda": convert_loveda,
    "potsdam": convert_potsdam,
    "vaihingen": convert_vaihingen,
    "uavid": convert_uavid,
    "isaid": convert_isaid,
    "udd5": convert_udd5,
    "vdd": convert_vdd,
}


def convert_dataset(dataset: str, src: PathLike, data_root: PathLike, *, overwrite: bool = False,
                    progress: bool = True, validate: bool = True, **kwargs) -> ConversionReport:
    """Convert ``dataset``'s official release at ``src`` into ``data_root`` and validate the result."""
    bench = get_benchmark(dataset)
    if bench.key not in CONVERTERS:
        raise ValueError(f"{bench.name} ({bench.config_file}) has no converter; farslip ovss-convert knows "
                         f"{sorted(CONVERTERS)}. Prepare the layout its config expects and check it with "
                         f"`farslip ovss-check --datasets {bench.key}`.")
    report = CONVERTERS[bench.key](src, data_root, overwrite=overwrite, progress=progress, **kwargs)
    if validate:
        validate_layout(bench.key, data_root, progress=progress)
    logger.info("%s", report.summary())
    return report


def validate_layout(dataset: str, data_root: PathLike, *, check_labels: bool = True, limit: Optional[int] = None,
                    progress: bool = False) -> Dict[str, int]:
    """Check an evaluated layout: folders, one label per image, labels single-channel ``'L'`` (or
    ``'P'``/grey, which decode to indices) of the image's size with values in the dataset's label set.
    Returns ``{"images": n, "labels_checked": m}``; raises with the file and the fix otherwise."""
    bench = get_benchmark(dataset)
    root = find_dataset_root(bench, data_root)
    img_dir, ann_dir = root / bench.img_dir, root / bench.ann_dir
    images = sorted(p for p in img_dir.rglob(f"*{bench.img_suffix}") if p.is_file())
    if not images:
        others = sorted({p.suffix for p in img_dir.rglob("*") if p.is_file()})
        raise FileNotFoundError(f"{bench.name}: no '*{bench.img_suffix}' images in {img_dir} (found suffixes {others}; "
                                f"the suffix is case-sensitive). Re-create the folder with {bench.converter_command()}")
    checked = 0
    todo = images if limit is None else images[:limit]
    for ip in _progress(todo, f"check {bench.name}", progress):
        rel = ip.relative_to(img_dir)
        lp = ann_dir / rel.parent / (ip.name[: -len(bench.img_suffix)] + bench.seg_map_suffix)
        if not lp.is_file():
            raise FileNotFoundError(f"{bench.name}: image {ip} has no label {lp}; re-run {bench.converter_command()}")
        if check_labels:
            with Image.open(lp) as im:
                mode, size = im.mode, im.size
            if mode not in ("L", "P"):
                raise LabelFormatError(f"{bench.name}: label {lp} is a {mode!r} image; labels must be single-channel "
                                       f"'L' index images. Re-create them with {bench.converter_command()}")
            lab = read_index_label(lp)
            check_label_values(lab, bench.raw_label_values, lp,
                               fix=f"Re-create the labels with {bench.converter_command()}.")
            with Image.open(ip) as im:
                isize = im.size
            if isize != size:
                raise LabelFormatError(f"{bench.name}: label {lp} is {size} but image {ip} is {isize} (W, H)")
            checked += 1
    return {"images": len(images), "labels_checked": checked}
