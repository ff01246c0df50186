"""Box handling and the RoIAlign-then-mean region pooling of FarSLIP (docs/reference/method.md §1.3, §2.2).

Shared by :class:`farslip_ext.heads.RoIAlignHead` (region features) and
:class:`farslip_ext.losses.PatchDistillLoss` (the distillation student side).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torchvision.ops import roi_align

__all__ = ["valid_box_mask", "boxes_to_rois", "roi_align_mean", "check_rows", "upcast"]


def upcast(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 if it is in a lower precision (fp16/bf16 under AMP), else unchanged."""
    return t.float() if t.is_floating_point() and t.element_size() < 4 else t


def valid_box_mask(boxes: torch.Tensor) -> torch.Tensor:
    """``(B, K)`` bool: rows of ``boxes`` (B, K, 5) whose validity flag (column 4) is 1.

    The reference keeps ``validity == 1`` (padded rows carry 0); we test ``> 0.5`` so a float flag
    that went through a cast still counts.
    """
    if boxes.dim() != 3 or boxes.shape[-1] != 5:
        raise ValueError(f"boxes must be (B, K, 5) = normalised xyxy + validity flag, got {tuple(boxes.shape)}")
    return boxes[..., 4] > 0.5


def boxes_to_rois(boxes: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """The valid boxes as torchvision RoIs ``(M, 5)`` = ``[batch_index, x1, y1, x2, y2]`` in token-grid units.

    Rows are in row-major ``(b, k)`` order, the order in which the valid crops are stacked (docs/reference/method.md §2.2).
    Normalised ``x`` is scaled by the grid width ``W`` and ``y`` by the height ``H`` (docs/reference/method.md §1.3); this is
    valid because the global view is squash-resized, so normalised coordinates map onto the grid.
    """
    h, w = int(grid[0]), int(grid[1])
    mask = valid_box_mask(boxes)
    b_idx, k_idx = mask.nonzero(as_tuple=True)  # row-major (b, k) order
    sel = boxes[b_idx, k_idx, :4].to(torch.float64 if boxes.dtype == torch.float64 else torch.float32)
    scale = sel.new_tensor([w, h, w, h])
    return torch.cat([b_idx.to(sel.dtype).unsqueeze(1), sel * scale], dim=1)


def roi_align_mean(global_patches: torch.Tensor, grid: Sequence[int], boxes: torch.Tensor) -> torch.Tensor:
    """Bilinear RoI average of the global dense token map for every valid box, ``(M, D)``, unnormalised.

    Exactly the reference recipe (docs/reference/method.md §1.3): the tokens (B, N, D) are laid out as (B, D, H, W),
    ``torchvision.ops.roi_align(feat, rois, output_size=(H, W), spatial_scale=1.0, sampling_ratio=-1,
    aligned=True)`` gives (M, D, H, W) and the H×W bins are averaged. Tokens are *not* normalised
    before pooling (docs/reference/method.md §7.7). Computed in at least float32 (roi_align's autocast policy does the same).

    Args:
        global_patches: (B, N, D) dense tokens of the global view, N = H·W, no CLS token.
        grid: (H, W) token grid (``model.visual.grid_size``).
        boxes: (B, K, 5) normalised xyxy + validity flag.
    """
    h, w = int(grid[0]), int(grid[1])
    if global_patches.dim() != 3:
        raise ValueError(f"global_patches must be (B, N, D), got {tuple(global_patches.shape)}")
    bsz, n, d = global_patches.shape
    if n != h * w:
        raise ValueError(f"global_patches has {n} tokens but grid {h}x{w} = {h * w} (drop the CLS token)")
    if boxes.shape[0] != bsz:
        raise ValueError(f"boxes batch {boxes.shape[0]} != global_patches batch {bsz}")
    feat = upcast(global_patches).transpose(1, 2).reshape(bsz, d, h, w)
    rois = boxes_to_rois(boxes, (h, w)).to(device=feat.device, dtype=feat.dtype)
    if rois.shape[0] == 0:
        return feat.new_zeros((0, d))
    pooled = roi_align(feat, rois, output_size=(h, w), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    return pooled.mean(dim=(2, 3))


def check_rows(name: str, t: torch.Tensor, m: int) -> None:
    """Raise if ``t`` does not have one row per valid box."""
    if t.shape[0] != m:
        raise ValueError(
            f"{name} has {t.shape[0]} rows but the boxes have {m} valid rows; pass the features of the valid "
            f"crops only, stacked in row-major (b, k) order"
        )

