"""FarSLIP training losses (method spec §1.3, §1.5, §2.3). Importing this package registers them in ``LOSSES``.

Every loss returns a dict of ``<term>_loss`` tensors, already multiplied by its ``loss_weight``.
"""
from farslip_ext.losses.distill import PatchDistillLoss
from farslip_ext.losses.global_itc import GlobalITCLoss
from farslip_ext.losses.region import PaddedRegionITCLoss, RegionCategoryLoss, soft_cross_entropy

__all__ = ["GlobalITCLoss", "PatchDistillLoss", "RegionCategoryLoss", "PaddedRegionITCLoss", "soft_cross_entropy"]
