"""Per-tile prediction: an RGB block in 0..255 → class indices and the top class probability.

:class:`SegmentorPredictor` wraps the OVSS core's :class:`~farslip_ext.ovss.OVSSPredictor` (or a
``FarSLIPSeg``, which holds one) and calls its own maths unchanged: normalise with the model's mean/std
×255, ``slide_inference`` (sliding windows → dense tokens → cosine with the cached text embeddings →
window-averaged logits) and ``postprocess_logits`` (×logit_scale, softmax, synonym max-merge, argmax,
``prob_thd``/``bg_idx``). Invalid (nodata) pixels are set to the mean, i.e. 0 after normalisation — the
value the segmentor pads windows with. No mmseg or mmcv is imported.

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
    """:class:`TilePredictor` of an :class:`~farslip_ext.ovss.OVSSPredictor` (or a ``FarSLIPSeg``)."""

    def __init__(self, segmentor: Any) -> None:
        self.ovss = getattr(segmentor, "ovss", segmentor)

    @property
    def window(self) -> int:
        return int(max(self.ovss.slide_crop))

    @property
    def num_classes(self) -> int:
        return int(self.ovss.num_classes)

    def predict(self, rgb: np.ndarray, valid: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).to(self.ovss.device)
        x = self.ovss.normalize(x)
        if not valid.all():
            x[:, ~torch.from_numpy(np.ascontiguousarray(valid)).to(x.device)] = 0.0
        with torch.inference_mode():
            logits = self.ovss.slide_inference([x])[0]
            probs, pred = self.ovss.postprocess_logits(logits)
            top = probs.amax(dim=0)
        return pred[0].to(torch.uint8).cpu().numpy(), top.float().cpu().numpy()


def build_predictor(class_names: Any, model: Any = "farslip-vitb16", pretrained: Optional[str] = None, *,
                    window: Optional[int] = None, stride: Optional[int] = None, preset: str = "farslip",
                    device: str = "auto", precision: str = "auto", **segmentor_kwargs: Any) -> SegmentorPredictor:
    """A :class:`SegmentorPredictor` with the ``preset`` settings (default: the FarSLIP protocol) and
    ``window``/``stride`` as its sliding crop/stride. ``class_names`` takes the ``--classes`` forms
    (``"water;forest,trees;road"``, a file, a list). ``model`` is anything :func:`farslip_ext.load` takes
    (or a ``LoadedModel``); other segmentor settings (``prob_thd``, ``bg_idx``, ``templates``,
    ``window_batch_size``, ...) pass through. No input resize: the windows are in input pixels."""
    from farslip_ext.geo.classes import parse_classes
    from farslip_ext.loading import LoadedModel
    from farslip_ext.ovss.predictor import build_predictor as build_core

    settings = dict(resize_long_side=None, device=device, precision=precision)
    if window is not None:
        settings["slide_crop"] = int(window)
        settings["slide_stride"] = int(stride) if stride is not None else max(1, int(window) // 2)
    elif stride is not None:
        settings["slide_stride"] = int(stride)
    settings.update({k: v for k, v in segmentor_kwargs.items() if v is not None})
    clip = model if isinstance(model, LoadedModel) else dict(model=str(model), pretrained=pretrained)
    return SegmentorPredictor(build_core(parse_classes(class_names), clip, preset=preset, **settings))
