"""Two losses, each a ``LOSSES`` class that declares the features it reads."""
import math

import torch
import torch.nn.functional as F

from farslip_ext.losses import FeatureLoss
from farslip_ext.registry import LOSSES


@LOSSES.register_module()
class ExampleScaledL2Loss(FeatureLoss):
    """loss_weight * mean squared difference between the global image and caption embeddings."""

    required_features = ("global_embed", "global_text_embed")

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, global_embed, global_text_embed):
        return {"example_l2_loss": self.loss_weight * ((global_embed - global_text_embed) ** 2).mean()}


@LOSSES.register_module()
class TemperatureRegionITCLoss(FeatureLoss):
    """One-to-one region-text InfoNCE with its own learnable temperature (not the CLIP logit scale).

    ``L = ½ (CE(s·R Tᵀ, I) + CE(s·T Rᵀ, I))`` over the valid regions, ``s = exp(log_scale)`` learned,
    initialised to 1/0.07. Logs the temperature ``1/s``.
    """

    required_features = ("region_embed", "local_text_embed")

    def __init__(self, init_temperature: float = 0.07):
        super().__init__()
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    def forward(self, region_embed, local_text_embed):
        text = F.normalize(local_text_embed, dim=-1)
        if region_embed.shape[0] == 0:  # no valid region in the batch: a zero on the graph
            return {"region_temp_itc_loss": self.log_scale * 0.0 + region_embed.sum() * 0.0 + text.sum() * 0.0}
        logits = self.log_scale.exp() * region_embed.float() @ text.float().T
        target = torch.arange(logits.shape[0], device=logits.device)
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        return {"region_temp_itc_loss": loss, "temperature": (-self.log_scale).exp().detach()}
