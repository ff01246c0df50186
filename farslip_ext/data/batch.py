"""The batch contract: what a training dataset yields and what the training task reads (one place).

A *sample* is one dataset item (a dict); the collate (:class:`~farslip_ext.data.collate.FarSLIPCollate`)
stacks samples into a *batch*. Both use the reference's key names (docs/reference/method.md §1.1, §2.1). Every
key is optional in the type (a stage-1 batch has no ``boxes``); which keys a run needs follows from
its losses (``farslip_ext.train.features``), and :func:`check_batch` names the missing ones.

========================  ===================  ==================================================================
key                       batch shape          meaning
========================  ===================  ==================================================================
``global_image``          (B, 3, S, S) float   the whole image, normalised (stage 1: squash; stage 2: + jitter)
``global_text``           (B, L) int64         caption tokens, L = 77 (or 248 for the LongCLIP tower, docs/reference/method.md §2.5)
``subset_images``         (B, K, 3, S, S)      stage-1 random crops (docs/reference/method.md §1.1)
``subset_boxes``          (B, K, 5) float      their ``[x1/W, y1/H, x2/W, y2/H, 1]`` on the original image
``local_images``          (B, K, 3, S, S)      stage-2 object crops; padding rows are zeros (docs/reference/method.md §2.1)
``local_texts``           (B, K, L) int64      region prompt ``"a satellite image of {category}"`` or the free
                                               ``cap``; padding rows are zero tokens
``local_categories``      (B, K) int64         category id; -1 for padding and for ``cap`` regions
``boxes``                 (B, K, 5) float      stage-2 ``[x1/W, y1/H, x2/W, y2/H, valid]``; padding rows all 0
``label``                 (B,) int64           class index (classification tables)
========================  ===================  ==================================================================

Boxes are normalised by the original image size; column 4 is the validity flag (``> 0.5`` = valid).
Crop rows with validity 0 are padding. A sample has the same keys without the leading ``B``; texts may
still be strings in a sample (the collate tokenizes them). Any other key is allowed and collated
(tensors stacked, numbers turned into a tensor, anything else kept as a list).
"""
from __future__ import annotations

from typing import Any, Iterable, List, Mapping, Tuple, TypedDict, Union

import torch

from farslip_ext.errors import DataError

__all__ = ["Batch", "Sample", "BATCH_KEYS", "STAGE1_KEYS", "STAGE2_KEYS", "PAIR_KEYS", "valid_rows", "check_batch"]


class Batch(TypedDict, total=False):
    """A collated training batch (shapes in the module docstring)."""

    global_image: torch.Tensor
    global_text: torch.Tensor
    subset_images: torch.Tensor
    subset_boxes: torch.Tensor
    local_images: torch.Tensor
    local_texts: torch.Tensor
    local_categories: torch.Tensor
    boxes: torch.Tensor
    label: torch.Tensor


class Sample(TypedDict, total=False):
    """One dataset item: the batch keys without the leading batch dimension; texts may be strings."""

    global_image: torch.Tensor
    global_text: Union[torch.Tensor, str]
    subset_images: torch.Tensor
    subset_boxes: torch.Tensor
    local_images: torch.Tensor
    local_texts: Union[torch.Tensor, List[str]]
    local_categories: torch.Tensor
    boxes: torch.Tensor
    label: Union[int, str]


#: Every key of the contract, in the table's order.
BATCH_KEYS: Tuple[str, ...] = tuple(Batch.__annotations__)
#: Keys a stage-1 (RS5M, multi-crop) batch carries (docs/reference/method.md §1.1).
STAGE1_KEYS = ("global_image", "global_text", "subset_images", "subset_boxes")
#: Keys a stage-2 (MGRS-200k) batch carries (docs/reference/method.md §2.1).
STAGE2_KEYS = ("global_image", "global_text", "boxes", "local_images", "local_texts", "local_categories")
#: Keys of an image-text pair batch (SkyScript CSVs, docs/reference/method.md §3.3).
PAIR_KEYS = ("global_image", "global_text")


def valid_rows(boxes: torch.Tensor) -> torch.Tensor:
    """(B, K) bool: the validity flag (column 4) of ``(B, K, 5)`` boxes."""
    if boxes.dim() != 3 or boxes.shape[-1] != 5:
        raise DataError(f"boxes must be (B, K, 5) = normalised xyxy + validity flag, got {tuple(boxes.shape)}")
    return boxes[..., 4] > 0.5


def check_batch(batch: Mapping[str, Any], keys: Iterable[str], needed_by: str = "the training task") -> None:
    """Raise :class:`~farslip_ext.errors.DataError` naming the ``keys`` a batch lacks and who needs them."""
    missing = [k for k in keys if k not in batch]
    if missing:
        raise DataError(
            f"the batch lacks {missing} needed by {needed_by}; it has {sorted(batch)}. Stage-1 keys come from "
            f"MultiCropTransform (subset_images, subset_boxes), stage-2 keys from RegionCropper (boxes, local_*); "
            f"see farslip_ext/data/batch.py for the contract")
