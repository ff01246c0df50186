"""Region-feature heads (docs/reference/method.md §2.2). Importing this package registers them in ``HEADS``."""
from farslip_ext.heads.roi import boxes_to_rois, roi_align_mean, valid_box_mask
from farslip_ext.heads.region import FEATURE_NAMES, CropClsHead, CropPooledHead, RegionHead, RoIAlignHead

__all__ = [
    "FEATURE_NAMES",
    "RegionHead",
    "CropClsHead",
    "CropPooledHead",
    "RoIAlignHead",
    "boxes_to_rois",
    "roi_align_mean",
    "valid_box_mask",
]
