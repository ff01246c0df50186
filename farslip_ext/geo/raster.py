"""Opening the input raster(s), choosing the RGB bands and reading windows with their validity mask.

Everything goes through rasterio/GDAL, so GeoTIFFs, plain PNG/JPEG images and any other GDAL format
share one code path with windowed (bounded-memory) reads. Several single-band files of one scene
(``B04.jp2 B03.jp2 B02.jp2``) are stacked, in the order given, into an in-memory GDAL VRT; bands of a
coarser resolution are resampled (bilinear) to the finest grid by GDAL while reading, so streaming
still holds. ``--bands`` also takes named presets (:data:`BAND_PRESETS`).
"""
from __future__ import annotations

import contextlib
import difflib
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from farslip_ext.geo.errors import BandSelectionError, RasterNotFoundError, RasterReadError

__all__ = ["open_raster", "open_inputs", "is_georeferenced", "parse_bands", "resolve_bands", "read_block", "read_valid",
           "describe_bands", "BAND_PRESETS", "StackInfo"]

logger = logging.getLogger(__name__)

Bands = Tuple[int, int, int]

#: Named ``--bands`` (1-based band numbers of the product's usual full stack, red first).
BAND_PRESETS: Dict[str, Tuple[Tuple[int, ...], str]] = {
    "sentinel2-rgb": ((4, 3, 2), "Sentinel-2 MSI B4, B3, B2 (true colour) of a B1..B12 stack"),
    "sentinel2-cir": ((8, 4, 3), "Sentinel-2 MSI B8, B4, B3 (colour infrared)"),
    "landsat8-rgb": ((4, 3, 2), "Landsat 8/9 OLI B4, B3, B2 (true colour)"),
    "landsat9-rgb": ((4, 3, 2), "Landsat 8/9 OLI B4, B3, B2 (true colour)"),
    "landsat8-cir": ((5, 4, 3), "Landsat 8/9 OLI B5, B4, B3 (colour infrared)"),
    "landsat7-rgb": ((3, 2, 1), "Landsat 4-7 TM/ETM+ B3, B2, B1 (true colour)"),
    "landsat5-rgb": ((3, 2, 1), "Landsat 4-7 TM/ETM+ B3, B2, B1 (true colour)"),
    "landsat7-cir": ((4, 3, 2), "Landsat 4-7 TM/ETM+ B4, B3, B2 (colour infrared)"),
    "naip-rgb": ((1, 2, 3), "NAIP R, G, B, NIR: bands 1, 2, 3"),
    "naip-cir": ((4, 1, 2), "NAIP NIR, R, G (colour infrared)"),
    "planetscope-rgb": ((3, 2, 1), "PlanetScope 4-band B, G, R, NIR: bands 3, 2, 1"),
}


@dataclass(frozen=True)
class StackInfo:
    """What :func:`open_inputs` opened: the files (in band order) and those resampled to the finest grid."""

    inputs: Tuple[str, ...]
    resampled: Dict[str, Tuple[int, int]] = field(default_factory=dict)  # file -> its (width, height)


def open_raster(path: Union[str, Path]):
    """``rasterio.open(path)`` with clear errors: a missing file is :class:`RasterNotFoundError`, a file GDAL
    cannot decode is :class:`RasterReadError` (both name the file)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    p = Path(path).expanduser()
    if not p.exists():
        raise RasterNotFoundError(f"input image {str(path)!r} does not exist")
    if p.is_dir():
        raise RasterReadError(f"input image {str(path)!r} is a folder; pass one raster file (GeoTIFF, PNG, JPEG, ...)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(p)
    except (RasterioError, OSError) as e:
        raise RasterReadError(f"cannot read {str(path)!r} as a raster image: {e}. `farslip segment` reads GeoTIFF, "
                              f"PNG, JPEG and the other GDAL raster formats; check that the file is complete and not "
                              f"another kind of file (`gdalinfo {p.name}` shows what GDAL sees).") from None
    if src.count < 1 or src.width < 1 or src.height < 1:
        src.close()
        raise RasterReadError(f"{str(path)!r} has no pixels ({src.count} bands, {src.width}x{src.height})")
    return src


def _gdal_type(dtypes: Sequence[str]) -> str:
    import rasterio.dtypes as rdt

    common = np.result_type(*[np.dtype(d) for d in dtypes]).name
    if common not in rdt.dtype_rev:  # e.g. int8+uint16 -> int32 is fine; anything exotic -> float64
        common = "float64"
    return rdt.typename_fwd[rdt.dtype_rev[common]]


def _stack_vrt(srcs: Sequence[Any], names: Sequence[str]) -> Tuple[str, Dict[str, Tuple[int, int]]]:
    """VRT XML stacking the first band of each source on the finest source's grid."""
    from xml.sax.saxutils import escape

    finest = max(range(len(srcs)), key=lambda i: srcs[i].width * srcs[i].height)
    ref = srcs[finest]
    t = ref.transform
    parts = [f'<VRTDataset rasterXSize="{ref.width}" rasterYSize="{ref.height}">']
    if ref.crs is not None:
        parts.append(f"<SRS>{escape(ref.crs.to_wkt())}</SRS>")
    parts.append(f"<GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>")
    gdal_type = _gdal_type([s.dtypes[0] for s in srcs])
    resampled: Dict[str, Tuple[int, int]] = {}
    for i, (s, name) in enumerate(zip(srcs, names), start=1):
        nod = s.nodatavals[0]
        parts.append(f'<VRTRasterBand dataType="{gdal_type}" band="{i}">')
        if nod is not None:
            parts.append(f"<NoDataValue>{nod!r}</NoDataValue>")
        parts.append(f"<Description>{escape(Path(name).name)}</Description>")
        parts.append('<ComplexSource resampling="bilinear">')
        parts.append(f'<SourceFilename relativeToVRT="0">{escape(str(Path(name).resolve()))}</SourceFilename>')
        parts.append("<SourceBand>1</SourceBand>")
        parts.append(f'<SrcRect xOff="0" yOff="0" xSize="{s.width}" ySize="{s.height}"/>')
        parts.append(f'<DstRect xOff="0" yOff="0" xSize="{ref.width}" ySize="{ref.height}"/>')
        if nod is not None:
            parts.append(f"<NODATA>{nod!r}</NODATA>")
        parts.append("</ComplexSource></VRTRasterBand>")
        if (s.width, s.height) != (ref.width, ref.height):
            resampled[str(name)] = (s.width, s.height)
    parts.append("</VRTDataset>")
    return "".join(parts), resampled


def _check_same_grid(srcs: Sequence[Any], names: Sequence[str]) -> None:
    multi = [(n, s.count) for n, s in zip(names, srcs) if s.count != 1]
    if multi:
        raise BandSelectionError(
            f"several inputs are stacked as one band each, but {multi[0][0]} has {multi[0][1]} bands; pass single-band "
            f"files (e.g. B04.jp2 B03.jp2 B02.jp2) or one multi-band file with --bands")
    crs = {None if s.crs is None else s.crs.to_string() for s in srcs}
    if len(crs) > 1:
        raise BandSelectionError(f"the inputs have different CRSs ({', '.join(f'{Path(n).name}: {s.crs}' for n, s in zip(names, srcs))}); "
                                 f"reproject them to one grid first (gdalwarp)")
    georef = [is_georeferenced(s) for s in srcs]
    if not all(georef):
        sizes = {(s.width, s.height) for s in srcs}
        if any(georef) or len(sizes) > 1:
            raise BandSelectionError(f"the inputs are not georeferenced and differ in size "
                                     f"({', '.join(f'{Path(n).name}: {s.width}x{s.height}' for n, s in zip(names, srcs))}); "
                                     f"without georeferencing only files of the same size can be stacked")
        return
    finest = min(min(abs(s.transform.a), abs(s.transform.e)) for s in srcs)
    ref = srcs[0].bounds
    for n, s in zip(names, srcs):
        if any(abs(a - b) > 0.5 * finest for a, b in zip(s.bounds, ref)):
            raise BandSelectionError(
                f"{Path(n).name} covers {tuple(round(v, 3) for v in s.bounds)} but {Path(names[0]).name} covers "
                f"{tuple(round(v, 3) for v in ref)}: stacked bands must cover the same extent (the same tile of one "
                f"scene); clip them to one extent first (gdal_translate -projwin / gdalbuildvrt -separate)")


@contextlib.contextmanager
def open_inputs(paths: Union[str, Path, Sequence[Union[str, Path]]]) -> Iterator[Tuple[Any, StackInfo]]:
    """Open one raster, or stack several single-band files (same CRS and extent) in the given order on the
    finest file's grid; yields ``(dataset, StackInfo)`` and closes everything afterwards."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not items:
        raise RasterNotFoundError("no input image given")
    if len(items) == 1:
        src = open_raster(items[0])
        with src:
            yield src, StackInfo((str(items[0]),))
        return
    from rasterio.io import MemoryFile

    srcs: List[Any] = []
    try:
        for p in items:
            srcs.append(open_raster(p))
        _check_same_grid(srcs, [str(p) for p in items])
        xml, resampled = _stack_vrt(srcs, [str(p) for p in items])
    finally:
        for s in srcs:
            s.close()
    for name, (w, h) in resampled.items():
        logger.info("note: %s (%dx%d) is resampled (bilinear) to the finest input grid", Path(name).name, w, h)
    with MemoryFile(xml.encode("utf-8"), ext=".vrt") as mem, mem.open() as src:
        yield src, StackInfo(tuple(str(p) for p in items), resampled)


def is_georeferenced(src) -> bool:
    """True when the dataset has a CRS, a non-identity geotransform or ground control points."""
    from affine import Affine

    gcps, _ = src.gcps
    return src.crs is not None or src.transform != Affine.identity() or bool(gcps)


def describe_bands(src) -> str:
    """``1 (red), 2 (green), ...``: band numbers with their description or colour interpretation."""
    out = []
    for i in range(1, src.count + 1):
        desc = src.descriptions[i - 1] or src.colorinterp[i - 1].name
        out.append(f"{i} ({desc})")
    return ", ".join(out)


def parse_bands(spec: Union[None, str, int, Sequence[int]]) -> Optional[Tuple[int, ...]]:
    """``"4,3,2"`` / ``[4, 3, 2]`` / ``1`` / ``"sentinel2-rgb"`` (:data:`BAND_PRESETS`) → 1-based band
    numbers (one or three); None stays None."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    if isinstance(spec, str) and not spec.replace(",", "").replace(" ", "").isdigit():
        key = spec.strip().lower()
        if key in BAND_PRESETS:
            return BAND_PRESETS[key][0]
        close = difflib.get_close_matches(key, list(BAND_PRESETS), n=2, cutoff=0.5)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise BandSelectionError(f"--bands {spec!r}{hint}: write 1-based band numbers red first (e.g. --bands 4,3,2) "
                                 f"or a preset: {', '.join(BAND_PRESETS)}")
    if isinstance(spec, int):
        items: Sequence = [spec]
    elif isinstance(spec, str):
        items = [s.strip() for s in spec.split(",")]
    else:
        items = list(spec)
    try:
        bands = tuple(int(b) for b in items)
    except (TypeError, ValueError):
        raise BandSelectionError(f"--bands {spec!r}: write 1-based band numbers separated by commas, red first, "
                                 f"e.g. --bands 4,3,2 (or one band, --bands 1, for a grey image)") from None
    if len(bands) not in (1, 3):
        raise BandSelectionError(f"--bands {spec!r} names {len(bands)} bands; the model takes an RGB image: give three "
                                 f"bands as R,G,B (e.g. --bands 4,3,2) or one band, which is repeated as grey")
    return bands


def resolve_bands(src, spec: Union[None, str, int, Sequence[int]] = None) -> Bands:
    """The three 1-based band numbers fed to the model as R, G, B.

    Explicit ``spec`` (``"4,3,2"``; one band is repeated three times) is checked against the band count.
    Without it: bands marked red/green/blue (colour interpretation), else band 1 of a single-band image
    (grey), else bands 1,2,3 of a 3- or 4-band image whose 4th band is alpha; any other multispectral
    image needs ``--bands`` (guessing would silently feed e.g. blue as red).
    """
    from rasterio.enums import ColorInterp

    n = src.count
    bands = parse_bands(spec)
    name = Path(getattr(src, "name", "input")).name
    if bands is not None:
        bad = [b for b in bands if not 1 <= b <= n]
        if bad:
            raise BandSelectionError(
                f"--bands {','.join(map(str, bands))}: band {bad[0]} does not exist; {name} has {n} band"
                f"{'s' if n != 1 else ''} (numbered 1..{n}: {describe_bands(src)}). Band numbers are 1-based.")
        return (bands * 3) if len(bands) == 1 else bands  # type: ignore[return-value]
    ci = list(src.colorinterp)
    if n == 1 and ci[0] == ColorInterp.palette:
        raise BandSelectionError(
            f"{name} is a paletted (indexed-colour) image; the model needs RGB. Expand it first, e.g. "
            f"`gdal_translate -expand rgb {name} rgb.tif`, or pass --bands 1 to use the indices as grey values.")
    if all(c in ci for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
        return (ci.index(ColorInterp.red) + 1, ci.index(ColorInterp.green) + 1, ci.index(ColorInterp.blue) + 1)
    if n == 1:
        return (1, 1, 1)
    if n == 3 or (n == 4 and ci[3] == ColorInterp.alpha):
        return (1, 2, 3)
    raise BandSelectionError(
        f"{name} has {n} bands ({describe_bands(src)}) and none is marked red/green/blue; choose the three bands "
        f"shown to the model as R,G,B with --bands, e.g. --bands 4,3,2 for Sentinel-2 or Landsat 8/9, --bands 3,2,1 "
        f"for Landsat 4-7 (or --bands N for one band as grey).")


def _nodata_only(src, bands: Sequence[int]) -> bool:
    """True when the validity of ``bands`` is fully described by their nodata values (no alpha band, no
    internal or per-dataset mask), so it can be computed from the data without GDAL re-reading it."""
    from rasterio.enums import MaskFlags

    for b in set(bands):
        flags = set(src.mask_flag_enums[b - 1])
        if not (flags <= {MaskFlags.all_valid} or flags == {MaskFlags.nodata}):
            return False
    return True


def _nodata_invalid(data: np.ndarray, nodata: Optional[float]) -> np.ndarray:
    """Pixels equal to ``nodata`` in ``data``'s own type (a value the type cannot hold matches nothing)."""
    if nodata is None or np.isnan(nodata):
        return np.zeros(data.shape, dtype=bool)
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        if not (info.min <= nodata <= info.max and float(nodata).is_integer()):
            return np.zeros(data.shape, dtype=bool)
    return data == np.asarray(nodata).astype(data.dtype)


def read_valid(src, bands: Sequence[int], **read_kwargs: Any) -> Tuple[np.ndarray, np.ndarray]:
    """``src.read(unique bands, **read_kwargs)`` and the validity of each pixel: valid when every band is
    valid there (not nodata, not masked by an alpha band or an internal mask, finite). Returns the data of
    the unique bands in order of first appearance and ``valid (h, w)``."""
    uniq = list(dict.fromkeys(bands))
    if _nodata_only(src, uniq):
        data = src.read(uniq, **read_kwargs)
        invalid = np.zeros(data.shape[1:], dtype=bool)
        for i, b in enumerate(uniq):
            invalid |= _nodata_invalid(data[i], src.nodatavals[b - 1])
    else:
        arr = src.read(uniq, masked=True, **read_kwargs)
        data = np.ma.getdata(arr)
        invalid = np.ma.getmaskarray(arr).any(axis=0)
    if np.issubdtype(data.dtype, np.floating):
        invalid |= ~np.isfinite(data).all(axis=0)
    return data, ~invalid


def read_block(src, bands: Bands, window, path_for_errors: str = "") -> Tuple[np.ndarray, np.ndarray]:
    """``(data (3, h, w) in the file's dtype, valid (h, w) bool)`` of one window (see :func:`read_valid`)."""
    from rasterio.errors import RasterioError

    uniq = list(dict.fromkeys(bands))
    try:
        data, valid = read_valid(src, bands, window=window)
    except (RasterioError, OSError) as e:
        raise RasterReadError(f"reading {path_for_errors or src.name} failed at window {window}: {e}") from None
    if len(uniq) != 3:
        data = data[[uniq.index(b) for b in bands]]
    return data, valid
