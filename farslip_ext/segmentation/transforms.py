"""Loading transforms that fail clearly (registered in ``mmseg.registry.TRANSFORMS``;
docs/reference/ovss-evaluation.md#6-pitfalls-reported-by-users).

``FarSLIPLoadImageFromFile`` is mmcv's ``LoadImageFromFile`` and ``FarSLIPLoadAnnotations`` is mmseg's
``LoadAnnotations`` (mmseg's own decoding, ``reduce_zero_label`` and ``label_map``, run unchanged), with
checks around them: a missing or undecodable file, a colour (multi-channel) label, a 16-bit label with
values above 255 and a label whose size differs from its image raise an error naming the file and the
fix instead of an assertion or a shape error deep inside IoUMetric.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from farslip_ext.errors import DataError, LabelFormatError
from farslip_ext.segmentation.openmmlab import TRANSFORMS, LoadAnnotations, LoadImageFromFile

__all__ = ["FarSLIPLoadImageFromFile", "FarSLIPLoadAnnotations", "ImageDecodeError", "LabelFormatError"]


class ImageDecodeError(DataError):
    """An image or label file exists but cannot be decoded."""


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
    """mmseg's ``LoadAnnotations`` (its own decoding, ``reduce_zero_label`` and ``label_map``), with checks
    around it: the label must exist, decode, hold one channel of 8-bit class indices, and match its image's size.

    Without a ``seg_map_path`` (mmseg's ``inference_model`` on a bare image) it passes the sample through.
    The checks before mmseg runs read only the file header (mmseg casts to uint8, which would wrap a 16-bit
    label silently); the checks after it look at the decoded map.
    """

    def transform(self, results: dict) -> dict:
        path = results.get("seg_map_path")
        if path is None:  # inference without ground truth (mmseg's inference_model): nothing to load
            return results
        if _local_missing(path):
            raise FileNotFoundError(f"label {path} does not exist for image {results.get('img_path')}; every image "
                                    f"needs a label with the dataset's seg_map_suffix (re-run the converter)")
        if "://" not in str(path):
            _check_label_header(path)
        try:
            out = super().transform(results)
        except (AssertionError, ValueError, TypeError) as e:
            if "reduce_zero_label" in str(e):
                raise ValueError(f"FarSLIPLoadAnnotations(reduce_zero_label={self.reduce_zero_label}) but the dataset "
                                 f"uses reduce_zero_label={results.get('reduce_zero_label')}; set it on the dataset "
                                 f"only") from None
            raise ImageDecodeError(f"cannot decode label {path} ({type(e).__name__}: {e}); re-create it with "
                                   f"`farslip ovss-convert`") from None
        except Exception as e:  # decoder errors of cv2 / PIL / turbojpeg
            raise ImageDecodeError(f"cannot decode label {path} ({type(e).__name__}: {e}); re-create it with "
                                   f"`farslip ovss-convert`") from None
        gt = out.get("gt_seg_map")
        if gt is None or gt.ndim != 2:
            shape = None if gt is None else gt.shape
            raise LabelFormatError(
                f"label {path} has shape {shape}: labels must be single-channel class-index images (PIL mode 'L'), "
                f"this looks like a colour mask. Convert the official release with `farslip ovss-convert <dataset>`.")
        ori = out.get("ori_shape") or (out["img"].shape[:2] if out.get("img") is not None else None)
        if ori is not None and tuple(gt.shape) != tuple(ori[:2]):
            raise LabelFormatError(f"label {path} is {gt.shape[1]}x{gt.shape[0]} (WxH) but its image "
                                   f"{results.get('img_path')} is {ori[1]}x{ori[0]}; image and label must match")
        return out


def _check_label_header(path: str) -> None:
    """Reject label files mmseg would silently mangle: more than 8 bits per value, or unreadable files."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            mode = im.mode
            extrema = im.getextrema() if mode in ("I;16", "I;16B", "I;16L", "I", "F") else None
    except (UnidentifiedImageError, OSError) as e:
        raise ImageDecodeError(f"cannot decode label {path} ({type(e).__name__}: {e}); re-create it with "
                               f"`farslip ovss-convert`") from None
    if extrema is not None:
        lo, hi = extrema if not isinstance(extrema[0], tuple) else extrema[0]
        if lo < 0 or hi > 255:
            raise LabelFormatError(f"label {path} ({mode}) holds values outside 0..255; class indices must fit in "
                                   f"uint8 (re-create it with `farslip ovss-convert`)")
