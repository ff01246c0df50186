"""Brute-force reference computations (nested Python loops) shared by several test modules."""
from __future__ import annotations

import math

import torch


def _bilinear(fm, y: float, x: float, dim: int):
    """torchvision's bilinear_interpolate for one point, over a nested list fm[h][w] -> list of D floats."""
    h, w = len(fm), len(fm[0])
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return [0.0] * dim
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= h - 1:
        y_low = y_high = h - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= w - 1:
        x_low = x_high = w - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return [
        hy * hx * fm[y_low][x_low][d] + hy * lx * fm[y_low][x_high][d]
        + ly * hx * fm[y_high][x_low][d] + ly * lx * fm[y_high][x_high][d]
        for d in range(dim)
    ]


def brute_roi_mean(tokens: torch.Tensor, grid, box) -> list:
    """Mean over an (H, W) output of aligned RoIAlign of one image, by loops.

    tokens: (N, D) dense tokens of one image (row-major over the H×W grid); box: normalised xyxy.
    """
    h, w = grid
    dim = tokens.shape[1]
    fm = [[tokens[r * w + c].tolist() for c in range(w)] for r in range(h)]
    x1, y1, x2, y2 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    sx, sy = x1 - 0.5, y1 - 0.5
    rw, rh = x2 - x1, y2 - y1
    bw, bh = rw / w, rh / h
    gw, gh = math.ceil(rw / w), math.ceil(rh / h)
    count = max(gw * gh, 1)
    total = [0.0] * dim
    for ph in range(h):
        for pw in range(w):
            acc = [0.0] * dim
            for iy in range(gh):
                yy = sy + ph * bh + (iy + 0.5) * bh / gh
                for ix in range(gw):
                    xx = sx + pw * bw + (ix + 0.5) * bw / gw
                    val = _bilinear(fm, yy, xx, dim)
                    acc = [a + v for a, v in zip(acc, val)]
            total = [t + a / count for t, a in zip(total, acc)]
    return [t / (h * w) for t in total]
