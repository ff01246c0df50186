"""Sliding-window maths of the OVSS protocol (docs/reference/ovss-evaluation.md#16-sliding-windows).

Pure Python: window boxes, patch padding, the mmcv keep-ratio resize size and the packing of windows
into batched forwards. Nothing here touches torch or mmseg.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import List, Sequence, Tuple, Union

__all__ = ["pair", "slide_windows", "patch_pad", "rescale_long_side", "WindowJob", "plan_windows", "chunk_windows"]

Size = Union[int, Sequence[int]]


def pair(v: Size, what: str) -> Tuple[int, int]:
    """``v`` as ``(height, width)``; an int is used for both."""
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ValueError(f"{what}={v!r}: expected an int or (height, width)")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def slide_windows(h: int, w: int, crop: Size, stride: Size) -> List[Tuple[int, int, int, int]]:
    """Window boxes ``(y1, y2, x1, x2)``: ``grids = max(H - crop + stride - 1, 0) // stride + 1``,
    ``y1 = i·stride``, ``y2 = min(y1 + crop, H)``, ``y1 = max(y2 - crop, 0)`` (the last window snaps to the
    border; an image smaller than the crop gives one smaller window)."""
    ch, cw = pair(crop, "slide_crop")
    sh, sw = pair(stride, "slide_stride")
    hg = max(h - ch + sh - 1, 0) // sh + 1
    wg = max(w - cw + sw - 1, 0) // sw + 1
    boxes = []
    for i in range(hg):
        for j in range(wg):
            y1, x1 = i * sh, j * sw
            y2, x2 = min(y1 + ch, h), min(x1 + cw, w)
            boxes.append((max(y2 - ch, 0), y2, max(x2 - cw, 0), x2))
    return boxes


def patch_pad(h: int, w: int, patch: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """Symmetric zero padding ``(left, right, top, bottom)`` up to a multiple of the patch size."""
    ph, pw = patch
    lr = (-w) % pw
    tb = (-h) % ph
    return lr // 2, lr - lr // 2, tb // 2, tb - tb // 2


def rescale_long_side(h: int, w: int, long_side: int) -> Tuple[int, int]:
    """The size mmcv's ``Resize(scale=(L, L), keep_ratio=True)`` gives: factor ``min(L/long, L/short)`` =
    ``L/long``, each side rounded half up (docs/reference/ovss-evaluation.md#23-test-pipeline-and-config-skeleton)."""
    scale = min(long_side / max(h, w), long_side / min(h, w))
    return int(h * scale + 0.5), int(w * scale + 0.5)


@dataclass(frozen=True)
class WindowJob:
    """One window of one image: its box, patch padding, padded size and the size it runs at."""

    img: int
    box: Tuple[int, int, int, int]
    pad: Tuple[int, int, int, int]
    padded: Tuple[int, int]
    run: Tuple[int, int]


def plan_windows(shapes: Sequence[Tuple[int, int]], crop: Tuple[int, int], stride: Tuple[int, int],
                 patch: Tuple[int, int], window_size: Tuple[int, int], resize_windows: bool,
                 whole: bool = False) -> List[WindowJob]:
    """Every window of every image (``whole`` or ``crop <= 0``: one window per image). ``resize_windows``:
    each window runs at ``window_size`` (RS-OVSS), else at its own patch-padded size (SegEarth-OV)."""
    jobs = []
    for i, (h, w) in enumerate(shapes):
        boxes = [(0, h, 0, w)] if whole or min(crop) <= 0 else slide_windows(h, w, crop, stride)
        for (y1, y2, x1, x2) in boxes:
            pad = patch_pad(y2 - y1, x2 - x1, patch)
            padded = (y2 - y1 + pad[2] + pad[3], x2 - x1 + pad[0] + pad[1])
            run = tuple(window_size) if resize_windows else padded
            jobs.append(WindowJob(i, (y1, y2, x1, x2), pad, padded, run))  # type: ignore[arg-type]
    return jobs


def chunk_windows(jobs: Sequence[WindowJob], cap: int) -> List[List[WindowJob]]:
    """Windows grouped by run size and packed into forwards of at most ``cap``, keeping each image's
    windows together unless one image alone has more than ``cap``."""
    by_run: "OrderedDict[tuple, List[WindowJob]]" = OrderedDict()
    for j in jobs:
        by_run.setdefault(j.run, []).append(j)
    chunks: List[List[WindowJob]] = []
    for group in by_run.values():
        per_img: "OrderedDict[int, List[WindowJob]]" = OrderedDict()
        for j in group:
            per_img.setdefault(j.img, []).append(j)
        cur: List[WindowJob] = []
        for img_jobs in per_img.values():
            if cur and len(cur) + len(img_jobs) > cap:
                chunks.append(cur)
                cur = []
            while len(img_jobs) > cap:
                chunks.append(img_jobs[:cap])
                img_jobs = img_jobs[cap:]
            cur.extend(img_jobs)
        if cur:
            chunks.append(cur)
    return chunks
