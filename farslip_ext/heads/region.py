"""Region-feature heads for the stage-2 region-category loss (docs/reference/method.md §2.2).

A head turns features the training task has already computed into one L2-normalised embedding per
valid region box, ``(M, D)``, rows in row-major ``(b, k)`` order of the valid boxes: the feature
``region_embed``. A head declares the features it reads in ``required_features`` (the vocabulary of
:mod:`farslip_ext.train.features`) and receives exactly those as keyword arguments, so the task
computes nothing a head does not read (the reference computes dense maps it never uses, docs/reference/method.md §7.18):

* ``local_embed``: (M, D) image embedding (CLS path) of each valid crop encoded on its own;
* ``local_patches``: (M, N, D) dense tokens of each valid crop;
* ``global_patches``, ``grid``, ``boxes``: the global view's dense tokens, their grid and the boxes.

A head may have parameters (a learnable projection); they are trained and checkpointed with the task.
"""
from __future__ import annotations

import logging
from typing import Any, ClassVar, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from farslip_ext.heads.roi import check_rows, roi_align_mean, upcast, valid_box_mask
from farslip_ext.registry import HEADS

__all__ = ["RegionHead", "CropClsHead", "CropPooledHead", "RoIAlignHead", "FEATURE_NAMES"]

logger = logging.getLogger(__name__)

#: The features the built-in heads read.
FEATURE_NAMES: Tuple[str, ...] = ("local_embed", "local_patches", "global_patches", "grid", "boxes")


class RegionHead(nn.Module):
    """Optional base class: ``forward(**features) -> (M, D)`` L2-normalised region features (docs/reference/method.md §2.2).

    A subclass sets ``required_features`` and implements :meth:`features`, which receives the same
    keywords; a missing one is a clear error. ``example_inputs()`` gives the contract test its inputs.
    """

    required_features: ClassVar[Tuple[str, ...]] = ()

    def forward(self, **given: Any) -> torch.Tensor:
        missing = [k for k in self.required_features if given.get(k) is None]
        if missing:
            raise ValueError(f"{type(self).__name__} needs {missing} (required_features={self.required_features})")
        return self.features(**given)

    def features(self, **given: Any) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def example_inputs(cls) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """``(kwargs, features)``: build ``cls(**kwargs)`` and call it on ``features`` (contract tests)."""
        from farslip_ext.train.features import example_features

        return {}, example_features()


@HEADS.register_module()
class CropClsHead(RegionHead):
    """Region feature = the crop's own image embedding (CLS path), L2-normalised.

    Reference default (``--local-itc-align cls``, docs/reference/method.md §2.2): every valid crop is encoded by the whole
    visual tower on its own and its standard CLIP image embedding is the region feature.

    forward(local_embed (M, D), [boxes for a row-count check]) -> (M, D).
    """

    required_features: ClassVar[Tuple[str, ...]] = ("local_embed",)

    def features(self, *, local_embed: torch.Tensor, boxes: Optional[torch.Tensor] = None, **_: Any) -> torch.Tensor:
        """Return ``normalize(local_embed)``; ``boxes`` (B, K, 5), if given, checks the row count."""
        if boxes is not None:
            check_rows("local_embed", local_embed, int(valid_box_mask(boxes).sum()))
        return F.normalize(upcast(local_embed), dim=-1)


@HEADS.register_module()
class CropPooledHead(RegionHead):
    """Region feature = mean of the crop's dense tokens, L2-normalised (``pooled``, dead in the reference, docs/reference/method.md §2.2).

    forward(local_patches (M, N, D), [boxes for a row-count check]) -> (M, D).
    """

    required_features: ClassVar[Tuple[str, ...]] = ("local_patches",)

    def features(self, *, local_patches: torch.Tensor, boxes: Optional[torch.Tensor] = None,
                 **_: Any) -> torch.Tensor:
        """Return ``normalize(local_patches.mean(1))``."""
        if local_patches.dim() != 3:
            raise ValueError(f"local_patches must be (M, N, D), got {tuple(local_patches.shape)}")
        if boxes is not None:
            check_rows("local_patches", local_patches, int(valid_box_mask(boxes).sum()))
        return F.normalize(upcast(local_patches).mean(dim=1), dim=-1)


@HEADS.register_module()
class RoIAlignHead(RegionHead):
    """Region feature = RoIAlign of the *global* dense token map, averaged and L2-normalised (``roi``, docs/reference/method.md §2.2).

    Same pooling as the distillation student (docs/reference/method.md §1.3, :func:`farslip_ext.heads.roi.roi_align_mean`):
    ``roi_align(output_size=grid, spatial_scale=1, sampling_ratio=-1, aligned=True)``, mean over the
    bins, no per-token normalisation (docs/reference/method.md §7.7). No crop needs to be encoded.

    forward(global_patches (B, N, D), grid (H, W), boxes (B, K, 5)) -> (M, D).
    """

    required_features: ClassVar[Tuple[str, ...]] = ("global_patches", "grid", "boxes")

    def features(self, *, global_patches, grid, boxes, **_: Any) -> torch.Tensor:
        """Return the normalised RoI-mean features of the valid boxes."""
        return F.normalize(roi_align_mean(global_patches, grid, boxes), dim=-1)
