"""Loading transforms that fail clearly (registered in ``mmseg.registry.TRANSFORMS``; ovss-protocol.md §2.3, §6).

``FarSLIPLoadImageFromFile`` is mmcv's ``LoadImageFromFile`` and ``FarSLIPLoadAnnotations`` is mmseg's
``LoadAnnotations`` (same decoding, ``reduce_zero_label`` and ``label_map``), except that a missing or
undecodable file, a colour (multi-channel) label and a label whose size differs from its image raise
an error naming the file and the fix instead of an assertion or a shape error deep inside IoUMetric.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import TRANSFORMS

__all__ = ["FarSLIPLoadImageFromFile", "FarSLIPLoadAnnotations", "ImageDecodeError", "LabelFormatError"]


class ImageDecodeError(ValueError):
    """An image or label file exists but cannot be decoded."""


class LabelFormatError(ValueError):
    """A label file decodes, but is not a single-channel index image of its image's size."""


def _local_missing(path: str) -> bool:
    return "://" not in str(path) and not Path(path).is_file()


@TRANSFORMS.register_module()
class FarSLIPLoadImageFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` with clear errors for missing and undecodable images."""

    def transform(self, results: dict) -> Optional[dict]:
        path = results["img_path"]
        if _local_missing(path) and not self.ignore_empty:
            raise FileNotFoundError(f"image {path} does not exist (listed by the dataset a moment ago?); "
                                    f"check the data folder or re-run the dataset converter")
        try:
            out = super().transform(results)
        except Exception as e:  # mmcv raises AssertionError('failed to load image') or decoder errors
            if self.ignore_empty:
                return None
            raise ImageDecodeError(
                f"cannot decode image {path} ({type(e).__name__}: {e}); the file is empty, truncated or not an "
                f"image. Re-download or re-convert it (farslip ovss-convert), or delete it together with its label."
            ) from None
        if out is not None and out.get("img") is None:  # pragma: no cover - python -O drops mmcv's assert
            raise ImageDecodeError(f"cannot decode image {path}; re-download or re-convert it")
        return out


@TRANSFORMS.register_module()
class FarSLIPLoadAnnotations(LoadAnnotations):
    """mmseg ``LoadAnnotations`` with checks: the label must decode to one channel of the image's size."""

    def _load_seg_map(self, results: dict) -> None:
        path = results["seg_map_path"]
        if _local_missing(path):
            raise FileNotFoundError(f"label {path} does not exist for image {results.get('img_path')}; every image "
                                    f"needs a label with the dataset's seg_map_suffix (re-run the converter)")
        try:
            raw = mmcv.imfrombytes(fileio.get(path, backend_args=self.backend_args), flag="unchanged",
                                   backend=self.imdecode_backend)
        except Exception as e:
            raise ImageDecodeError(f"cannot decode label {path} ({type(e).__name__}: {e}); re-create it with "
                                   f"`farslip ovss-convert`") from None
        if raw is None:
            raise ImageDecodeError(f"cannot decode label {path}; re-create it with `farslip ovss-convert`")
        arr = np.asarray(raw)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim != 2:
            raise LabelFormatError(
                f"label {path} has shape {arr.shape}: labels must be single-channel class-index images (PIL mode 'L'), "
                f"this looks like a colour mask. Convert the official release with `farslip ovss-convert <dataset>`.")
        ori = results.get("ori_shape")
        if ori is not None and tuple(arr.shape) != tuple(ori[:2]):
            raise LabelFormatError(f"label {path} is {arr.shape[1]}x{arr.shape[0]} (WxH) but its image "
                                   f"{results.get('img_path')} is {ori[1]}x{ori[0]}; image and label must match")
        if arr.dtype != np.uint8:
            if arr.size and (arr.min() < 0 or arr.max() > 255):
                raise LabelFormatError(f"label {path} ({arr.dtype}) holds values outside 0..255; class indices must "
                                       f"fit in uint8 (re-create it with `farslip ovss-convert`)")
            arr = arr.astype(np.uint8)
        gt = arr.copy()
        # --- from here on exactly mmseg's LoadAnnotations._load_seg_map
        if self.reduce_zero_label is None:
            self.reduce_zero_label = results["reduce_zero_label"]
        if self.reduce_zero_label != results["reduce_zero_label"]:
            raise ValueError(f"FarSLIPLoadAnnotations(reduce_zero_label={self.reduce_zero_label}) but the dataset uses "
                             f"reduce_zero_label={results['reduce_zero_label']}; set it on the dataset only")
        if self.reduce_zero_label:
            gt[gt == 0] = 255
            gt = gt - 1
            gt[gt == 254] = 255
        if results.get("label_map", None) is not None:
            orig = gt.copy()
            for old_id, new_id in results["label_map"].items():
                gt[orig == old_id] = new_id
        results["gt_seg_map"] = gt
        results["seg_fields"].append("gt_seg_map")
