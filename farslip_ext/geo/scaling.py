"""Radiometric scaling of the input bands to the 0..255 range the CLIP preprocessing expects.

* ``auto`` (default): uint8 data is used as is; any other type (uint16, int16, float, ...) gets the
  ``percentile`` stretch.
* ``percentile``: per band, ``low``/``high`` = the 2nd/98th percentiles (``percentiles=``) of the valid
  pixels of a **sample** of about ``sample_size``² pixels (the whole raster when smaller; a decimated read
  of the overviews when the file has them; otherwise a regular grid of 64×64 windows), then ``255·(x − low)/(high − low)`` clipped to 0..255.
* ``range``: one fixed ``(low, high)`` for every band (``value_range=``, e.g. ``0,10000`` for Sentinel-2
  L2A reflectance ×10⁴); no sample is read.
* ``none``: values are used as they are (assumed to be 0..255 already), clipped to 0..255.

Nodata, masked and non-finite pixels never enter the statistics.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from farslip_ext.geo.errors import GeoSegmentError

__all__ = ["BandStretch", "compute_stretch", "STRETCH_METHODS", "parse_pair"]

logger = logging.getLogger(__name__)

STRETCH_METHODS = ("auto", "percentile", "range", "none")


@dataclass(frozen=True)
class BandStretch:
    """A per-band linear map ``x → 255·(x − low)/(high − low)`` clipped to 0..255 (identity for ``none``)."""

    method: str
    low: Tuple[float, float, float]
    high: Tuple[float, float, float]
    percentiles: Optional[Tuple[float, float]] = None
    sample_shape: Optional[Tuple[int, int]] = None

    def apply(self, data: np.ndarray) -> np.ndarray:
        """``(3, h, w)`` raw values → float32 ``(3, h, w)`` in 0..255."""
        x = data.astype(np.float32, copy=True)
        if self.method != "none":
            lo = np.asarray(self.low, dtype=np.float32)[:, None, None]
            span = np.asarray(self.high, dtype=np.float32)[:, None, None] - lo
            x -= lo
            x *= 255.0 / span
        np.clip(x, 0.0, 255.0, out=x)
        np.nan_to_num(x, copy=False, nan=0.0)
        return x

    def as_dict(self) -> dict:
        return dict(method=self.method, low=list(self.low), high=list(self.high),
                    percentiles=list(self.percentiles) if self.percentiles else None,
                    sample_shape=list(self.sample_shape) if self.sample_shape else None)


def parse_pair(spec, what: str) -> Optional[Tuple[float, float]]:
    """``"2,98"`` / ``(2, 98)`` → ``(2.0, 98.0)`` with ``a < b``; None stays None."""
    if spec is None:
        return None
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    try:
        a, b = (float(v) for v in items)
    except (TypeError, ValueError):
        raise GeoSegmentError(f"{what} {spec!r}: write two numbers LOW,HIGH, e.g. {what} 2,98") from None
    if not a < b:
        raise GeoSegmentError(f"{what} {spec!r}: LOW must be smaller than HIGH")
    return a, b


def _sample(src, bands: Sequence[int], sample_size: int) -> Tuple[np.ndarray, np.ndarray, Tuple[int, int]]:
    """A sample of about ``sample_size``² pixels: the whole raster when it is that small, a decimated read
    when the file has overviews (GDAL reads the overview), else a regular grid of small windows (a decimated
    read without overviews would make GDAL walk every block pixel by pixel, which is slow)."""
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    from farslip_ext.geo.raster import read_valid

    w, h = src.width, src.height
    if w * h <= sample_size * sample_size:
        data, valid = read_valid(src, bands)
        return data, valid, (h, w)
    if all(src.overviews(b) for b in set(bands)):
        scale = float(sample_size) / max(w, h)
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        data, valid = read_valid(src, bands, out_shape=(len(set(bands)), sh, sw), resampling=Resampling.nearest)
        return data, valid, (sh, sw)
    patch = 64
    n = max(1, -(-sample_size // patch))
    rows = sorted({round(i * (h - min(patch, h)) / max(1, n - 1)) for i in range(n)})
    cols = sorted({round(j * (w - min(patch, w)) / max(1, n - 1)) for j in range(n)})
    ph, pw = min(patch, h), min(patch, w)
    datas, valids = [], []
    for r in rows:
        for c in cols:
            d, v = read_valid(src, bands, window=Window(c, r, pw, ph))
            datas.append(d.reshape(d.shape[0], -1))
            valids.append(v.reshape(-1))
    data = np.concatenate(datas, axis=1)[:, None, :]
    return data, np.concatenate(valids)[None, :], (len(rows) * ph, len(cols) * pw)


def compute_stretch(src, bands: Sequence[int], method: str = "auto", percentiles=(2.0, 98.0),
                    value_range=None, sample_size: int = 1024) -> BandStretch:
    """The :class:`BandStretch` of ``bands`` of the open dataset ``src`` (see the module doc)."""
    if method not in STRETCH_METHODS:
        raise GeoSegmentError(f"--stretch {method!r}; choose one of {', '.join(STRETCH_METHODS)}")
    vr = parse_pair(value_range, "--value-range")
    if vr is not None:
        if method not in ("auto", "range"):
            raise GeoSegmentError(f"--value-range {value_range!r} goes with --stretch range (or auto), not {method!r}")
        return BandStretch("range", (vr[0],) * 3, (vr[1],) * 3)
    if method == "range":
        raise GeoSegmentError("--stretch range needs --value-range LOW,HIGH (e.g. --value-range 0,10000)")
    dtype = np.dtype(src.dtypes[bands[0] - 1])
    if method == "auto":
        method = "none" if all(np.dtype(src.dtypes[b - 1]) == np.uint8 for b in bands) else "percentile"
        logger.info("stretch auto: %s data -> %s", dtype, method)
    if method == "none":
        return BandStretch("none", (0.0,) * 3, (255.0,) * 3)
    pct = parse_pair(percentiles, "--percentiles")
    if not (0.0 <= pct[0] < pct[1] <= 100.0):
        raise GeoSegmentError(f"--percentiles {percentiles!r}: both must lie in 0..100")
    from rasterio.errors import RasterioError

    from farslip_ext.geo.errors import RasterReadError

    try:
        data, valid, shape = _sample(src, bands, sample_size)
    except (RasterioError, OSError) as e:
        raise RasterReadError(f"reading a sample of {src.name} for the stretch failed: {e}") from None
    sh, sw = shape
    data = data.astype(np.float64)
    uniq = list(dict.fromkeys(bands))
    if not valid.any():
        raise GeoSegmentError(
            f"{src.name}: no valid (non-nodata) pixel in a {sw}x{sh} sample of bands {list(bands)}, so no "
            f"percentile stretch can be computed; pass a fixed range with --value-range LOW,HIGH")
    lows, highs = [], []
    for b in bands:
        v = data[uniq.index(b)][valid]
        lo, hi = (float(x) for x in np.percentile(v, pct))
        if not hi > lo:
            logger.warning("band %d is constant (%g) in the sample; its stretch uses [%g, %g]", b, lo, lo, lo + 1)
            hi = lo + 1.0
        lows.append(lo)
        highs.append(hi)
    logger.info("percentile stretch %s from a %dx%d-pixel sample: low=%s high=%s", pct, sw, sh, lows, highs)
    return BandStretch("percentile", tuple(lows), tuple(highs), pct, (sh, sw))  # type: ignore[arg-type]
