"""Stage-2 region-text losses (docs/reference/method.md §2.3): multi-positive category loss and padded one-to-one ITC."""
from __future__ import annotations

import logging
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from farslip_ext.losses._dist import all_sizes, dist_info, gather_rows, gather_rows_with_grad, pad_rows, zero_loss
from farslip_ext.losses.base import FeatureLoss
from farslip_ext.heads.roi import upcast
from farslip_ext.registry import LOSSES

__all__ = ["RegionCategoryLoss", "PaddedRegionITCLoss", "soft_cross_entropy"]

logger = logging.getLogger(__name__)


def soft_cross_entropy(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``-mean_i sum_j target_ij * log_softmax(logits)_ij`` (docs/reference/method.md §2.3)."""
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def _labels_and_valid(
    n: int, device: torch.device, labels: Optional[torch.Tensor], valid: Optional[torch.Tensor]
) -> tuple:
    lab = None if labels is None else labels.to(device=device, dtype=torch.long).reshape(-1)
    val = torch.ones(n, dtype=torch.bool, device=device) if valid is None else valid.to(device).reshape(-1).bool()
    for name, t in (("labels", lab), ("valid", val)):
        if t is not None and t.shape[0] != n:
            raise ValueError(f"{name} has {t.shape[0]} rows, the features {n}")
    return lab, val


@LOSSES.register_module()
class RegionCategoryLoss(FeatureLoss):
    """Multi-positive region-category contrastive loss ("MPCL", the reference default, docs/reference/method.md §2.3).

    Region features ``V`` and their text features ``T`` (one row per region; the text of a labelled
    region is the category prompt) are all-gathered across ranks **with** gradient, together with the
    labels; rows labelled ``ignore_label`` (−1: padding and free-text ``cap`` regions, docs/reference/method.md §7.8) are
    dropped. With ``s`` the exponentiated CLIP logit scale::

        Z_v = s · V Tᵀ,   Z_t = s · T Vᵀ,   P_ij = 1[y_i = y_j] / Σ_j 1[y_i = y_j]
        L = ½ (CE_soft(P, Z_v) + CE_soft(P, Z_t)),   CE_soft(P, Z) = −mean_i Σ_j P_ij log_softmax(Z)_ij

    so every region/text pair of the same category anywhere in the global batch is a positive. Every
    rank computes the same global loss; through the all-gather backward (a sum over ranks) each rank's
    local rows receive ``world_size`` times the single-process gradient, and DDP's averaging gives the
    single-process parameter gradient (tests/losses/test_losses_distributed.py).

    Differences from the reference, both documented quirk fixes: ranks may hold different row counts
    (rows are padded to the largest with ``ignore_label`` before gathering; the reference pads every
    rank to ``batch_size·max_boxes``, which gives the same value), and a global batch without any valid
    label gives a zero loss that is still connected to the inputs' graph instead of NaN (docs/reference/method.md §7.8). The
    reference's unused ``temperature``/``w1`` arguments are not reproduced.

    Args:
        loss_weight: multiplies the loss (reference ``--w-l`` = 1.0).
        ignore_label: label of rows to drop (reference −1).
        gather: all-gather across ranks when ``torch.distributed`` is initialised (reference True).

    In a task it reads ``region_embed`` (the head's normalised output), ``local_text_embed`` (normalised
    here), ``logit_scale`` and ``local_labels`` (:meth:`forward_features`).
    """

    required_features = ("region_embed", "local_text_embed", "logit_scale", "local_labels")

    def __init__(self, loss_weight: float = 1.0, ignore_label: int = -1, gather: bool = True) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)
        self.ignore_label = int(ignore_label)
        self.gather = bool(gather)

    def forward(
        self,
        region_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        valid: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """Compute the loss.

        Args:
            region_features: (N, D) L2-normalised region features of this rank (padded rows allowed).
            text_features: (N, D) L2-normalised text features, row ``i`` belongs to region ``i``.
            logit_scale: the exponentiated CLIP logit scale, a scalar.
            labels: (N,) integer category ids; ``ignore_label`` rows are dropped. Required.
            valid: optional (N,) bool; ``False`` rows are dropped as well (treated as ``ignore_label``).

        Returns:
            ``{"region_itc_loss": loss_weight * L}``.
        """
        if labels is None:
            raise ValueError("RegionCategoryLoss needs labels (category ids, -1 = ignore)")
        if region_features.shape != text_features.shape:
            raise ValueError(f"region {tuple(region_features.shape)} and text {tuple(text_features.shape)} differ")
        device = region_features.device
        n = region_features.shape[0]
        lab, val = _labels_and_valid(n, device, labels, valid)
        lab = torch.where(val, lab, torch.full_like(lab, self.ignore_label))
        v, t = region_features, text_features

        _, world = dist_info()
        if self.gather and world > 1:
            n_max = max(all_sizes(n, device))
            v = gather_rows_with_grad(pad_rows(v, n_max, 0.0))
            t = gather_rows_with_grad(pad_rows(t, n_max, 0.0))
            lab = gather_rows(pad_rows(lab, n_max, self.ignore_label))

        idx = (lab != self.ignore_label).nonzero(as_tuple=True)[0]
        if idx.numel() == 0:
            logger.debug("RegionCategoryLoss: no labelled region in the global batch, returning 0")
            return {"region_itc_loss": self.loss_weight * zero_loss(v, t, logit_scale)}
        v, t, y = upcast(v[idx]), upcast(t[idx]), lab[idx]
        logits_v = upcast(logit_scale) * v @ t.T
        logits_t = logits_v.T  # = s · T Vᵀ
        pos = (y.unsqueeze(1) == y.unsqueeze(0)).to(v.dtype)
        target = pos / pos.sum(dim=1, keepdim=True)
        loss = 0.5 * (soft_cross_entropy(target, logits_v) + soft_cross_entropy(target, logits_t))
        return {"region_itc_loss": self.loss_weight * loss}

    def forward_features(self, f: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The task's call: region embeddings against the normalised region-text embeddings."""
        return self(f["region_embed"], F.normalize(f["local_text_embed"], dim=-1), f["logit_scale"],
                    labels=f["local_labels"])


@LOSSES.register_module()
class PaddedRegionITCLoss(FeatureLoss):
    """One-to-one region-text InfoNCE over zero-padded rows (the reference fallback without MPCL, docs/reference/method.md §2.3, §7.9).

    Reproduces the reference exactly: region and text rows of invalid (padded) regions are set to zero,
    each rank's rows are padded with zeros to ``pad_to`` (the reference pads to ``batch_size·max_boxes``),
    open_clip's ``ClipLoss`` (``local_loss=False``, reference ``gather_with_grad=False``) gathers them and
    builds the global logits, and the symmetric cross-entropy uses the diagonal targets with padded rows
    ignored (``ignore_index=-100``). Quirks kept on purpose: the zero rows still appear as columns
    (logit 0) in every softmax denominator, and two regions with the same category prompt are
    negatives of each other. ``ClipLoss`` itself has no padding mask in open_clip 3.x, so the logits come
    from ``ClipLoss.get_logits`` and the masked cross-entropy is applied here.

    With ``pad_to=None`` the rows are padded only to the largest row count over the ranks, which
    changes the number of zero columns and hence the value; pass ``pad_to=batch_size*max_boxes`` for
    parity. A global batch without any valid row gives a zero loss connected to the graph (the reference
    gives NaN).

    Args:
        loss_weight: multiplies the loss (reference ``--w-l`` = 1.0).
        pad_to: rows per rank after zero padding (``None``: no extra padding).
        gather_with_grad: ``ClipLoss`` option (reference False).
        rank: fixed rank; ``None`` reads ``torch.distributed`` at every forward.
        world_size: fixed world size; ``None`` reads ``torch.distributed`` at every forward.

    In a task it reads ``region_embed``, ``local_text_embed`` (normalised here) and ``logit_scale``.
    """

    required_features = ("region_embed", "local_text_embed", "logit_scale")

    def __init__(
        self,
        loss_weight: float = 1.0,
        pad_to: Optional[int] = None,
        gather_with_grad: bool = False,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)
        self.pad_to = None if pad_to is None else int(pad_to)
        self._fixed_rank = rank
        self._fixed_world = world_size
        r, w = self._rank_world()
        self.clip_loss = ClipLoss(local_loss=False, gather_with_grad=gather_with_grad, cache_labels=False, rank=r, world_size=w)

    def _rank_world(self) -> tuple:
        r, w = dist_info()
        return (r if self._fixed_rank is None else self._fixed_rank, w if self._fixed_world is None else self._fixed_world)

    def forward(
        self,
        region_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        valid: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """Compute the loss.

        Args:
            region_features: (N, D) L2-normalised region features of this rank.
            text_features: (N, D) L2-normalised text features, row ``i`` belongs to region ``i``.
            logit_scale: the exponentiated CLIP logit scale, a scalar.
            labels: ignored (accepted so both region losses share one call signature).
            valid: optional (N,) bool, ``False`` = padded row (default: all valid).

        Returns:
            ``{"region_itc_loss": loss_weight * L}``.
        """
        if region_features.shape != text_features.shape:
            raise ValueError(f"region {tuple(region_features.shape)} and text {tuple(text_features.shape)} differ")
        device = region_features.device
        n = region_features.shape[0]
        _, val = _labels_and_valid(n, device, None, valid)
        rows = n if self.pad_to is None else self.pad_to
        if rows < n:
            raise ValueError(f"pad_to={self.pad_to} is smaller than the {n} rows given")
        self.clip_loss.rank, self.clip_loss.world_size = self._rank_world()
        if self.clip_loss.world_size > 1 and self.pad_to is None:
            rows = max(all_sizes(n, device))
        keep = val.unsqueeze(1).to(region_features.dtype)
        v = pad_rows(region_features * keep, rows, 0.0)
        t = pad_rows(text_features * keep, rows, 0.0)
        val = pad_rows(val, rows, False)
        logits_per_region, logits_per_text = self.clip_loss.get_logits(v, t, logit_scale)
        if self.clip_loss.world_size > 1:
            val = gather_rows(val)
        targets = torch.arange(val.shape[0], device=device)
        targets = torch.where(val, targets, torch.full_like(targets, -100))
        if not bool(val.any()):
            logger.debug("PaddedRegionITCLoss: no valid region in the global batch, returning 0")
            return {"region_itc_loss": self.loss_weight * zero_loss(logits_per_region, logits_per_text)}
        loss = 0.5 * (
            F.cross_entropy(upcast(logits_per_region), targets, ignore_index=-100)
            + F.cross_entropy(upcast(logits_per_text), targets, ignore_index=-100)
        )
        return {"region_itc_loss": self.loss_weight * loss}

    def forward_features(self, f: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The task's call: region embeddings against the normalised region-text embeddings."""
        return self(f["region_embed"], F.normalize(f["local_text_embed"], dim=-1), f["logit_scale"])
