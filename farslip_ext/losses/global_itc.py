"""Global image-text contrastive loss (docs/reference/method.md §1.5), a thin wrapper of open_clip's ``ClipLoss``."""
from __future__ import annotations

import logging
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from farslip_ext.losses._dist import dist_info
from farslip_ext.losses.base import FeatureLoss
from farslip_ext.registry import LOSSES

__all__ = ["GlobalITCLoss"]

logger = logging.getLogger(__name__)


@LOSSES.register_module()
class GlobalITCLoss(FeatureLoss):
    """CLIP InfoNCE between the global image embedding (CLS) and the caption embedding (docs/reference/method.md §1.5).

    Delegates to ``open_clip.loss.ClipLoss(local_loss=False, gather_with_grad=False, cache_labels=True,
    rank, world_size)``, the reference configuration: features are all-gathered across ranks without
    gradient and the local slice is re-inserted, so every rank computes the *same* loss over the global
    batch, and each rank's local features receive exactly the gradient that a single process holding
    the whole batch would give them. (DDP then averages the parameter gradients over ranks, so the
    effective parameter gradient is 1/world_size of the single-process one; that is the reference
    behaviour and open_clip's.)

    In a task it reads ``global_embed``, ``global_text_embed`` and ``logit_scale`` and L2-normalises
    the embeddings (:meth:`forward_features`); ``forward`` takes normalised tensors.

    Args:
        loss_weight: multiplies the loss (reference ``--w-g`` = 1.0).
        local_loss: ``ClipLoss`` option (reference False).
        gather_with_grad: ``ClipLoss`` option (reference False).
        cache_labels: ``ClipLoss`` option (reference True).
        rank: fixed rank; ``None`` reads ``torch.distributed`` at every forward (0 when not initialised).
        world_size: fixed world size; ``None`` reads ``torch.distributed`` at every forward.
    """

    required_features = ("global_embed", "global_text_embed", "logit_scale")

    def __init__(
        self,
        loss_weight: float = 1.0,
        local_loss: bool = False,
        gather_with_grad: bool = False,
        cache_labels: bool = True,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)
        self._fixed_rank = rank
        self._fixed_world = world_size
        r, w = self._rank_world()
        self.clip_loss = ClipLoss(
            local_loss=local_loss,
            gather_with_grad=gather_with_grad,
            cache_labels=cache_labels,
            rank=r,
            world_size=w,
        )

    def _rank_world(self) -> tuple:
        r, w = dist_info()
        return (r if self._fixed_rank is None else self._fixed_rank, w if self._fixed_world is None else self._fixed_world)

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor
    ) -> Dict[str, torch.Tensor]:
        """Compute the loss.

        Args:
            image_features: (B, D) L2-normalised global image embeddings of this rank.
            text_features: (B, D) L2-normalised caption embeddings of this rank.
            logit_scale: the *exponentiated* CLIP logit scale (``model.logit_scale.exp()``), a scalar.

        Returns:
            ``{"global_itc_loss": loss_weight * ClipLoss(...)}``.
        """
        self.clip_loss.rank, self.clip_loss.world_size = self._rank_world()
        loss = self.clip_loss(image_features, text_features, logit_scale)
        return {"global_itc_loss": self.loss_weight * loss}

    def forward_features(self, f: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The task's call: normalise ``global_embed`` and ``global_text_embed``, then :meth:`forward`."""
        return self(F.normalize(f["global_embed"], dim=-1), F.normalize(f["global_text_embed"], dim=-1),
                    f["logit_scale"])
