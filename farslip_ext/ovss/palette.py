"""Class colours shared by the segmentor's ``dataset_meta`` and the ``farslip segment`` overlay."""
from __future__ import annotations

import colorsys
from typing import List, Tuple

import numpy as np

__all__ = ["class_colors"]

# Qualitative palette (Tableau 10 + 10 lighter variants): distinct on imagery, colour-blind aware order.
_BASE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (174, 199, 232), (255, 187, 120),
    (152, 223, 138), (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210), (199, 199, 199),
    (219, 219, 141), (158, 218, 229),
]


def class_colors(n: int) -> np.ndarray:
    """``(n, 3)`` uint8 colours: the 20 palette colours, then golden-ratio hues."""
    cols: List[Tuple[int, int, int]] = list(_BASE[:n])
    i = 0
    while len(cols) < n:
        h = (0.11 + i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.65 if i % 2 else 0.9, 0.95 if i % 3 else 0.75)
        cols.append((int(r * 255), int(g * 255), int(b * 255)))
        i += 1
    return np.asarray(cols, dtype=np.uint8).reshape(n, 3)
