"""Opening the input raster, choosing its RGB bands and reading windows with their validity mask.

Everything goes through rasterio/GDAL, so GeoTIFFs, plain PNG/JPEG images and any other GDAL format
share one code path with windowed (bounded-memory) reads.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from farslip_ext.geo.errors import BandSelectionError, RasterNotFoundError, RasterReadError

__all__ = ["open_raster", "is_georeferenced", "parse_bands", "resolve_bands", "read_block", "read_valid", "describe_bands"]

logger = logging.getLogger(__name__)

Bands = Tuple[int, int, int]


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
    """``"4,3,2"`` / ``[4, 3, 2]`` / ``1`` → 1-based band numbers (one or three); None stays None."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
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
