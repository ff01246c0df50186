"""FarSLIP training losses (docs/reference/method.md §1.3, §1.5, §2.3). Importing this package registers them in ``LOSSES``.

Every loss declares the features it reads (``required_features``, the vocabulary of
:mod:`farslip_ext.train.features`) and returns a dict of ``<term>_loss`` tensors, already multiplied by
its ``loss_weight`` (the config entry's ``weight``). The contract: :mod:`farslip_ext.losses.base`.
"""
from farslip_ext.losses.base import FeatureLoss
from farslip_ext.losses.distill import PatchDistillLoss
from farslip_ext.losses.global_itc import GlobalITCLoss
from farslip_ext.losses.region import PaddedRegionITCLoss, RegionCategoryLoss, soft_cross_entropy

__all__ = ["FeatureLoss", "GlobalITCLoss", "PatchDistillLoss", "RegionCategoryLoss", "PaddedRegionITCLoss",
           "soft_cross_entropy"]
