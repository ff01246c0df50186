"""Region-feature heads for the stage-2 region-category loss (method spec §2.2).

A head turns features the training task has already computed into one L2-normalised embedding per
valid region box, ``(M, D)``, rows in row-major ``(b, k)`` order of the valid boxes. Heads take
tensors, never the model; ``required_features`` names the model outputs a head reads so the task can
skip computing the others (the reference computes dense maps it never uses, §7.18):

* ``"crop_pooled"``: (M, D) image embedding (CLS path) of each valid crop encoded on its own;
* ``"crop_patches"``: (M, N, D) dense tokens of each valid crop;
* ``"global_patches"``: (B, N, D) dense tokens of the global view (needs ``grid`` and ``boxes``).
"""
from __future__ import annotations

import logging
from typing import Any, ClassVar, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from farslip_ext.heads.roi import check_rows, roi_align_mean, upcast, valid_box_mask
from farslip_ext.registry import HEADS

__all__ = ["RegionHead", "CropClsHead", "CropPooledHead", "RoIAlignHead", "FEATURE_NAMES"]

logger = logging.getLogger(__name__)

#: The feature names a head or loss may declare in ``required_features``.
FEATURE_NAMES: Tuple[str, ...] = ("crop_pooled", "crop_patches", "global_patches")


class RegionHead(nn.Module):
    """Base class: ``forward(**features) -> (M, D)`` L2-normalised region features (§2.2).

    All heads accept the same keyword arguments, so a task can call ``head(**features)`` with whatever
    it computed. A subclass sets ``required_features`` (checked here, with a clear error when one is
    missing) and implements :meth:`features`, which receives the same keywords.
    """

    required_features: ClassVar[Tuple[str, ...]] = ()
    #: extra inputs (beyond ``required_features``) a head cannot work without
    required_args: ClassVar[Tuple[str, ...]] = ()

    def forward(
        self,
        *,
        crop_pooled: Optional[torch.Tensor] = None,
        crop_patches: Optional[torch.Tensor] = None,
        global_patches: Optional[torch.Tensor] = None,
        grid: Optional[Sequence[int]] = None,
        boxes: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        given = dict(crop_pooled=crop_pooled, crop_patches=crop_patches, global_patches=global_patches, grid=grid,
                     boxes=boxes)
        missing = [k for k in self.required_features + self.required_args if given[k] is None]
        if missing:
            raise ValueError(f"{type(self).__name__} needs {missing} (required_features={self.required_features})")
        return self.features(**given)

    def features(self, **given: Any) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_boxes(self, feats: torch.Tensor, boxes: Optional[torch.Tensor], name: str) -> None:
        if boxes is not None:
            check_rows(name, feats, int(valid_box_mask(boxes).sum()))


@HEADS.register_module()
class CropClsHead(RegionHead):
    """Region feature = the crop's own image embedding (CLS path), L2-normalised.

    Reference default (``--local-itc-align cls``, §2.2): every valid crop is encoded by the whole
    visual tower on its own and its standard CLIP image embedding is the region feature.

    forward(crop_pooled (M, D), [boxes for a row-count check]) -> (M, D).
    """

    required_features: ClassVar[Tuple[str, ...]] = ("crop_pooled",)

    def features(self, *, crop_pooled, boxes=None, **_: Any) -> torch.Tensor:
        """Return ``normalize(crop_pooled)``; ``boxes`` (B, K, 5), if given, checks the row count."""
        self._check_boxes(crop_pooled, boxes, "crop_pooled")
        return F.normalize(upcast(crop_pooled), dim=-1)


@HEADS.register_module()
class CropPooledHead(RegionHead):
    """Region feature = mean of the crop's dense tokens, L2-normalised (``pooled``, dead in the reference, §2.2).

    forward(crop_patches (M, N, D), [boxes for a row-count check]) -> (M, D).
    """

    required_features: ClassVar[Tuple[str, ...]] = ("crop_patches",)

    def features(self, *, crop_patches, boxes=None, **_: Any) -> torch.Tensor:
        """Return ``normalize(crop_patches.mean(1))``."""
        if crop_patches.dim() != 3:
            raise ValueError(f"crop_patches must be (M, N, D), got {tuple(crop_patches.shape)}")
        self._check_boxes(crop_patches, boxes, "crop_patches")
        return F.normalize(upcast(crop_patches).mean(dim=1), dim=-1)


@HEADS.register_module()
class RoIAlignHead(RegionHead):
    """Region feature = RoIAlign of the *global* dense token map, averaged and L2-normalised (``roi``, §2.2).

    Same pooling as the distillation student (§1.3, :func:`farslip_ext.heads.roi.roi_align_mean`):
    ``roi_align(output_size=grid, spatial_scale=1, sampling_ratio=-1, aligned=True)``, mean over the
    bins, no per-token normalisation (§7.7). No crop needs to be encoded.

    forward(global_patches (B, N, D), grid (H, W), boxes (B, K, 5)) -> (M, D).
    """

    required_features: ClassVar[Tuple[str, ...]] = ("global_patches",)
    required_args: ClassVar[Tuple[str, ...]] = ("grid", "boxes")

    def features(self, *, global_patches, grid, boxes, **_: Any) -> torch.Tensor:
        """Return the normalised RoI-mean features of the valid boxes."""
        return F.normalize(roi_align_mean(global_patches, grid, boxes), dim=-1)
