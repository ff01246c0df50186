"""Class colours, the GeoTIFF colour table, and the PNG overlay with a legend (PIL only).

The overlay is drawn from a thumbnail of the scaled input and of the mask that
:func:`farslip_ext.geo.segment_raster` fills tile by tile (at most ``overlay_size`` pixels on the long side),
so its memory does not grow with the raster.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from farslip_ext.ovss.palette import class_colors

__all__ = ["class_colors", "colormap", "render_overlay", "NODATA_COLOR"]

logger = logging.getLogger(__name__)

#: Colour of nodata pixels in the overlay and the colour table (mask value 255).
NODATA_COLOR = (0, 0, 0)


def colormap(n: int) -> Dict[int, Tuple[int, int, int, int]]:
    """A GDAL colour table for a uint8 mask: the class colours, 255 = nodata (transparent)."""
    cm = {i: (0, 0, 0, 255) for i in range(256)}
    for i, c in enumerate(class_colors(n)):
        cm[i] = (int(c[0]), int(c[1]), int(c[2]), 255)
    cm[255] = NODATA_COLOR + (0,)
    return cm


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def render_overlay(rgb: np.ndarray, mask: np.ndarray, labels: Sequence[str], out_path: Path, *,
                   fractions: Optional[Sequence[float]] = None, title: str = "", alpha: float = 0.5,
                   nodata_fraction: float = 0.0) -> Tuple[int, int]:
    """Write ``image | legend`` as a PNG: ``rgb`` (``(h, w, 3)`` uint8) blended with the class colours of
    ``mask`` (``(h, w)``, 255 = nodata, drawn black), and a legend panel on the right listing each class
    colour, its names and (``fractions``) its share of the valid pixels. Returns the image ``(width, height)``
    of the map part (the legend starts at that x)."""
    from PIL import Image, ImageDraw

    n = len(labels)
    cols = class_colors(n)
    h, w = mask.shape
    out = rgb.astype(np.float32)
    valid = mask != 255
    lut = np.zeros((256, 3), dtype=np.float32)
    lut[:n] = cols
    out[valid] = (1.0 - alpha) * out[valid] + alpha * lut[mask[valid]]
    out[~valid] = NODATA_COLOR
    img = Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "RGB")

    fs = max(12, min(20, max(h, w) // 50))
    font, small = _font(fs), _font(max(10, fs - 3))
    pad, sw, line = fs // 2 + 4, fs + 4, fs + 10
    rows: List[Tuple[Tuple[int, int, int], str]] = []
    for i, name in enumerate(labels):
        txt = f"{i}  {name}"
        if fractions is not None:
            txt += f"  ({100.0 * fractions[i]:.1f} %)"
        rows.append((tuple(int(v) for v in cols[i]), txt))
    if nodata_fraction > 0:
        rows.append((NODATA_COLOR, f"255  nodata  ({100.0 * nodata_fraction:.1f} % of all pixels)"))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max([probe.textlength(t, font=font) for _, t in rows] + [probe.textlength(title, font=small)])
    legend_w = int(pad * 3 + sw + text_w) + 1
    legend_h = pad * 2 + (line if title else 0) + line * len(rows)
    canvas = Image.new("RGB", (w + legend_w, max(h, legend_h)), (255, 255, 255))
    canvas.paste(img, (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = pad
    if title:
        draw.text((w + pad, y), title, fill=(0, 0, 0), font=small)
        y += line
    for col, txt in rows:
        draw.rectangle([w + pad, y, w + pad + sw, y + sw], fill=col, outline=(0, 0, 0))
        draw.text((w + pad * 2 + sw, y + 1), txt, fill=(0, 0, 0), font=font)
        y += line
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_path, format="PNG")
    return w, h
