"""A region head with a learnable projection, one ``HEADS`` class."""
import torch
import torch.nn.functional as F

from farslip_ext.heads import RegionHead, roi_align_mean
from farslip_ext.registry import HEADS


@HEADS.register_module()
class ProjectedRoIHead(RegionHead):
    """RoIAlign-mean of the global dense map over each valid box, then a learnable linear map (identity at
    start), L2-normalised. The dense map comes from the task's ``dense_attn`` variant."""

    required_features = ("global_patches", "grid", "boxes")

    def __init__(self, embed_dim: int):
        super().__init__()
        self.proj = torch.nn.Linear(embed_dim, embed_dim)
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(embed_dim))
            self.proj.bias.zero_()

    def features(self, *, global_patches, grid, boxes, **_):
        pooled = roi_align_mean(global_patches, grid, boxes)
        return F.normalize(self.proj(pooled.to(self.proj.weight.dtype)), dim=-1)

    @classmethod
    def example_inputs(cls):
        kwargs, feats = super().example_inputs()
        return dict(kwargs, embed_dim=feats["global_patches"].shape[-1]), feats
