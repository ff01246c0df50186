"""The training-free open-vocabulary segmentor, without mmseg (docs/reference/ovss-evaluation.md#11-pipeline-per-image).

:class:`OVSSPredictor` holds an OpenCLIP model and the text embeddings of the class names and does the
maths of the protocol: sliding windows (:mod:`.windows`) → dense patch tokens from a modified last
block (:func:`farslip_ext.models.dense_forward`) → cosine similarity with the text embeddings
(+ ``cls_token_lambda`` × the CLS-token similarity) → logits bilinearly upsampled to each window,
summed into a canvas and divided by the per-pixel window count → bilinear resize to the original
shape → ×``logit_scale``, softmax over all names, max over each class's synonyms → argmax, pixels
whose top probability is below ``prob_thd`` get ``bg_idx``.

``FarSLIPSeg`` (the mmseg segmentor) and ``farslip segment`` both run it; :meth:`OVSSPredictor.segment`
segments an RGB array directly::

    from farslip_ext.ovss import build_predictor
    pred = build_predictor("building,roof;road;water", clip=dict(model="farslip-vitb16", pretrained="s2"))
    result = pred.segment(rgb)          # (H, W, 3) uint8 RGB -> result.labels (H, W), result.probs (C, H, W)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from farslip_ext.devices import resolve_device
from farslip_ext.errors import ConfigError
from farslip_ext.loading import CHECKPOINT_SUFFIXES, LoadedModel, get_tokenizer, load
from farslip_ext.models import build_dense_attention, dense_forward
from farslip_ext.models.towers import tower_of
from farslip_ext.ovss.checks import check_dataset_classes, check_label_values
from farslip_ext.ovss.classnames import ClassNames, ClassNamesSpec, load_class_names
from farslip_ext.ovss.settings import SegSettings, default_clip
from farslip_ext.ovss.text import TextEmbeddingCache, resolve_templates
from farslip_ext.ovss.windows import WindowJob, chunk_windows, pair, plan_windows, rescale_long_side
from farslip_ext.precision import Precision, parse_precision

__all__ = ["OVSSPredictor", "Segmentation", "ClipSpec", "build_predictor", "load_clip", "load_clip_model",
           "clip_weights", "resolve_precision", "normalization_stats",
           "OPENAI_MEAN", "OPENAI_STD", "RANDOM_WEIGHTS"]

logger = logging.getLogger(__name__)

#: OpenAI CLIP statistics (0..1), used when a model declares none.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
#: ``pretrained`` values that ask for random weights on purpose.
RANDOM_WEIGHTS = ("random", "none")

#: What a CLIP can be given as: a source string, ``dict(model=..., pretrained=..., cache_dir=..., **create_kwargs)``,
#: a :class:`~farslip_ext.LoadedModel` (shared as is) or a built ``nn.Module``.
ClipSpec = Union[str, Path, Mapping[str, Any], LoadedModel, nn.Module]


@dataclass
class Segmentation:
    """The result of :meth:`OVSSPredictor.segment`: class indices and per-class probabilities."""

    labels: np.ndarray  # (H, W) int64
    probs: np.ndarray  # (C, H, W) float32

    @property
    def top(self) -> np.ndarray:
        """The highest class probability per pixel, ``(H, W)``."""
        return self.probs.max(axis=0)


def normalization_stats(net: nn.Module, decimals: Optional[int]) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """``(mean, std)`` ×255 of the model's preprocessing (OpenAI's if it declares none), rounded to
    ``decimals`` (3: RS-OVSS's constants ``122.771, 116.746, 104.094`` / ``68.501, 66.632, 70.323`` for
    OpenAI-normalised models, docs/reference/ovss-evaluation.md#22-data-preprocessor; None: unrounded)."""
    pcfg = getattr(getattr(net, "visual", None), "preprocess_cfg", None) or {}
    mean = [float(m) * 255 for m in pcfg.get("mean", OPENAI_MEAN)]
    std = [float(s) * 255 for s in pcfg.get("std", OPENAI_STD)]
    if decimals is not None:
        mean = [round(m, int(decimals)) for m in mean]
        std = [round(s, int(decimals)) for s in std]
    return tuple(mean), tuple(std)


def resolve_precision(settings: SegSettings) -> Tuple[torch.device, Precision]:
    """The device and precision of ``settings`` (``auto``: fp16 weights on CUDA, as the references; fp32 on a CPU)."""
    dev = resolve_device(settings.device)
    return dev, parse_precision(settings.precision, dev, auto_cuda="fp16", what="segmentor precision")


def _is_weights_source(model: str) -> bool:
    return model.startswith(("hf-hub:", "local-dir:")) or model.endswith(CHECKPOINT_SUFFIXES) or Path(model).is_file()


def clip_weights(spec: Union[str, Path, Mapping[str, Any]]) -> Tuple[str, Optional[str]]:
    """``(model, pretrained)`` of a CLIP spec string or dict, as written (for reports)."""
    if isinstance(spec, (str, Path)):
        return str(spec), None
    return str(spec.get("model")), spec.get("pretrained")


def load_clip_model(spec: Union[str, Path, Mapping[str, Any]], precision: Precision,
                    device: torch.device) -> LoadedModel:
    """Load the CLIP of a spec string or ``dict(model=..., pretrained=..., cache_dir=..., **create_kwargs)``.

    An architecture name without weights is an error (``pretrained='random'`` asks for random weights on
    purpose): the CLIP is never silently randomly initialised."""
    if isinstance(spec, (str, Path)):
        spec = dict(model=str(spec))
    if not isinstance(spec, Mapping) or not spec.get("model"):
        raise ConfigError(f"clip={spec!r}: give the CLIP as dict(model=<name or file>, pretrained=<tag or file>), a "
                          f"checkpoint path, a farslip_ext.LoadedModel or an open_clip model")
    spec = dict(spec)
    model, pretrained = str(spec.pop("model")), spec.pop("pretrained", None)
    cache_dir = spec.pop("cache_dir", None)
    random_init = isinstance(pretrained, str) and pretrained.lower() in RANDOM_WEIGHTS
    if random_init:
        pretrained = None
        logger.warning("clip %s with pretrained='random': random weights on purpose; the classes are meaningless", model)
    elif pretrained is None and not _is_weights_source(model):
        raise ConfigError(
            f"clip model {model!r} has no weights (pretrained is not set). Pass clip=dict(model={model!r}, "
            f"pretrained=<tag or checkpoint>) (e.g. 's2' for the FarSLIP models, 'openai' for OpenAI CLIP), a "
            f"checkpoint file, or pretrained='random' to evaluate random weights on purpose. (mmseg's init_model "
            f"resets the segmentor's top-level 'pretrained' key; the CLIP weights belong in clip.pretrained.)")
    lm = load(model, pretrained, precision=precision, device=device, cache_dir=cache_dir, **spec)
    lm.source = f"{model}" + (f" ({pretrained})" if pretrained else " (random weights)" if random_init else "")
    return lm


def load_clip(spec: ClipSpec, precision: Precision, device: torch.device, tokenizer: Optional[Callable] = None
              ) -> Tuple[nn.Module, Callable, str, Optional[str]]:
    """``(model, tokenizer, description, arch)`` of a :data:`ClipSpec` (a LoadedModel or module is used as is)."""
    if isinstance(spec, LoadedModel):
        return spec.model.to(device), tokenizer or spec.tokenizer, spec.source, spec.arch
    if isinstance(spec, nn.Module):
        return spec.eval().requires_grad_(False).to(device), tokenizer or get_tokenizer(spec), type(spec).__name__, None
    lm = load_clip_model(spec, precision, device)
    return lm.model, tokenizer or lm.tokenizer, lm.source, lm.arch


class OVSSPredictor(nn.Module):
    """Open-vocabulary segmentation with an OpenCLIP ViT (see the module doc).

    Args:
        clip: the CLIP (:data:`ClipSpec`); default: the base config's (``farslip-vitb16`` with ``s2``).
        class_names: a class-name file, ``classnames:<file>``, an inline ``"a,b;c"`` string or a list
            (:func:`~farslip_ext.ovss.classnames.load_class_names`).
        settings: a :class:`~farslip_ext.ovss.SegSettings`; ``overrides`` (any of its fields) are laid over
            it, or over the base config's defaults when it is None.
        tokenizer: for a bare ``nn.Module`` whose tokenizer cannot be found from its context length.
        text_progress: progress of the text encoding (None: the package policy, False: silent).
    """

    def __init__(self, clip: Optional[ClipSpec] = None, class_names: Optional[ClassNamesSpec] = None, *,
                 settings: Optional[SegSettings] = None, tokenizer: Optional[Callable] = None,
                 text_progress: Optional[bool] = None, **overrides: Any) -> None:
        super().__init__()
        if settings is None:
            settings = SegSettings.from_overrides(overrides, what="OVSSPredictor")
        elif overrides:
            settings = SegSettings.from_overrides(overrides, base=settings.as_dict(), what="OVSSPredictor")
        names = load_class_names(class_names)
        if not 0 <= int(settings.bg_idx) < names.num_classes:
            raise ConfigError(f"bg_idx={settings.bg_idx!r} is not a class index of {names.source} "
                              f"({names.num_classes} classes: 0..{names.num_classes - 1})")
        templates = resolve_templates(settings.templates)
        dev, prec = resolve_precision(settings)
        if dev.type != "cuda" and prec.weights != "fp32":
            logger.warning("precision=%r on %s: low-precision weights on a CPU are slow", settings.precision, dev)
        net, tok, desc, arch = load_clip(default_clip() if clip is None else clip, prec, dev, tokenizer)
        visual = getattr(net, "visual", None)
        if visual is None:
            raise TypeError(f"{desc} has no .visual tower; the segmentor needs an OpenCLIP CLIP model")
        tower = tower_of(visual)  # UnsupportedTowerError (a TypeError) naming the supported families

        self.clip = net
        self.tokenizer = tok
        self.model_desc = desc
        self.clip_arch = arch
        self.settings = settings
        self.class_names: ClassNames = names
        self.templates = templates
        self.attn = build_dense_attention(settings.attn, ignore_residual=settings.ignore_residual)
        self.slide_crop = pair(settings.slide_crop, "slide_crop")
        self.slide_stride = pair(settings.slide_stride, "slide_stride")
        self.window_size = pair(visual.image_size if settings.window_size is None else settings.window_size,
                                "window_size")
        self.patch_size = pair(tower.patch_size, "patch_size")
        self.precision = prec
        self.text_progress = text_progress
        mean, std = normalization_stats(net, settings.norm_decimals)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32, device=dev), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32, device=dev), persistent=False)
        self.register_buffer("query_features", torch.empty(0, device=dev), persistent=False)
        self.register_buffer("query_idx", torch.tensor(names.query_idx, dtype=torch.long, device=dev),
                             persistent=False)
        self.refresh_text()
        logger.debug("OVSS segmentor: %s, %d classes / %d names from %s, %d templates, attn=%s, λ=%g, thd=%g, bg=%d, "
                    "crop=%s stride=%s (%s), mean/std=%s/%s, %s on %s", desc, names.num_classes,
                    len(names.query_words), names.source, len(templates), self.attn, settings.cls_token_lambda,
                    settings.prob_thd, settings.bg_idx, self.slide_crop, self.slide_stride, settings.window_mode,
                    mean, std, prec.name, dev)

    # --------------------------------------------------------------------------------------- state
    def refresh_text(self) -> None:
        """(Re)compute the text embeddings from the current text weights (a cache hit when unchanged).

        Computed at the weights' own precision, outside autocast: they are computed once per class set
        and cached (about one image's FLOPs), and a bf16 text side would add its rounding to every pixel's
        class scores; an autocast ``precision`` (``amp_bf16``) therefore changes the image side only.
        (Low-precision *weights*, ``bf16`` / ``fp16``, compute the text in those weights.)"""
        dev = self.device
        cache = TextEmbeddingCache(use_disk=bool(self.settings.text_cache))
        with torch.autocast(device_type=dev.type, enabled=False):
            emb = cache.get(self.clip, self.tokenizer, self.class_names.query_words, self.templates,
                            batch_size=int(self.settings.text_batch_size), device=dev, progress=self.text_progress)
        self.query_features = emb.float().to(dev)

    @property
    def device(self) -> torch.device:
        return self.query_idx.device

    @property
    def num_classes(self) -> int:
        return self.class_names.num_classes

    @property
    def num_queries(self) -> int:
        return int(self.query_features.shape[0])

    @property
    def dataset_meta(self) -> Dict[str, Any]:
        """``classes`` (the first name of each class) and a ``palette``, as mmseg's visualiser reads them."""
        from farslip_ext.ovss.palette import class_colors

        return dict(classes=tuple(n[0] for n in self.class_names.classes),
                    palette=[list(map(int, c)) for c in class_colors(self.num_classes)])

    def autocast(self, device: Optional[torch.device] = None) -> ContextManager:
        return self.precision.autocast(device or self.device)

    # ---------------------------------------------------------------------------------------- checks
    def check_dataset(self, dataset_classes: Optional[Sequence[Any]], dataset: str) -> None:
        """:func:`~farslip_ext.ovss.checks.check_dataset_classes` for this segmentor's classes."""
        check_dataset_classes(self.class_names, dataset_classes, dataset)

    def check_ground_truth(self, gt: Tensor, label_path: str = "?", reduce_zero_label: Any = None) -> None:
        """Fail on ground-truth values that are neither a class index nor 255."""
        bad = (gt != 255) & ((gt < 0) | (gt >= self.num_classes))
        if bool(bad.any()):
            check_label_values(torch.unique(gt[bad]).tolist(), self.num_classes, self.class_names.source, label_path,
                               reduce_zero_label)

    # ---------------------------------------------------------------------------------------- maths
    def normalize(self, rgb: Tensor) -> Tensor:
        """``(3, H, W)`` RGB in 0..255 → ``(x − mean) / std``."""
        return (rgb.float() - self.mean.view(3, 1, 1)) / self.std.view(3, 1, 1)

    def window_logits(self, windows: Tensor) -> Tensor:
        """Per-name cosine logits of a batch of windows at the token grid: ``(N, Q, gh, gw)`` float32."""
        with self.autocast():
            out = dense_forward(self.clip, windows, self.attn, ignore_residual=self.settings.ignore_residual,
                                return_image_embed=False, check_tower=False)
        text = self.query_features
        patches = F.normalize(out.patch_tokens.float(), dim=-1)
        logits = patches @ text.T  # (N, L, Q)
        lam = float(self.settings.cls_token_lambda)
        if lam != 0.0:
            cls = F.normalize(out.cls_token.float(), dim=-1)
            logits = logits + lam * (cls @ text.T).unsqueeze(1)
        n, _, q = logits.shape
        gh, gw = out.grid
        return logits.transpose(1, 2).reshape(n, q, gh, gw)

    def extract_feat(self, inputs: Tensor) -> Tuple[Tensor, Tensor]:
        """Normalised dense features of whole images: ``(B, D, h, w)`` patch map and ``(B, D)`` CLS token."""
        with self.autocast():
            out = dense_forward(self.clip, inputs, self.attn, ignore_residual=self.settings.ignore_residual,
                                return_image_embed=False, check_tower=False)
        return F.normalize(out.patch_map().float(), dim=1), F.normalize(out.cls_token.float(), dim=-1)

    def plan(self, images: Sequence[Tensor], whole: bool = False) -> List[WindowJob]:
        """Every window of every image (see :func:`~farslip_ext.ovss.windows.plan_windows`)."""
        return plan_windows([tuple(img.shape[-2:]) for img in images], self.slide_crop, self.slide_stride,
                            self.patch_size, self.window_size, self.settings.window_mode == "resize", whole)

    def slide_inference(self, images: Sequence[Tensor], whole: bool = False) -> List[Tensor]:
        """Window-averaged per-name logits of each normalised image at its input size, ``[(Q, H, W), ...]``;
        ``whole=True`` (or ``slide_crop <= 0``) runs each image as one window."""
        q = self.num_queries
        canvases = [img.new_zeros((q,) + tuple(img.shape[-2:]), dtype=torch.float32) for img in images]
        counts = [img.new_zeros((1,) + tuple(img.shape[-2:]), dtype=torch.float32) for img in images]
        for chunk in chunk_windows(self.plan(images, whole), int(self.settings.window_batch_size)):
            crops = []
            for j in chunk:
                y1, y2, x1, x2 = j.box
                crop = images[j.img][:, y1:y2, x1:x2]
                if any(j.pad):
                    crop = F.pad(crop, j.pad)
                if tuple(crop.shape[-2:]) != j.run:
                    crop = F.interpolate(crop[None], size=j.run, mode="bilinear", align_corners=False)[0]
                crops.append(crop)
            logits = self.window_logits(torch.stack(crops))
            for j, lg in zip(chunk, logits):
                y1, y2, x1, x2 = j.box
                left, _, top, _ = j.pad
                up = F.interpolate(lg[None], size=j.padded, mode="bilinear", align_corners=False)[0]
                up = up[:, top:top + (y2 - y1), left:left + (x2 - x1)]
                canvases[j.img][:, y1:y2, x1:x2] += up
                counts[j.img][:, y1:y2, x1:x2] += 1
        out = []
        for c, n in zip(canvases, counts):
            if bool((n == 0).any()):  # pragma: no cover - excluded by the stride check
                raise RuntimeError("sliding windows left pixels uncovered; slide_stride must not exceed slide_crop")
            out.append(c / n)
        return out

    def inference(self, images: Sequence[Tensor], ori_shapes: Sequence[Tuple[int, int]]) -> List[Tensor]:
        """Per-name logits of each normalised image at its original shape ``[(Q, H0, W0), ...]``."""
        out = []
        for lg, ori in zip(self.slide_inference(images), ori_shapes):
            ori = tuple(int(s) for s in ori[:2])
            if tuple(lg.shape[-2:]) != ori:
                lg = F.interpolate(lg[None], size=ori, mode="bilinear", align_corners=False)[0]
            out.append(lg)
        return out

    def postprocess_logits(self, logits: Tensor) -> Tuple[Tensor, Tensor]:
        """``(Q, H, W)`` logits → per-class probabilities ``(C, H, W)`` and labels ``(1, H, W)``:
        ×logit_scale, softmax over all names, max over each class's names, argmax, threshold → bg_idx."""
        probs = torch.softmax(logits.float() * float(self.settings.logit_scale), dim=0)
        if self.num_queries != self.num_classes:
            merged = probs.new_empty((self.num_classes,) + tuple(probs.shape[1:]))
            for c in range(self.num_classes):
                merged[c] = probs[self.query_idx == c].amax(dim=0)
            probs = merged
        top, pred = probs.max(dim=0, keepdim=True)
        thd = float(self.settings.prob_thd)
        if thd > 0:
            pred = torch.where(top < thd, torch.full_like(pred, int(self.settings.bg_idx)), pred)
        return probs, pred

    # -------------------------------------------------------------------------------------- arrays
    @torch.no_grad()
    def segment(self, image: np.ndarray, valid: Optional[np.ndarray] = None) -> Segmentation:
        """Segment one ``(H, W, 3)`` RGB array (uint8, or float in 0..255). ``valid``: optional ``(H, W)``
        mask; invalid pixels are set to the mean (0 after normalisation, like the windows' padding).

        With ``resize_long_side`` the array is first resized like mmcv's ``Resize(keep_ratio=True)``
        (cv2 bilinear on the array as given, so a uint8 image stays uint8 as in the reference), and the
        result is returned at the original size."""
        arr = np.asarray(image)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"segment() takes an (H, W, 3) RGB array; got shape {arr.shape}")
        h0, w0 = arr.shape[:2]
        long_side = self.settings.resize_long_side
        mask = None if valid is None else np.asarray(valid, dtype=bool)
        if long_side:
            nh, nw = rescale_long_side(h0, w0, int(long_side))
            if (nh, nw) != (h0, w0):
                arr = _cv2_resize(arr, nh, nw, nearest=False)
                if mask is not None:
                    mask = _cv2_resize(mask.astype(np.uint8), nh, nw, nearest=True).astype(bool)
        x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(arr, -1, 0), dtype=np.float32)).to(self.device)
        x = self.normalize(x)
        if mask is not None and not mask.all():
            x[:, ~torch.from_numpy(np.ascontiguousarray(mask)).to(self.device)] = 0.0
        logits = self.inference([x], [(h0, w0)])[0]
        probs, pred = self.postprocess_logits(logits)
        return Segmentation(pred[0].cpu().numpy().astype(np.int64), probs.float().cpu().numpy())


def _cv2_resize(arr: np.ndarray, h: int, w: int, nearest: bool) -> np.ndarray:
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - opencv comes with the geo/seg extras
        raise ImportError(f"resize_long_side needs OpenCV ({e}); pip install opencv-python, or pass "
                          f"resize_long_side=None and resize the image yourself") from e
    return cv2.resize(arr, (w, h), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def build_predictor(class_names: ClassNamesSpec, clip: Optional[ClipSpec] = None, *, preset: str = "farslip",
                    **settings: Any) -> OVSSPredictor:
    """An :class:`OVSSPredictor` with the ``preset``'s settings (default ``farslip``, including its
    ``resize_long_side`` of 448) and ``settings`` on top; ``class_names`` takes the same forms as the
    ``--classes`` option (``"water;forest,trees;road"``, a file, a list)."""
    from farslip_ext.ovss.presets import preset_settings

    base = preset_settings(preset)
    base.update({k: v for k, v in settings.items() if k in SegSettings.names()})
    extra = {k: v for k, v in settings.items() if k not in SegSettings.names()}
    text_progress = extra.pop("text_progress", None)
    tokenizer = extra.pop("tokenizer", None)
    if extra:
        from farslip_ext.ovss.settings import unknown_setting

        raise unknown_setting(sorted(extra)[0], "build_predictor", extra=["preset", "text_progress", "tokenizer"])
    return OVSSPredictor(clip, class_names, settings=SegSettings.from_overrides(base, what="build_predictor"),
                         tokenizer=tokenizer, text_progress=text_progress)
