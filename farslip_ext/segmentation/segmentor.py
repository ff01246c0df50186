"""``FarSLIPSeg``: a training-free open-vocabulary segmentor for mmseg on any OpenCLIP ViT (ovss-protocol.md §1, §2).

Per image (§1.1): sliding windows over the (pipeline-resized) image (§1.6) → dense patch tokens from a
modified last block (#3, :func:`farslip_ext.models.dense_forward`) → cosine similarity with cached text
embeddings (+ ``cls_token_lambda`` × the CLS-token similarity, §1.5) → logits bilinearly upsampled to
each window, summed into a canvas and divided by the per-pixel window count → bilinear resize to the
original shape → ×``logit_scale``, softmax over all names, max over each class's synonyms →
argmax, pixels whose top probability is below ``prob_thd`` get ``bg_idx``.

Efficiency (issue #5): the text embeddings are computed once per (weights, names, templates) and cached
in memory and on disk (:mod:`.text_cache`); all windows of all images of a batch go through the vision
tower in batched forwards (windows of one image are never split unless there are more than
``window_batch_size`` of them); batches may mix image sizes (:class:`FarSLIPSegDataPreProcessor`).
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Callable, ContextManager, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.models.segmentors import BaseSegmentor
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import Tensor, nn

from farslip_ext.compat import parse_to_args
from farslip_ext.devices import resolve_device
from farslip_ext.loading import LoadedModel, get_tokenizer, load
from farslip_ext.models import build_dense_attention, dense_forward
from farslip_ext.models.dense_attn import check_supported_tower
from farslip_ext.segmentation.classnames import ClassNames, load_class_names
from farslip_ext.precision import PRECISIONS as _PRECISIONS
from farslip_ext.precision import parse_precision
from farslip_ext.segmentation.text_cache import TextEmbeddingCache

__all__ = [
    "FarSLIPSeg",
    "FarSLIPSegDataPreProcessor",
    "CLIP_MEAN_255",
    "CLIP_STD_255",
    "PRECISIONS",
    "WINDOW_MODES",
    "slide_windows",
    "resolve_templates",
]

logger = logging.getLogger(__name__)

#: ``SegDataPreProcessor`` statistics of §2.2 (OpenAI CLIP mean/std ×255, BGR→RGB).
CLIP_MEAN_255 = (122.771, 116.746, 104.094)
CLIP_STD_255 = (68.501, 66.632, 70.323)

#: The shared vocabulary (:mod:`farslip_ext.precision`); ``auto`` is fp16 weights on CUDA (the reference)
#: and fp32 on a CPU.
PRECISIONS = _PRECISIONS
#: ``resize``: every window that is not the model's input size is resized to it (RS-OVSS, FarSLIP numbers);
#: ``native``: windows run at their own (patch-padded) size with interpolated positions (SegEarth-OV).
WINDOW_MODES = ("resize", "native")


# ----------------------------------------------------------------------------------------------- helpers
def _pair(v: Union[int, Sequence[int]], what: str) -> Tuple[int, int]:
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ValueError(f"{what}={v!r}: expected an int or (height, width)")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def slide_windows(h: int, w: int, crop: Union[int, Sequence[int]], stride: Union[int, Sequence[int]]
                  ) -> List[Tuple[int, int, int, int]]:
    """Window boxes ``(y1, y2, x1, x2)`` of §1.6: ``grids = max(H - crop + stride - 1, 0) // stride + 1``,
    ``y1 = i·stride``, ``y2 = min(y1 + crop, H)``, ``y1 = max(y2 - crop, 0)`` (the last window snaps to the
    border; an image smaller than the crop gives one smaller window)."""
    ch, cw = _pair(crop, "slide_crop")
    sh, sw = _pair(stride, "slide_stride")
    hg = max(h - ch + sh - 1, 0) // sh + 1
    wg = max(w - cw + sw - 1, 0) // sw + 1
    boxes = []
    for i in range(hg):
        for j in range(wg):
            y1, x1 = i * sh, j * sw
            y2, x2 = min(y1 + ch, h), min(x1 + cw, w)
            boxes.append((max(y2 - ch, 0), y2, max(x2 - cw, 0), x2))
    return boxes


def _patch_pad(h: int, w: int, patch: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """Symmetric zero padding ``(left, right, top, bottom)`` up to a multiple of the patch size (§1.6)."""
    ph, pw = patch
    lr = (-w) % pw
    tb = (-h) % ph
    return lr // 2, lr - lr // 2, tb // 2, tb - tb // 2


def resolve_templates(templates: Any) -> List[Callable[[str], str]]:
    """Prompt templates from an alias (``openai`` = the 80 OpenAI ImageNet prompts, ``farslip``,
    ``skyscript``), a ``TEMPLATES`` registry name/config, or a list of strings with ``{c}`` (or ``{}``)."""
    from farslip_ext.evaluation.templates import build_templates

    if isinstance(templates, (list, tuple)) and templates and all(isinstance(t, str) for t in templates):
        templates = [t if "{c}" in t else t.replace("{}", "{c}") for t in templates]
    return list(build_templates(templates).for_dataset(None))


def _rescale_long_side(h: int, w: int, long_side: int) -> Tuple[int, int]:
    """mmcv ``Resize(scale=(L, L), keep_ratio=True)``: scale = min(L/long, L/short) = L/long; round half up."""
    scale = min(long_side / max(h, w), long_side / min(h, w))
    return int(h * scale + 0.5), int(w * scale + 0.5)


# --------------------------------------------------------------------------------------- preprocessor
@MODELS.register_module()
class FarSLIPSegDataPreProcessor(SegDataPreProcessor):
    """``SegDataPreProcessor`` (§2.2) that, at test time, lets a batch mix image sizes.

    Equal sizes are stacked to ``(B, 3, H, W)`` as usual; otherwise the normalised images are returned
    as a list (no padding, so no padded pixels reach the windows), which :class:`FarSLIPSeg` accepts.
    """

    def __init__(self, *args: Any, bgr_to_rgb: bool = False, rgb_to_bgr: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, bgr_to_rgb=bgr_to_rgb, rgb_to_bgr=rgb_to_bgr, **kwargs)
        self.swap_channels = bool(bgr_to_rgb or rgb_to_bgr)
        self.normalize = kwargs.get("mean") is not None

    def forward(self, data: dict, training: bool = False) -> Dict[str, Any]:
        if training or self.test_cfg:
            return super().forward(data, training)
        data = self.cast_data(data)
        inputs = data["inputs"]
        if self.swap_channels and inputs[0].size(0) == 3:
            inputs = [x[[2, 1, 0], ...] for x in inputs]
        inputs = [x.float() for x in inputs]
        if self.normalize:
            inputs = [(x - self.mean) / self.std for x in inputs]
        if all(x.shape == inputs[0].shape for x in inputs):
            inputs = torch.stack(inputs, dim=0)
        return dict(inputs=inputs, data_samples=data.get("data_samples", None))


# ------------------------------------------------------------------------------------------ segmentor
@MODELS.register_module()
class FarSLIPSeg(BaseSegmentor):
    """Training-free OVSS with an OpenCLIP model (ovss-protocol.md §1; defaults = the FarSLIP protocol, §1.7).

    Args:
        model: OpenCLIP model: anything :func:`farslip_ext.load` accepts (farslip name, ``hf-hub:``/``local-dir:``,
            stock open_clip name, checkpoint file), a :class:`~farslip_ext.LoadedModel` (shared as is: load once,
            pass it to several segmentors), or a built ``nn.Module`` (then pass ``tokenizer`` or let
            ``get_tokenizer`` find one).
        pretrained: tag (``s1``, ``s2``, ``openai``, ...) or checkpoint path.
        class_names: class-name file, ``"catalogue:cls_<dataset>.txt"``, or a list (``["a,b", "c"]`` or
            ``[["a", "b"], ["c"]]``); ``name_path`` is accepted as an alias (SegEarth-OV configs).
        templates: prompt templates (default ``openai``: the 80 OpenAI ImageNet prompts, §1.2).
        attn, ignore_residual: dense last-block variant (#3; §1.3).
        cls_token_lambda: λ of the CLS-token bias term ``logits += λ·(ĉ·t̂ᵀ)`` (§1.5; SegEarth-OV −0.3).
        prob_thd, bg_idx: pixels whose top class probability is below ``prob_thd`` get ``bg_idx`` (§1.5).
        logit_scale: multiplier before the softmax (50, not the model's learned scale).
        slide_crop, slide_stride: sliding windows (§1.6); ``slide_crop <= 0``: one window per image.
        window_mode: ``resize`` (RS-OVSS) or ``native`` (SegEarth-OV), see :data:`WINDOW_MODES`.
        window_size: input size for ``resize`` mode (default: the model's ``visual.image_size``).
        resize_long_side: resize inside the model (keep ratio) — only for use without an mmseg pipeline;
            the configs resize in the pipeline (§2.3) and leave this None.
        window_batch_size: most windows per vision forward.
        precision: one of :data:`PRECISIONS`. device: ``auto`` (CUDA if available), ``cpu``, ``cuda[:i]``;
            an explicit device is kept even when mmengine's Runner moves the model elsewhere.
        model_kwargs: extra ``create_model`` arguments (``force_quick_gelu``, ...); cache_dir: weights cache.
        text_cache: keep text embeddings on disk too (``$FARSLIP_CACHE/text_embeddings``).
        check_labels: fail on ground-truth values that are neither a class index nor 255.
    """

    def __init__(
        self,
        model: Union[str, nn.Module] = "farslip-vitb16",
        pretrained: Optional[str] = None,
        class_names: Any = None,
        *,
        name_path: Any = None,
        templates: Any = "openai",
        attn: Union[str, dict] = "SegEarth",
        ignore_residual: bool = True,
        cls_token_lambda: float = 0.0,
        prob_thd: float = 0.0,
        bg_idx: int = 0,
        logit_scale: float = 50.0,
        slide_crop: Union[int, Sequence[int]] = 224,
        slide_stride: Union[int, Sequence[int]] = 112,
        window_mode: str = "resize",
        window_size: Optional[Union[int, Sequence[int]]] = None,
        resize_long_side: Optional[int] = None,
        window_batch_size: int = 128,
        precision: str = "auto",
        device: Union[str, torch.device] = "auto",
        model_kwargs: Optional[Dict[str, Any]] = None,
        cache_dir: Optional[str] = None,
        tokenizer: Optional[Callable] = None,
        text_cache: bool = True,
        text_batch_size: int = 256,
        check_labels: bool = True,
        data_preprocessor: Optional[Union[dict, nn.Module]] = None,
        init_cfg: Optional[dict] = None,
    ) -> None:
        # ---- validate the cheap settings first (clear errors before any weights load)
        if class_names is not None and name_path is not None:
            raise ValueError("pass class_names or name_path (its alias), not both")
        names = load_class_names(class_names if class_names is not None else name_path)
        if window_mode not in WINDOW_MODES:
            raise ValueError(f"window_mode={window_mode!r}; choose one of {WINDOW_MODES} "
                             f"('resize': FarSLIP/RS-OVSS, 'native': SegEarth-OV)")
        crop, stride = _pair(slide_crop, "slide_crop"), _pair(slide_stride, "slide_stride")
        if min(crop) > 0 and (min(stride) <= 0 or stride[0] > crop[0] or stride[1] > crop[1]):
            raise ValueError(f"slide_stride={slide_stride!r} must be positive and at most slide_crop={slide_crop!r} "
                             f"(a larger stride leaves pixels that no window covers)")
        if not 0.0 <= float(prob_thd) <= 1.0:
            raise ValueError(f"prob_thd={prob_thd!r} is a probability threshold in [0, 1] (0 disables it)")
        if not 0 <= int(bg_idx) < names.num_classes:
            raise ValueError(f"bg_idx={bg_idx!r} is not a class index of {names.source} "
                             f"({names.num_classes} classes: 0..{names.num_classes - 1})")
        if float(logit_scale) <= 0:
            raise ValueError(f"logit_scale={logit_scale!r} must be positive (the reference uses 50)")
        if int(window_batch_size) < 1:
            raise ValueError(f"window_batch_size={window_batch_size!r} must be >= 1")
        template_fns = resolve_templates(templates)
        dev = resolve_device(device)
        prec = parse_precision(precision, dev, auto_cuda="fp16", what="FarSLIPSeg precision")
        if dev.type != "cuda" and prec.weights != "fp32":
            logger.warning("precision=%r on %s: low-precision weights on a CPU are slow", precision, dev)

        # ---- the OpenCLIP model (a LoadedModel or module is shared as is: that is how callers reuse one)
        if isinstance(model, LoadedModel):
            net, tokenizer = model.model.to(dev), tokenizer or model.tokenizer
            model_desc = model.source
        elif isinstance(model, nn.Module):
            net = model.eval().requires_grad_(False).to(dev)
            tokenizer = tokenizer or get_tokenizer(net)
            model_desc = type(model).__name__
        else:
            lm = load(model, pretrained, precision=prec, device=dev, cache_dir=cache_dir, **dict(model_kwargs or {}))
            net, tokenizer = lm.model, tokenizer or lm.tokenizer
            model_desc = f"{model}" + (f" ({pretrained})" if pretrained else "")
        visual = getattr(net, "visual", None)
        if visual is None:
            raise TypeError(f"{model_desc} has no .visual tower; FarSLIPSeg needs an OpenCLIP CLIP model")
        check_supported_tower(visual)

        # ---- data preprocessor: CLIP statistics of the model (×255), BGR→RGB (§2.2)
        pp = self._build_preprocessor(data_preprocessor, visual)
        super().__init__(data_preprocessor=pp, init_cfg=init_cfg)

        self.clip = net
        self.tokenizer = tokenizer
        self.model_desc = model_desc
        self.class_names: ClassNames = names
        self.templates = template_fns
        self.attn = build_dense_attention(attn, ignore_residual=ignore_residual)
        self.ignore_residual = ignore_residual
        self.cls_token_lambda = float(cls_token_lambda)
        self.prob_thd = float(prob_thd)
        self.bg_idx = int(bg_idx)
        self.logit_scale = float(logit_scale)
        self.slide_crop, self.slide_stride = crop, stride
        self.window_mode = window_mode
        isz = visual.image_size if window_size is None else window_size
        self.window_size = _pair(isz, "window_size")
        ps = visual.patch_size
        self.patch_size = _pair(ps, "patch_size")
        self.resize_long_side = resize_long_side
        self.window_batch_size = int(window_batch_size)
        self.precision = prec
        self.check_labels = check_labels
        self.align_corners = False
        self._pinned_device = None if device in (None, "auto") else dev

        # ---- text side, once (cached across instances and runs)
        cache = TextEmbeddingCache(use_disk=text_cache)
        with self._autocast(dev):
            emb = cache.get(net, tokenizer, names.query_words, template_fns, batch_size=text_batch_size, device=dev)
        self.register_buffer("query_features", emb.float().to(dev), persistent=False)
        self.register_buffer("query_idx", torch.tensor(names.query_idx, dtype=torch.long, device=dev),
                             persistent=False)
        self.to(dev)
        logger.info("FarSLIPSeg: %s, %d classes / %d names from %s, %d templates, attn=%s, λ=%g, thd=%g, "
                    "bg=%d, crop=%s stride=%s (%s), %s on %s", model_desc, names.num_classes, len(names.query_words),
                    names.source, len(template_fns), self.attn, self.cls_token_lambda, self.prob_thd, self.bg_idx,
                    crop, stride, window_mode, precision, dev)

    # ------------------------------------------------------------------------------- construction
    @staticmethod
    def _build_preprocessor(cfg: Optional[Union[dict, nn.Module]], visual: nn.Module) -> nn.Module:
        if isinstance(cfg, nn.Module):
            return cfg
        pcfg = getattr(visual, "preprocess_cfg", None) or {}
        mean = tuple(float(m) * 255 for m in pcfg["mean"]) if "mean" in pcfg else CLIP_MEAN_255
        std = tuple(float(s) * 255 for s in pcfg["std"]) if "std" in pcfg else CLIP_STD_255
        args: Dict[str, Any] = dict(mean=list(mean), std=list(std), bgr_to_rgb=True)
        cfg = dict(cfg or {})
        typ = cfg.pop("type", "FarSLIPSegDataPreProcessor")
        args.update(cfg)
        cls = {"FarSLIPSegDataPreProcessor": FarSLIPSegDataPreProcessor, "SegDataPreProcessor": SegDataPreProcessor}
        if typ not in cls:
            raise ValueError(f"data_preprocessor type {typ!r}; FarSLIPSeg accepts {sorted(cls)}")
        return cls[typ](**args)

    def init_weights(self) -> None:
        """Nothing to initialise: the weights are the OpenCLIP model's (training-free; mmengine's default
        ``init_weights`` must not re-initialise them)."""

    def to(self, *args: Any, **kwargs: Any) -> "FarSLIPSeg":
        """``nn.Module.to`` that keeps an explicitly requested device (mmengine's Runner moves every model
        to its default device)."""
        pinned = getattr(self, "_pinned_device", None)
        if pinned is not None:
            device, dtype, non_blocking = parse_to_args(*args, **kwargs)
            if device is not None and (device.type != pinned.type or
                                       (pinned.index is not None and device.index not in (None, pinned.index))):
                logger.info("FarSLIPSeg stays on %s (device=%s was requested) instead of moving to %s",
                            pinned, pinned, device)
            args, kwargs = (pinned,) if dtype is None else (pinned, dtype), {"non_blocking": non_blocking}
        return super().to(*args, **kwargs)

    # ------------------------------------------------------------------------------ properties
    @property
    def num_classes(self) -> int:
        return self.class_names.num_classes

    @property
    def num_queries(self) -> int:
        return int(self.query_features.shape[0])

    @property
    def device(self) -> torch.device:
        return self.query_features.device

    def _autocast(self, device: Optional[torch.device] = None) -> ContextManager:
        return self.precision.autocast(device or self.device)

    # --------------------------------------------------------------------------- the maths
    def _window_logits(self, windows: Tensor) -> Tensor:
        """Per-name cosine logits of a batch of windows at the token grid: ``(N, Q, gh, gw)`` float32 (§1.5)."""
        with self._autocast():
            out = dense_forward(self.clip, windows, self.attn, ignore_residual=self.ignore_residual,
                                return_image_embed=False, check_tower=False)
        text = self.query_features
        patches = F.normalize(out.patch_tokens.float(), dim=-1)
        logits = patches @ text.T  # (N, L, Q)
        if self.cls_token_lambda != 0.0:
            cls = F.normalize(out.cls_token.float(), dim=-1)
            logits = logits + self.cls_token_lambda * (cls @ text.T).unsqueeze(1)
        n, _, q = logits.shape
        gh, gw = out.grid
        return logits.transpose(1, 2).reshape(n, q, gh, gw)

    def extract_feat(self, inputs: Tensor) -> Tuple[Tensor, Tensor]:
        """Normalised dense features of whole images: ``(B, D, h, w)`` patch map and ``(B, D)`` CLS token."""
        with self._autocast():
            out = dense_forward(self.clip, inputs, self.attn, ignore_residual=self.ignore_residual,
                                return_image_embed=False, check_tower=False)
        return F.normalize(out.patch_map().float(), dim=1), F.normalize(out.cls_token.float(), dim=-1)

    def encode_decode(self, inputs: Tensor, batch_img_metas: Optional[List[dict]] = None) -> Tensor:
        """Per-name logits of a batch of images, each run as one window (patch padding and
        ``window_mode`` as for any window, §1.6), at the input size ``(B, Q, H, W)``; no sliding and no
        resize to the original shape."""
        return torch.stack(self.slide_inference(list(inputs.unbind(0)), whole=True))

    def _plan(self, images: List[Tensor], whole: bool = False) -> List[dict]:
        jobs = []
        for i, img in enumerate(images):
            h, w = img.shape[-2:]
            boxes = [(0, h, 0, w)] if whole or min(self.slide_crop) <= 0 \
                else slide_windows(h, w, self.slide_crop, self.slide_stride)
            for (y1, y2, x1, x2) in boxes:
                pad = _patch_pad(y2 - y1, x2 - x1, self.patch_size)
                padded = (y2 - y1 + pad[2] + pad[3], x2 - x1 + pad[0] + pad[1])
                run = self.window_size if self.window_mode == "resize" else padded
                jobs.append(dict(img=i, box=(y1, y2, x1, x2), pad=pad, padded=padded, run=tuple(run)))
        return jobs

    def _chunks(self, jobs: List[dict]) -> List[List[dict]]:
        """Windows grouped by run size and packed into forwards, keeping each image's windows together."""
        by_run: "OrderedDict[tuple, List[dict]]" = OrderedDict()
        for j in jobs:
            by_run.setdefault(j["run"], []).append(j)
        chunks: List[List[dict]] = []
        cap = self.window_batch_size
        for group in by_run.values():
            per_img: "OrderedDict[int, List[dict]]" = OrderedDict()
            for j in group:
                per_img.setdefault(j["img"], []).append(j)
            cur: List[dict] = []
            for img_jobs in per_img.values():
                if cur and len(cur) + len(img_jobs) > cap:
                    chunks.append(cur)
                    cur = []
                while len(img_jobs) > cap:
                    chunks.append(img_jobs[:cap])
                    img_jobs = img_jobs[cap:]
                cur.extend(img_jobs)
            if cur:
                chunks.append(cur)
        return chunks

    def slide_inference(self, images: List[Tensor], whole: bool = False) -> List[Tensor]:
        """Window-averaged per-name logits of each image at its input size, ``[(Q, H, W), ...]`` (§1.6);
        ``whole=True`` (or ``slide_crop <= 0``) runs each image as one window."""
        q = self.num_queries
        canvases = [img.new_zeros((q,) + tuple(img.shape[-2:]), dtype=torch.float32) for img in images]
        counts = [img.new_zeros((1,) + tuple(img.shape[-2:]), dtype=torch.float32) for img in images]
        for chunk in self._chunks(self._plan(images, whole)):
            crops = []
            for j in chunk:
                y1, y2, x1, x2 = j["box"]
                crop = images[j["img"]][:, y1:y2, x1:x2]
                if any(j["pad"]):
                    crop = F.pad(crop, j["pad"])
                if tuple(crop.shape[-2:]) != j["run"]:
                    crop = F.interpolate(crop[None], size=j["run"], mode="bilinear", align_corners=False)[0]
                crops.append(crop)
            logits = self._window_logits(torch.stack(crops))
            for j, lg in zip(chunk, logits):
                y1, y2, x1, x2 = j["box"]
                l, _, t, _ = j["pad"]
                up = F.interpolate(lg[None], size=j["padded"], mode="bilinear", align_corners=False)[0]
                up = up[:, t:t + (y2 - y1), l:l + (x2 - x1)]
                canvases[j["img"]][:, y1:y2, x1:x2] += up
                counts[j["img"]][:, y1:y2, x1:x2] += 1
        out = []
        for c, n in zip(canvases, counts):
            if bool((n == 0).any()):  # pragma: no cover - excluded by the stride check
                raise RuntimeError("sliding windows left pixels uncovered; slide_stride must not exceed slide_crop")
            out.append(c / n)
        return out

    def inference(self, images: List[Tensor], batch_img_metas: List[dict]) -> List[Tensor]:
        """Per-name logits of each image at its original shape ``[(Q, H0, W0), ...]`` (§1.1 steps 3-6)."""
        logits = self.slide_inference(images)
        out = []
        for lg, meta in zip(logits, batch_img_metas):
            ori = tuple(int(s) for s in meta.get("ori_shape", lg.shape[-2:])[:2])
            if tuple(lg.shape[-2:]) != ori:
                lg = F.interpolate(lg[None], size=ori, mode="bilinear", align_corners=False)[0]
            out.append(lg)
        return out

    def postprocess_logits(self, logits: Tensor) -> Tuple[Tensor, Tensor]:
        """``(Q, H, W)`` logits → per-class probabilities ``(C, H, W)`` and labels ``(1, H, W)`` (§1.5):
        ×logit_scale, softmax over all names, max over each class's names, argmax, threshold → bg_idx."""
        probs = torch.softmax(logits.float() * self.logit_scale, dim=0)
        if self.num_queries != self.num_classes:
            merged = probs.new_empty((self.num_classes,) + tuple(probs.shape[1:]))
            for c in range(self.num_classes):
                merged[c] = probs[self.query_idx == c].amax(dim=0)
            probs = merged
        top, pred = probs.max(dim=0, keepdim=True)
        if self.prob_thd > 0:
            pred = torch.where(top < self.prob_thd, torch.full_like(pred, self.bg_idx), pred)
        return probs, pred

    # ------------------------------------------------------------------------------- mmseg API
    def _split_inputs(self, inputs: Union[Tensor, Sequence[Tensor]], metas: List[dict]) -> List[Tensor]:
        images = list(inputs) if isinstance(inputs, (list, tuple)) else list(inputs.unbind(0))
        out = []
        for img, meta in zip(images, metas):
            if img.ndim != 3 or img.shape[0] != 3:
                raise ValueError(f"FarSLIPSeg expects 3-channel images (3, H, W); got {tuple(img.shape)} "
                                 f"for {meta.get('img_path', 'an input')}")
            img = img.to(self.device, dtype=torch.float32)
            pad = meta.get("padding_size")
            if pad is not None and any(pad):  # mmseg test_cfg padding: remove it (left, right, top, bottom)
                l, r, t, b = (int(p) for p in pad)
                img = img[:, t:img.shape[1] - b, l:img.shape[2] - r]
            if self.resize_long_side:
                size = _rescale_long_side(img.shape[1], img.shape[2], int(self.resize_long_side))
                if size != tuple(img.shape[1:]):
                    img = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0]
            out.append(img)
        return out

    def _check_gt(self, data_samples: Sequence[SegDataSample]) -> None:
        for ds in data_samples:
            if "gt_sem_seg" not in ds:
                continue
            gt = ds.gt_sem_seg.data
            bad = (gt != 255) & ((gt < 0) | (gt >= self.num_classes))
            if bool(bad.any()):
                vals = sorted(int(v) for v in torch.unique(gt[bad]).tolist())
                raise ValueError(
                    f"ground truth {ds.metainfo.get('seg_map_path', '?')} holds label values {vals[:10]} that are neither "
                    f"a class index 0..{self.num_classes - 1} (from {self.class_names.source}) nor the ignore value 255 "
                    f"(reduce_zero_label={ds.metainfo.get('reduce_zero_label')}). The label file was written with the "
                    f"wrong encoding or the class file does not match the dataset; re-create the labels with "
                    f"`farslip ovss-convert` (single-channel 'L' index images) or fix the class file.")

    @torch.no_grad()
    def predict(self, inputs: Union[Tensor, Sequence[Tensor]],
                data_samples: Optional[List[SegDataSample]] = None) -> List[SegDataSample]:
        """Labels (``pred_sem_seg``, (1, H0, W0)) and class probabilities (``seg_logits``, (C, H0, W0)) at
        each image's ``ori_shape``. Without ``data_samples`` the outputs stay at the input size."""
        n = len(inputs) if isinstance(inputs, (list, tuple)) else inputs.shape[0]
        if data_samples is None:
            shapes = [tuple(x.shape[-2:]) for x in (inputs if isinstance(inputs, (list, tuple)) else inputs.unbind(0))]
            metas = [dict(ori_shape=s, img_shape=s) for s in shapes]
            data_samples = [SegDataSample(metainfo=m) for m in metas]
        else:
            metas = [ds.metainfo for ds in data_samples]
            if self.check_labels:
                self._check_gt(data_samples)
        if len(metas) != n:
            raise ValueError(f"{n} images but {len(metas)} data samples")
        images = self._split_inputs(inputs, metas)
        for ds, lg in zip(data_samples, self.inference(images, metas)):
            probs, pred = self.postprocess_logits(lg)
            ds.set_data({"seg_logits": PixelData(data=probs), "pred_sem_seg": PixelData(data=pred)})
        return data_samples

    @torch.no_grad()
    def _forward(self, inputs: Union[Tensor, Sequence[Tensor]], data_samples: Optional[List[SegDataSample]] = None
                 ) -> Union[Tensor, Tuple[Tensor, ...]]:
        """Tensor mode: window-averaged per-name logits at the input size, ``(B, Q, H, W)`` (a tuple when
        the images differ in size)."""
        n = len(inputs) if isinstance(inputs, (list, tuple)) else inputs.shape[0]
        metas = [ds.metainfo for ds in data_samples] if data_samples is not None else [{}] * n
        logits = self.slide_inference(self._split_inputs(inputs, metas))
        if all(lg.shape == logits[0].shape for lg in logits):
            return torch.stack(logits)
        return tuple(logits)

    def loss(self, inputs: Tensor, data_samples: List[SegDataSample]) -> dict:
        raise NotImplementedError(
            "FarSLIPSeg is a training-free evaluator (ovss-protocol.md §1): it has no loss. Run it with "
            "Runner.test() / `farslip ovss`; to train FarSLIP itself use farslip_ext's training recipes.")
