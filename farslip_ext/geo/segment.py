"""Streamed open-vocabulary segmentation of a raster of any size (issue #7; docs/segment.md).

:func:`segment_raster` reads the input tile by tile (``tile`` × ``tile`` cores plus a ``halo`` of
context), scales the chosen bands to 0..255 (:mod:`.scaling`), runs a :class:`~.predictor.TilePredictor`
(by default ``FarSLIPSeg``'s own sliding-window maths) on each block, and writes the class indices of
each core into a tiled, compressed uint8 GeoTIFF with the input's CRS, transform and GCPs (255 where the
input is nodata), optionally the top class probability as a float32 GeoTIFF, and a PNG overlay with a
legend from a thumbnail (nearest samples, at most ``overlay_size`` px on the long side) filled during the
same pass. GDAL's block cache is capped (``gdal_cache_mb``), so the peak memory is
set by the tile size and the model, not by the raster.

Inputs without georeferencing (plain PNG/JPEG) work the same; the mask is then a PNG by default and the
result says ``georeferenced=False``.
"""
from __future__ import annotations

import json
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from farslip_ext.geo.classes import parse_classes
from farslip_ext.geo.errors import GeoSegmentError, OutputExistsError
from farslip_ext.geo.overlay import colormap, render_overlay
from farslip_ext.geo.raster import is_georeferenced, open_inputs, read_block, resolve_bands
from farslip_ext.geo.scaling import BandStretch, compute_stretch
from farslip_ext.geo.tiling import check_tiling, count_tiles, iter_tiles

__all__ = ["segment_raster", "SegmentResult", "output_paths", "DEFAULT_WINDOW", "MASK_NODATA"]

logger = logging.getLogger(__name__)

#: Default sliding-window crop in input pixels (the FarSLIP protocol's 224; stride = window // 2).
DEFAULT_WINDOW = 224
#: Mask value of nodata pixels.
MASK_NODATA = 255
_BLOCK = 256
_MASK_SUFFIXES = {".tif": "GTiff", ".tiff": "GTiff", ".png": "PNG"}


@dataclass
class SegmentResult:
    """What :func:`segment_raster` wrote and measured (``as_dict()`` is the CLI's JSON summary)."""

    image: str  # the first input
    mask: str
    overlay: Optional[str]
    probability: Optional[str]
    georeferenced: bool
    crs: Optional[str]
    transform: Optional[List[float]]
    width: int
    height: int
    bands: List[int]
    classes: List[List[str]]
    pixel_counts: Dict[str, int]
    nodata_pixels: int
    stretch: Dict[str, Any]
    settings: Dict[str, Any]
    tiles: int
    tiles_skipped_nodata: int
    seconds: Dict[str, float] = field(default_factory=dict)
    inputs: List[str] = field(default_factory=list)  # every input file, in band order
    resampled: Dict[str, List[int]] = field(default_factory=dict)  # stacked inputs resampled to the finest grid

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def output_paths(image: Union[str, Path], output: Optional[Union[str, Path]], georeferenced: bool
                 ) -> Tuple[Path, Path, Path]:
    """``(mask, overlay, probability)`` paths. Default mask: ``<image stem>.seg.tif`` beside the image
    (``.seg.png`` when the image has no georeferencing); the others are named after the mask:
    ``<mask stem>.overlay.png`` and ``<mask stem>.prob.tif``."""
    img = Path(image)
    mask = Path(output) if output is not None else img.with_name(f"{img.stem}.seg{'.tif' if georeferenced else '.png'}")
    if mask.suffix.lower() not in _MASK_SUFFIXES:
        raise GeoSegmentError(f"--output {str(mask)!r}: the mask is written as GeoTIFF (.tif, keeps the georeferencing) "
                              f"or PNG (.png); use one of these suffixes")
    return mask, mask.with_name(f"{mask.stem}.overlay.png"), mask.with_name(f"{mask.stem}.prob.tif")


def _part(path: Path) -> Path:
    return path.with_name(f".{path.name}.part.tif")


def _gtiff_profile(src, dtype: str, nodata: float) -> Dict[str, Any]:
    prof: Dict[str, Any] = dict(driver="GTiff", width=src.width, height=src.height, count=1, dtype=dtype,
                                nodata=nodata, tiled=True, blockxsize=_BLOCK, blockysize=_BLOCK, compress="deflate",
                                BIGTIFF="IF_SAFER")
    if src.crs is not None:
        prof["crs"] = src.crs
    from affine import Affine

    if src.transform != Affine.identity():
        prof["transform"] = src.transform
    if dtype == "float32":
        prof["predictor"] = 3
    return prof


def _overview_factors(width: int, height: int) -> List[int]:
    f, out = 2, []
    while max(width, height) // f >= _BLOCK:
        out.append(f)
        f *= 2
    return out


def _label(names: Sequence[str]) -> str:
    return names[0] + (f" ({', '.join(names[1:])})" if len(names) > 1 else "")


class _Thumbnail:
    """The overlay's picture and mask, filled tile by tile during the stream (nearest samples at most
    ``size`` on the long side), so the overlay needs no second pass over the input or the mask."""

    def __init__(self, width: int, height: int, size: int) -> None:
        f = max(1.0, max(width, height) / float(max(1, size)))
        th, tw = max(1, int(round(height / f))), max(1, int(round(width / f)))
        self.rows = np.minimum(((np.arange(th) + 0.5) * height / th).astype(np.int64), height - 1)
        self.cols = np.minimum(((np.arange(tw) + 0.5) * width / tw).astype(np.int64), width - 1)
        self.rgb = np.zeros((th, tw, 3), dtype=np.uint8)
        self.mask = np.full((th, tw), MASK_NODATA, dtype=np.uint8)

    def add(self, core: Tuple[int, int, int, int], rgb: Optional[np.ndarray], labels: np.ndarray) -> None:
        """``rgb``: float ``(3, h, w)`` 0..255 of the core (None: nodata tile); ``labels``: ``(h, w)``."""
        r, c, h, w = core
        ri = np.nonzero((self.rows >= r) & (self.rows < r + h))[0]
        ci = np.nonzero((self.cols >= c) & (self.cols < c + w))[0]
        if not len(ri) or not len(ci):
            return
        sr, sc = self.rows[ri] - r, self.cols[ci] - c
        self.mask[np.ix_(ri, ci)] = labels[np.ix_(sr, sc)]
        if rgb is not None:
            self.rgb[np.ix_(ri, ci)] = np.clip(rgb[:, sr][:, :, sc] + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)


def segment_raster(
    image: Union[str, Path, Sequence[Union[str, Path]]],
    classes: Any,
    output: Optional[Union[str, Path]] = None,
    *,
    predictor: Any = None,
    model: str = "farslip-vitb16",
    pretrained: Optional[str] = None,
    bands: Union[None, str, int, Sequence[int]] = None,
    stretch: str = "auto",
    percentiles: Union[str, Sequence[float]] = (2.0, 98.0),
    value_range: Union[None, str, Sequence[float]] = None,
    window: Optional[int] = None,
    stride: Optional[int] = None,
    tile: int = 1024,
    halo: Optional[int] = None,
    probabilities: bool = False,
    overlay: bool = True,
    overlay_size: int = 1024,
    overviews: bool = True,
    overwrite: bool = False,
    preset: str = "farslip",
    device: str = "auto",
    precision: str = "auto",
    progress: Optional[bool] = None,
    gdal_cache_mb: int = 64,
    sample_size: int = 1024,
    **segmentor_kwargs: Any,
) -> SegmentResult:
    """Segment ``image`` into ``classes`` and write the mask (+ overlay, + probabilities); see the module doc.

    ``image``: one raster, or a list of single-band files of one scene (same CRS and extent) stacked as
    bands 1..N in that order; coarser files are resampled (bilinear) to the finest grid, with a note.
    ``progress``: None follows the package policy (a bar on a terminal, log lines otherwise).

    ``classes``: ``"building,road,water"``, ``"building,roof;road;water"`` (``;`` separates classes, commas
    synonyms), a class-name file or a list (:func:`~farslip_ext.geo.classes.parse_classes`). ``bands``:
    1-based R,G,B band numbers (``"4,3,2"``), a preset (``"sentinel2-rgb"``,
    :data:`~farslip_ext.geo.raster.BAND_PRESETS`) or one band as grey. ``stretch``/``percentiles``/``value_range``:
    :mod:`~farslip_ext.geo.scaling`. ``window``/``stride``: sliding-window crop/stride in input pixels
    (default 224/112; each crop is resized to the model's input size, so a larger window looks at the scene
    more coarsely). ``tile``/``halo``: streamed block size and context (default ``window // 2``).
    ``predictor``: any :class:`~farslip_ext.geo.predictor.TilePredictor`; default builds ``FarSLIPSeg`` from
    ``model``/``pretrained``/``preset``/``device``/``precision`` and ``segmentor_kwargs`` (``prob_thd``,
    ``bg_idx``, ``templates``, ``window_batch_size``, ...).
    """
    try:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning
    except ImportError as e:  # pragma: no cover - rasterio is a declared dependency of the geo extra
        raise ImportError(f"farslip segment needs rasterio ({e}); install it with pip install 'farslip-ext[geo]'") from e
    t_start = time.perf_counter()
    seconds: Dict[str, float] = {}
    names = parse_classes(classes)
    n_classes = names.num_classes
    pred_window = getattr(predictor, "window", None) if predictor is not None else None
    win = int(window if window is not None else (pred_window or DEFAULT_WINDOW))
    strd = int(stride if stride is not None else max(1, win // 2))
    halo_px = check_tiling(win, strd, int(tile), halo)
    if overlay and int(overlay_size) < 16:
        raise GeoSegmentError(f"--overlay-size {overlay_size} is too small; use e.g. 1024 (pixels on the long side)")
    if predictor is not None and getattr(predictor, "num_classes", n_classes) != n_classes:
        raise GeoSegmentError(f"the predictor has {predictor.num_classes} classes, the class list {n_classes}")

    with rasterio.Env(GDAL_CACHEMAX=int(gdal_cache_mb)), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        images = [image] if isinstance(image, (str, Path)) else list(image)
        with open_inputs(images) as (src, stack):
            first = images[0]
            georef = is_georeferenced(src)
            rgb_bands = resolve_bands(src, bands)
            mask_path, overlay_path, prob_path = output_paths(first, output, georef)
            wanted = [mask_path] + ([overlay_path] if overlay else []) + ([prob_path] if probabilities else [])
            clash = [str(p) for p in wanted if p.exists() and any(p.resolve() == Path(i).resolve() for i in images)]
            if clash:
                raise GeoSegmentError(f"--output {clash[0]!r} is the input image; choose another mask path")
            folder = mask_path.parent
            while not folder.exists() and folder != folder.parent:
                folder = folder.parent
            if not os.access(folder, os.W_OK):
                raise GeoSegmentError(f"cannot write {mask_path}: {folder} is not writable; choose an --output elsewhere")
            existing = [str(p) for p in wanted if p.exists()]
            if existing and not overwrite:
                raise OutputExistsError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                                        f"pass --overwrite (overwrite=True) or choose another --output")
            if not georef:
                logger.warning("%s has no georeferencing (no CRS, transform or GCPs): the mask is a plain %s image",
                               first, mask_path.suffix.lstrip(".").upper())
            elif mask_path.suffix.lower() == ".png":
                logger.warning("%s is georeferenced but the mask is a PNG: GDAL keeps the CRS/transform only in a "
                               ".aux.xml sidecar; use a .tif output to embed them", first)
            t0 = time.perf_counter()
            scaler: BandStretch = compute_stretch(src, rgb_bands, stretch, percentiles, value_range, sample_size)
            seconds["stretch"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            built = predictor is None
            if built:
                from farslip_ext.geo.predictor import build_predictor

                # the text embeddings (minutes on a CPU the first time) get the same progress as the tiles
                predictor = build_predictor(names, model, pretrained, window=win, stride=strd, preset=preset,
                                            device=device, precision=precision,
                                            **{"text_progress": progress, **segmentor_kwargs})
            seconds["load_model"] = time.perf_counter() - t0

            settings = dict(model=str(model) if built else None, pretrained=pretrained if built else None, preset=preset,
                            window=win, stride=strd, tile=int(tile), halo=halo_px, gdal_cache_mb=int(gdal_cache_mb),
                            predictor=type(predictor).__name__)
            thumb = _Thumbnail(src.width, src.height, int(overlay_size)) if overlay else None
            counts, nodata_px, skipped = _stream(
                src, rgb_bands, scaler, predictor, n_classes, names, mask_path, prob_path if probabilities else None,
                int(tile), halo_px, settings, overviews, progress, Path(str(first)).name, seconds, thumb)

            t0 = time.perf_counter()
            if thumb is not None:
                total_valid = max(1, int(sum(counts)))
                k = max(1, int(overlay_size) // max(thumb.rgb.shape[:2]))  # enlarge small rasters (nearest)
                rgb_t = np.repeat(np.repeat(thumb.rgb, k, 0), k, 1)
                msk_t = np.repeat(np.repeat(thumb.mask, k, 0), k, 1)
                title = ", ".join(Path(str(i)).name for i in images) + (f" - {Path(str(model)).name}" if built else "") + \
                    (f" ({pretrained})" if built and pretrained else "")
                render_overlay(rgb_t, msk_t, [_label(c) for c in names.classes], overlay_path,
                               fractions=[c / total_valid for c in counts], title=title,
                               nodata_fraction=nodata_px / float(src.width * src.height))
            seconds["overlay"] = time.perf_counter() - t0
            seconds["total"] = time.perf_counter() - t_start
            result = SegmentResult(
                image=str(first), inputs=[str(i) for i in images],
                resampled={k: list(v) for k, v in stack.resampled.items()}, mask=str(mask_path), overlay=str(overlay_path) if overlay else None,
                probability=str(prob_path) if probabilities else None, georeferenced=georef,
                crs=src.crs.to_string() if src.crs is not None else None,
                transform=list(src.transform)[:6] if georef else None, width=src.width, height=src.height,
                bands=list(rgb_bands), classes=[list(c) for c in names.classes],
                pixel_counts={_label(c): int(n) for c, n in zip(names.classes, counts)}, nodata_pixels=int(nodata_px),
                stretch=scaler.as_dict(), settings=settings, tiles=count_tiles(src.width, src.height, int(tile)),
                tiles_skipped_nodata=skipped, seconds={k: round(v, 3) for k, v in seconds.items()})
    logger.info("segmented %s -> %s in %.1f s", ", ".join(map(str, images)), mask_path, seconds["total"])
    return result


def _stream(src, rgb_bands, scaler: BandStretch, predictor, n_classes: int, names, mask_path: Path,
            prob_path: Optional[Path], tile: int, halo: int, settings: Dict[str, Any], overviews: bool,
            progress: Optional[bool], display: str, seconds: Dict[str, float], thumb: Optional[_Thumbnail]
            ) -> Tuple[List[int], int, int]:
    """The tile loop: read → scale → predict → write cores. Writes to hidden ``.part.tif`` files that are
    renamed (or converted to PNG) only when complete."""
    import rasterio
    from rasterio.enums import Resampling

    t0 = time.perf_counter()
    mask_part = _part(mask_path)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    prof = _gtiff_profile(src, "uint8", MASK_NODATA)
    prof["photometric"] = "palette"
    counts = np.zeros(n_classes, dtype=np.int64)
    nodata_px = skipped = 0
    prob_dst = None
    try:
        with rasterio.open(mask_part, "w", **prof) as dst:
            gcps, gcp_crs = src.gcps
            if gcps and src.crs is None:
                dst.gcps = (gcps, gcp_crs)
            area_or_point = src.tags().get("AREA_OR_POINT")
            if area_or_point:
                dst.update_tags(AREA_OR_POINT=area_or_point)
            dst.write_colormap(1, colormap(n_classes))
            dst.set_band_description(1, "class index (255 = nodata)")
            dst.update_tags(FARSLIP_CLASSES=json.dumps([list(c) for c in names.classes]),
                            FARSLIP_SETTINGS=json.dumps(settings), FARSLIP_STRETCH=json.dumps(scaler.as_dict()),
                            FARSLIP_BANDS=",".join(map(str, rgb_bands)))
            if prob_path is not None:
                prob_dst = rasterio.open(_part(prob_path), "w", **_gtiff_profile(src, "float32", float("nan")))
                if gcps and src.crs is None:
                    prob_dst.gcps = (gcps, gcp_crs)
                prob_dst.set_band_description(1, "highest class probability")
            total = count_tiles(src.width, src.height, tile)
            from farslip_ext.logs import progress as progress_bar

            bar = progress_bar(iter_tiles(src.width, src.height, tile, halo), total=total, unit="tile",
                               desc=f"segment {display}", enabled=progress)
            for t in bar:
                data, valid = read_block(src, rgb_bands, t.window("read"))
                rs, cs = t.core_in_read
                core_valid = valid[rs, cs]
                rgb = None
                if not core_valid.any():
                    skipped += 1
                    lab = np.full(core_valid.shape, MASK_NODATA, dtype=np.uint8)
                    top = np.full(core_valid.shape, np.nan, dtype=np.float32)
                else:
                    rgb = scaler.apply(data)
                    lab_b, top_b = predictor.predict(rgb, valid)
                    raw_lab = np.asarray(lab_b)[rs, cs]
                    got = raw_lab[core_valid]
                    if int(got.min()) < 0 or int(got.max()) >= n_classes:
                        raise RuntimeError(f"the predictor returned class indices {int(got.min())}..{int(got.max())} "
                                           f"for {n_classes} classes")
                    lab = raw_lab.astype(np.uint8)
                    top = np.asarray(top_b, dtype=np.float32)[rs, cs].copy()
                    lab[~core_valid] = MASK_NODATA
                    top[~core_valid] = np.nan
                    counts += np.bincount(lab[core_valid], minlength=n_classes)[:n_classes]
                nodata_px += int(core_valid.size - core_valid.sum())
                if thumb is not None:
                    thumb.add(t.core, None if rgb is None else rgb[:, rs, cs], lab)
                dst.write(lab[None], window=t.window("core"))
                if prob_dst is not None:
                    prob_dst.write(top[None], window=t.window("core"))
            bar.close()
            seconds["segment"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            if overviews and mask_path.suffix.lower() != ".png":
                factors = _overview_factors(src.width, src.height)
                if factors:
                    dst.build_overviews(factors, Resampling.nearest)
                    dst.update_tags(ns="rio_overview", resampling="nearest")
            seconds["overviews"] = time.perf_counter() - t1
        if prob_dst is not None:
            prob_dst.close()
            os.replace(_part(prob_path), prob_path)
            prob_dst = None
        if mask_path.suffix.lower() == ".png":
            from rasterio.shutil import copy as gdal_copy

            with rasterio.Env(GDAL_PAM_ENABLED="YES" if is_georeferenced(src) else "NO"):  # no .aux.xml for photos
                gdal_copy(mask_part, mask_path, driver="PNG")
            mask_part.unlink()
        else:
            os.replace(mask_part, mask_path)
    except BaseException:
        if prob_dst is not None:
            prob_dst.close()
        for p in (mask_part, _part(prob_path) if prob_path is not None else None):
            if p is not None and p.exists():
                p.unlink()
        raise
    return [int(c) for c in counts], nodata_px, skipped
