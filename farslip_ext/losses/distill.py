"""Patch-to-patch self-distillation loss of stage 1 (docs/reference/method.md §1.3)."""
from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from farslip_ext.heads.roi import check_rows, roi_align_mean, upcast, valid_box_mask
from farslip_ext.losses._dist import zero_loss
from farslip_ext.losses.base import FeatureLoss
from farslip_ext.registry import LOSSES

__all__ = ["PatchDistillLoss"]

logger = logging.getLogger(__name__)

_STUDENT = ("global_patches", "grid", "subset_boxes")
_REQUIRED: Dict[str, Tuple[str, ...]] = {
    "roi2pooled": _STUDENT + ("subset_patches",),
    "roi2cls": _STUDENT + ("subset_embed",),
    "combined": _STUDENT + ("subset_patches", "subset_embed"),
}


@LOSSES.register_module()
class PatchDistillLoss(FeatureLoss):
    """``L = 1 - mean_i cos(s_i, t_i)`` between RoI features of the global view and crop targets (docs/reference/method.md §1.3).

    Student ``s_i``: RoIAlign of the global dense token map over box ``i`` (``output_size`` = the token
    grid, ``spatial_scale=1``, ``sampling_ratio=-1``, ``aligned=True``), mean over the bins,
    L2-normalised. Target ``t_i`` depends on ``align``:

    * ``"roi2pooled"`` (reference): mean of the crop's dense tokens, L2-normalised ("patch-to-patch");
    * ``"roi2cls"``: the crop's image embedding (CLS path), L2-normalised (CLIPSelf/FineCLIP form);
    * ``"combined"``: ``0.5 * L_roi2pooled + 0.5 * L_roi2cls``.

    Gradients flow into whatever produced the targets: with the reference ``ActiveTeacher`` the crop
    features come from the student with gradient (docs/reference/method.md §1.4, §7.4); with an EMA/frozen teacher the task
    computes them under ``no_grad``. Only boxes with validity flag 1 count. If there is none, the loss
    is a zero connected to the inputs' graph (the reference would average an empty set, NaN).

    Attributes:
        required_features: the features this ``align`` mode reads (:mod:`farslip_ext.train.features`):
            ``global_patches``, ``grid``, ``subset_boxes`` and ``subset_patches`` (roi2pooled) /
            ``subset_embed`` (roi2cls) / both (combined), so the task skips computing the others.

    Args:
        align: ``"roi2pooled"`` | ``"roi2cls"`` | ``"combined"``.
        loss_weight: multiplies the loss (reference ``--w-d`` = 0.1).
    """

    def __init__(self, align: str = "roi2pooled", loss_weight: float = 0.1) -> None:
        super().__init__()
        if align not in _REQUIRED:
            raise ValueError(f"align must be one of {sorted(_REQUIRED)}, got {align!r}")
        self.align = align
        self.loss_weight = float(loss_weight)

    @property
    def required_features(self) -> Tuple[str, ...]:  # type: ignore[override]
        """Features this loss reads for its ``align`` mode."""
        return _REQUIRED[self.align]

    def forward_features(self, f: Dict[str, object]) -> Dict[str, torch.Tensor]:
        """The task's call: the crop features are ``subset_patches`` / ``subset_embed``."""
        return self(f["global_patches"], f["grid"], f["subset_boxes"], crop_patches=f.get("subset_patches"),
                    crop_pooled=f.get("subset_embed"))

    @staticmethod
    def _cos_distance(s: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = F.normalize(upcast(target), dim=-1)
        return 1.0 - (s * t).sum(dim=-1).mean()

    def forward(
        self,
        global_patches: torch.Tensor,
        grid: Sequence[int],
        boxes: torch.Tensor,
        crop_patches: Optional[torch.Tensor] = None,
        crop_pooled: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """Compute the loss.

        Args:
            global_patches: (B, N, D) unnormalised dense tokens of the global view (no CLS), N = H·W.
            grid: (H, W) token grid.
            boxes: (B, K, 5) normalised xyxy + validity flag (column 4).
            crop_patches: (M, N', D) dense tokens of the M valid crops, row-major (b, k) order
                (``roi2pooled``/``combined``).
            crop_pooled: (M, D) image embeddings of the M valid crops (``roi2cls``/``combined``).

        Returns:
            ``{"distill_loss": loss_weight * L}``.
        """
        need = {"subset_patches": crop_patches, "subset_embed": crop_pooled}
        missing = [{"subset_patches": "crop_patches", "subset_embed": "crop_pooled"}[k]
                   for k in self.required_features if k in need and need[k] is None]
        if missing:
            raise ValueError(f"PatchDistillLoss(align={self.align!r}) needs {missing}")
        m = int(valid_box_mask(boxes).sum())
        if crop_patches is not None and self.align != "roi2cls":
            if crop_patches.dim() != 3:
                raise ValueError(f"crop_patches must be (M, N, D), got {tuple(crop_patches.shape)}")
            check_rows("crop_patches", crop_patches, m)
        if crop_pooled is not None and self.align != "roi2pooled":
            check_rows("crop_pooled", crop_pooled, m)
        if m == 0:
            logger.debug("PatchDistillLoss: no valid box in the batch, returning 0")
            loss = zero_loss(global_patches, crop_patches, crop_pooled)
            return {"distill_loss": self.loss_weight * loss}

        s = F.normalize(roi_align_mean(global_patches, grid, boxes), dim=-1)
        if self.align == "roi2pooled":
            loss = self._cos_distance(s, upcast(crop_patches).mean(dim=1))
        elif self.align == "roi2cls":
            loss = self._cos_distance(s, crop_pooled)
        else:
            loss = 0.5 * self._cos_distance(s, upcast(crop_patches).mean(dim=1)) + 0.5 * self._cos_distance(
                s, crop_pooled
            )
        return {"distill_loss": self.loss_weight * loss}
