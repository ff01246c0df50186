"""Per-tile prediction: an RGB block in 0..255 → class indices and the top class probability.

:class:`SegmentorPredictor` wraps a :class:`~farslip_ext.segmentation.FarSLIPSeg` and calls its own maths,
unchanged: ``slide_inference`` (sliding windows → dense tokens → cosine with the cached text embeddings
→ window-averaged logits) and ``postprocess_logits`` (×logit_scale, softmax, synonym max-merge, argmax,
``prob_thd``/``bg_idx``). The only things done here are what mmseg's data preprocessor does for the
benchmarks (normalise with the model's mean/std ×255; the block is already RGB) and the nodata fill
(invalid pixels are set to the mean, i.e. 0 after normalisation — the same value the segmentor pads
windows with).

Any object with the :class:`TilePredictor` attributes can be passed to
:func:`farslip_ext.geo.segment_raster` instead (tests inject a stub to measure the streaming alone).
"""
from __future__ import annotations

import logging
from typing import Any, Optional, Protocol, Tuple, runtime_checkable

import numpy as np

__all__ = ["TilePredictor", "SegmentorPredictor", "build_predictor"]

logger = logging.getLogger(__name__)


@runtime_checkable
class TilePredictor(Protocol):
    """What :func:`~farslip_ext.geo.segment_raster` needs from a model."""

    #: Side of one model view in input pixels (the sliding-window crop); must fit into a tile.
    window: int
    num_classes: int

    def predict(self, rgb: np.ndarray, valid: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``rgb``: float32 ``(3, h, w)`` in 0..255; ``valid``: bool ``(h, w)``. Returns class indices
        (``(h, w)``, any integer type, values < ``num_classes``) and the top class probability
        (float32 ``(h, w)``); invalid pixels may hold anything (they are overwritten with nodata)."""
        ...


class SegmentorPredictor:
    """:class:`TilePredictor` of a built ``FarSLIPSeg`` (see the module doc)."""

    def __init__(self, segmentor: Any) -> None:
        import torch

        self.seg = segmentor
        pp = segmentor.data_preprocessor
        self._mean = pp.mean.detach().float().reshape(3, 1, 1).cpu()
        self._std = pp.std.detach().float().reshape(3, 1, 1).cpu()
        self._torch = torch

    @property
    def window(self) -> int:
        return int(max(self.seg.slide_crop))

    @property
    def num_classes(self) -> int:
        return int(self.seg.num_classes)

    def predict(self, rgb: np.ndarray, valid: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32))
        x = (x - self._mean) / self._std
        if not valid.all():
            x[:, ~torch.from_numpy(np.ascontiguousarray(valid))] = 0.0
        with torch.inference_mode():
            logits = self.seg.slide_inference([x.to(self.seg.device)])[0]
            probs, pred = self.seg.postprocess_logits(logits)
            top = probs.amax(dim=0)
        return pred[0].to(torch.uint8).cpu().numpy(), top.float().cpu().numpy()


def build_predictor(class_names: Any, model: str = "farslip-vitb16", pretrained: Optional[str] = None, *,
                    window: Optional[int] = None, stride: Optional[int] = None, preset: str = "farslip",
                    device: str = "auto", precision: str = "auto", **segmentor_kwargs: Any) -> SegmentorPredictor:
    """A :class:`SegmentorPredictor` of ``FarSLIPSeg`` with the ``preset`` settings (default: the FarSLIP
    protocol, ovss-protocol.md §1.7) and ``window``/``stride`` as its sliding crop/stride; other
    ``FarSLIPSeg`` arguments (``prob_thd``, ``bg_idx``, ``templates``, ``window_batch_size``, ...) pass through.
    The model loads through the segmentor's loader (``farslip_ext.create_model``), so a missing released
    file is the hub's "how to get the file" error."""
    from farslip_ext.segmentation import FarSLIPSeg
    from farslip_ext.segmentation.presets import PIPELINE_KEYS, preset_settings

    settings = {k: v for k, v in preset_settings(preset).items() if k not in PIPELINE_KEYS}
    if window is not None:
        settings["slide_crop"] = int(window)
    if stride is not None:
        settings["slide_stride"] = int(stride)
    elif window is not None:
        settings["slide_stride"] = max(1, int(window) // 2)
    settings.update({k: v for k, v in segmentor_kwargs.items() if v is not None})
    seg = FarSLIPSeg(model=model, pretrained=pretrained, class_names=class_names, device=device,
                     precision=precision, **settings)
    return SegmentorPredictor(seg)
