"""``FarSLIPSeg``: the mmseg segmentor around :class:`farslip_ext.ovss.OVSSPredictor`
(docs/reference/ovss-evaluation.md#21-registration-and-base-class).

It takes its arguments the way mmseg segmentors do — ``train_cfg``, ``test_cfg``, ``init_cfg``,
``data_preprocessor`` and the reserved ``pretrained`` key — and names the CLIP ``clip``, so that mmseg's
``init_model`` (which sets ``cfg.model.pretrained = None``) cannot replace the CLIP weights. Every other
argument is a :class:`~farslip_ext.ovss.SegSettings` field; what is not given comes from the base config.

Checks before the first image is segmented: the class-name file against the dataset (class count, a
class listed twice; from :class:`~farslip_ext.segmentation.hooks.OVSSCheckHook` or, in a config without
it, from the dataset metadata mmengine's test loop publishes) and every ground-truth map against the
class range.

Loading a checkpoint (mmseg's test tool, ``init_model(cfg, checkpoint)``, ``load_from``) accepts this
segmentor's own state dict and a bare OpenCLIP/FarSLIP checkpoint of the same architecture (converted
like :func:`farslip_ext.load` does); the text embeddings follow the loaded weights.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from farslip_ext.compat import parse_to_args
from farslip_ext.errors import CheckpointFormatError, ConfigError
from farslip_ext.loading import LoadedModel
from farslip_ext.ovss.classnames import ClassNames, load_class_names
from farslip_ext.ovss.predictor import OPENAI_MEAN, OPENAI_STD, ClipSpec, OVSSPredictor
from farslip_ext.ovss.settings import WINDOW_MODES, SegSettings
from farslip_ext.ovss.windows import slide_windows
from farslip_ext.precision import PRECISIONS as _PRECISIONS
from farslip_ext.segmentation.openmmlab import (MODELS, BaseSegmentor, PixelData, SegDataPreProcessor, SegDataSample,
                                               loop_dataset_meta)

__all__ = ["FarSLIPSeg", "FarSLIPSegDataPreProcessor", "CLIP_MEAN_255", "CLIP_STD_255", "PRECISIONS", "WINDOW_MODES",
           "slide_windows", "resolve_templates"]

logger = logging.getLogger(__name__)

#: RS-OVSS's ``SegDataPreProcessor`` constants (OpenAI CLIP mean/std ×255 rounded to three decimals).
CLIP_MEAN_255 = tuple(round(m * 255, 3) for m in OPENAI_MEAN)
CLIP_STD_255 = tuple(round(s * 255, 3) for s in OPENAI_STD)
PRECISIONS = _PRECISIONS
_TEST_CFG_KEYS = ("mode", "crop_size", "stride")


def resolve_templates(templates: Any):
    """See :func:`farslip_ext.ovss.text.resolve_templates`."""
    from farslip_ext.ovss.text import resolve_templates as _resolve

    return _resolve(templates)


# --------------------------------------------------------------------------------------- preprocessor
@MODELS.register_module()
class FarSLIPSegDataPreProcessor(SegDataPreProcessor):
    """``SegDataPreProcessor`` that, at test time, lets a batch mix image sizes.

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


def _clip_spec(clip: Optional[ClipSpec], model: Any, pretrained: Optional[str], model_kwargs: Optional[dict],
               cache_dir: Optional[str]) -> Optional[ClipSpec]:
    """The CLIP spec from ``clip`` plus the legacy/mmseg keys ``model``, ``pretrained``, ``model_kwargs``, ``cache_dir``."""
    if model is not None:
        if clip is not None:
            raise ConfigError("FarSLIPSeg got clip= and model=; model= is the old name of the CLIP, pass clip= only")
        clip = model
    legacy = dict(model_kwargs or {})
    if cache_dir is not None:
        legacy["cache_dir"] = cache_dir
    if pretrained is None and not legacy:
        return clip
    if isinstance(clip, (LoadedModel, nn.Module)):
        raise ConfigError(f"FarSLIPSeg got a built model as clip= and pretrained={pretrained!r}/model_kwargs; the "
                          f"weights of a built model are already set")
    from farslip_ext.ovss.settings import default_clip

    spec = dict(default_clip() if clip is None else clip if isinstance(clip, Mapping) else dict(model=str(clip)))
    if pretrained is not None:
        if spec.get("pretrained") not in (None, pretrained):
            raise ConfigError(f"FarSLIPSeg got pretrained={pretrained!r} and clip.pretrained={spec['pretrained']!r}; "
                              f"the CLIP weights are clip=dict(model=..., pretrained=...): drop the top-level "
                              f"'pretrained' (mmseg's init_model resets it to None)")
        spec["pretrained"] = pretrained
    spec.update(legacy)
    return spec


def _test_cfg_settings(test_cfg: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """mmseg's ``test_cfg=dict(mode='slide', crop_size=..., stride=...)`` / ``dict(mode='whole')`` as settings."""
    if not test_cfg:
        return {}
    bad = sorted(set(test_cfg) - set(_TEST_CFG_KEYS))
    if bad:
        raise ConfigError(f"FarSLIPSeg test_cfg keys {bad} are not supported; it reads mode ('slide' or 'whole'), "
                          f"crop_size and stride (the slide_crop / slide_stride settings)")
    mode = test_cfg.get("mode", "slide")
    if mode == "whole":
        return dict(slide_crop=0)
    if mode != "slide":
        raise ConfigError(f"FarSLIPSeg test_cfg.mode={mode!r}; use 'slide' or 'whole'")
    out = {}
    if test_cfg.get("crop_size") is not None:
        out["slide_crop"] = test_cfg["crop_size"]
    if test_cfg.get("stride") is not None:
        out["slide_stride"] = test_cfg["stride"]
    return out


# ------------------------------------------------------------------------------------------ segmentor
@MODELS.register_module()
class FarSLIPSeg(BaseSegmentor):
    """Training-free OVSS with an OpenCLIP model under mmseg (defaults: the base config = the FarSLIP protocol).

    Args:
        clip: the CLIP: ``dict(model=..., pretrained=..., cache_dir=..., **create_kwargs)`` (any
            :func:`farslip_ext.load` source: farslip name + tag, stock open_clip name + tag, checkpoint file,
            ``hf-hub:``/``local-dir:``), a source string, a :class:`~farslip_ext.LoadedModel` (shared as is) or
            a built ``nn.Module``. Default: the base config's (``farslip-vitb16`` with ``s2``).
        class_names: class-name file, ``"classnames:cls_<dataset>.txt"``, inline ``"a,b;c"`` or a list;
            ``name_path`` is accepted as an alias (SegEarth-OV configs).
        pretrained: mmseg's reserved key (a segmentor's backbone weights): taken as ``clip.pretrained``
            when given; mmseg's ``init_model`` sets it to None, which changes nothing.
        model, model_kwargs, cache_dir: older spellings of ``clip.model`` / ``clip``'s extra arguments.
        train_cfg: accepted and unused (training-free). test_cfg: mmseg's ``mode='slide'`` with ``crop_size``
            / ``stride`` (they set ``slide_crop`` / ``slide_stride``) or ``mode='whole'``.
        data_preprocessor: a config or module; default ``FarSLIPSegDataPreProcessor`` with the model's
            mean/std ×255 (rounded to ``norm_decimals``), BGR→RGB.
        init_cfg: mmengine's; applied only by an explicit ``init_weights()`` call.
        **settings: any :class:`~farslip_ext.ovss.SegSettings` field (``slide_crop``, ``prob_thd``, ...).
    """

    def __init__(
        self,
        clip: Optional[ClipSpec] = None,
        class_names: Any = None,
        *,
        name_path: Any = None,
        pretrained: Optional[str] = None,
        model: Any = None,
        model_kwargs: Optional[Dict[str, Any]] = None,
        cache_dir: Optional[str] = None,
        tokenizer: Optional[Callable] = None,
        train_cfg: Optional[dict] = None,
        test_cfg: Optional[dict] = None,
        data_preprocessor: Optional[Union[dict, nn.Module]] = None,
        init_cfg: Optional[dict] = None,
        **settings: Any,
    ) -> None:
        if class_names is not None and name_path is not None:
            raise ConfigError("pass class_names or name_path (its alias), not both")
        names: ClassNames = load_class_names(class_names if class_names is not None else name_path)
        overrides = dict(settings)
        overrides.update(_test_cfg_settings(test_cfg))
        seg_settings = SegSettings.from_overrides(overrides, what="FarSLIPSeg")
        spec = _clip_spec(clip, model, pretrained, model_kwargs, cache_dir)
        ovss = OVSSPredictor(spec, names, settings=seg_settings, tokenizer=tokenizer)
        pp = self._build_preprocessor(data_preprocessor, ovss)
        super().__init__(data_preprocessor=pp, init_cfg=init_cfg)
        self.ovss = ovss
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self.align_corners = False
        self._dataset_meta: Optional[Dict[str, Any]] = None
        self._expected_dataset: Optional[Tuple[Sequence[Any], str]] = None
        dev = seg_settings.device
        self._pinned_device = None if dev in (None, "auto") else ovss.device
        self.register_load_state_dict_pre_hook(_adopt_checkpoint)
        self.register_load_state_dict_post_hook(_after_load)

    # ------------------------------------------------------------------------------- construction
    @staticmethod
    def _build_preprocessor(cfg: Optional[Union[dict, nn.Module]], ovss: OVSSPredictor) -> nn.Module:
        if isinstance(cfg, nn.Module):
            return cfg
        args: Dict[str, Any] = dict(mean=ovss.mean.tolist(), std=ovss.std.tolist(), bgr_to_rgb=True)
        cfg = dict(cfg or {})
        typ = cfg.pop("type", "FarSLIPSegDataPreProcessor")
        args.update(cfg)
        cls = {"FarSLIPSegDataPreProcessor": FarSLIPSegDataPreProcessor, "SegDataPreProcessor": SegDataPreProcessor}
        if typ not in cls:
            raise ConfigError(f"data_preprocessor type {typ!r}; FarSLIPSeg accepts {sorted(cls)}")
        return cls[typ](**args)

    def init_weights(self) -> None:
        """The weights are the CLIP's (training-free): nothing is initialised unless an ``init_cfg`` asks."""
        if self.init_cfg:
            super().init_weights()

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

    # ------------------------------------------------------------------------------ the core's state
    @property
    def clip(self) -> nn.Module:
        return self.ovss.clip

    @property
    def tokenizer(self) -> Callable:
        return self.ovss.tokenizer

    @property
    def class_names(self) -> ClassNames:
        return self.ovss.class_names

    @property
    def settings(self) -> SegSettings:
        return self.ovss.settings

    @property
    def templates(self) -> list:
        return self.ovss.templates

    @property
    def num_classes(self) -> int:
        return self.ovss.num_classes

    @property
    def num_queries(self) -> int:
        return self.ovss.num_queries

    @property
    def query_features(self) -> Tensor:
        return self.ovss.query_features

    @property
    def query_idx(self) -> Tensor:
        return self.ovss.query_idx

    @property
    def slide_crop(self) -> Tuple[int, int]:
        return self.ovss.slide_crop

    @property
    def slide_stride(self) -> Tuple[int, int]:
        return self.ovss.slide_stride

    @property
    def device(self) -> torch.device:
        return self.ovss.device

    @property
    def dataset_meta(self) -> Dict[str, Any]:
        """``classes`` and ``palette`` for mmseg's visualiser (``show_result_pyplot``): the class file's first
        names unless a checkpoint's meta set them (``init_model``)."""
        return self._dataset_meta if self._dataset_meta is not None else self.ovss.dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, meta: Optional[Dict[str, Any]]) -> None:
        self._dataset_meta = meta

    def slide_inference(self, images: Sequence[Tensor], whole: bool = False) -> List[Tensor]:
        return self.ovss.slide_inference(images, whole)

    def postprocess_logits(self, logits: Tensor) -> Tuple[Tensor, Tensor]:
        return self.ovss.postprocess_logits(logits)

    def _plan(self, images: Sequence[Tensor], whole: bool = False) -> list:
        return self.ovss.plan(images, whole)

    # ------------------------------------------------------------------------------------ checks
    def expect_dataset(self, classes: Optional[Sequence[Any]], name: str) -> None:
        """Check the class names against a dataset now (:class:`OVSSCheckHook` calls this before the test)."""
        self.ovss.check_dataset(classes, name)
        self._expected_dataset = (tuple(classes or ()), name)

    def _check_samples(self, data_samples: Sequence[SegDataSample]) -> None:
        with_gt = [ds for ds in data_samples if "gt_sem_seg" in ds]
        if not with_gt:
            return
        if self._expected_dataset is None:  # no OVSSCheckHook in this config: the loop's dataset metadata
            meta = loop_dataset_meta()
            if meta is not None:
                self.ovss.check_dataset(meta.get("classes"), "the dataset of this test run")
        if self.settings.check_labels:
            for ds in with_gt:
                self.ovss.check_ground_truth(ds.gt_sem_seg.data, ds.metainfo.get("seg_map_path", "?"),
                                             ds.metainfo.get("reduce_zero_label"))

    # --------------------------------------------------------------------------------- mmseg API
    def _split_inputs(self, inputs: Union[Tensor, Sequence[Tensor]], metas: List[dict]) -> List[Tensor]:
        from farslip_ext.ovss.windows import rescale_long_side
        import torch.nn.functional as F

        images = list(inputs) if isinstance(inputs, (list, tuple)) else list(inputs.unbind(0))
        out = []
        long_side = self.settings.resize_long_side
        for img, meta in zip(images, metas):
            if img.ndim != 3 or img.shape[0] != 3:
                raise ValueError(f"FarSLIPSeg expects 3-channel images (3, H, W); got {tuple(img.shape)} "
                                 f"for {meta.get('img_path', 'an input')}")
            img = img.to(self.device, dtype=torch.float32)
            pad = meta.get("padding_size")
            if pad is not None and any(pad):  # mmseg test_cfg padding: remove it (left, right, top, bottom)
                left, right, top, bottom = (int(p) for p in pad)
                img = img[:, top:img.shape[1] - bottom, left:img.shape[2] - right]
            if long_side:
                size = rescale_long_side(img.shape[1], img.shape[2], int(long_side))
                if size != tuple(img.shape[1:]):
                    img = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0]
            out.append(img)
        return out

    def extract_feat(self, inputs: Tensor) -> Tuple[Tensor, Tensor]:
        """Normalised dense features of whole images: ``(B, D, h, w)`` patch map and ``(B, D)`` CLS token."""
        return self.ovss.extract_feat(inputs)

    def encode_decode(self, inputs: Tensor, batch_img_metas: Optional[List[dict]] = None) -> Tensor:
        """Per-name logits of a batch of images, each run as one window, at the input size ``(B, Q, H, W)``."""
        return torch.stack(self.ovss.slide_inference(list(inputs.unbind(0)), whole=True))

    @torch.no_grad()
    def predict(self, inputs: Union[Tensor, Sequence[Tensor]],
                data_samples: Optional[List[SegDataSample]] = None) -> List[SegDataSample]:
        """Labels (``pred_sem_seg``, (1, H0, W0)) and class probabilities (``seg_logits``, (C, H0, W0)) at
        each image's ``ori_shape``. Without ``data_samples`` the outputs stay at the input size."""
        n = len(inputs) if isinstance(inputs, (list, tuple)) else inputs.shape[0]
        if data_samples is None:
            shapes = [tuple(x.shape[-2:]) for x in (inputs if isinstance(inputs, (list, tuple)) else inputs.unbind(0))]
            data_samples = [SegDataSample(metainfo=dict(ori_shape=s, img_shape=s)) for s in shapes]
        else:
            self._check_samples(data_samples)
        metas = [ds.metainfo for ds in data_samples]
        if len(metas) != n:
            raise ValueError(f"{n} images but {len(metas)} data samples")
        images = self._split_inputs(inputs, metas)
        oris = [tuple(m.get("ori_shape", img.shape[-2:]))[:2] for m, img in zip(metas, images)]
        for ds, lg in zip(data_samples, self.ovss.inference(images, oris)):
            probs, pred = self.ovss.postprocess_logits(lg)
            ds.set_data({"seg_logits": PixelData(data=probs), "pred_sem_seg": PixelData(data=pred)})
        return data_samples

    @torch.no_grad()
    def _forward(self, inputs: Union[Tensor, Sequence[Tensor]], data_samples: Optional[List[SegDataSample]] = None
                 ) -> Union[Tensor, Tuple[Tensor, ...]]:
        """Tensor mode: window-averaged per-name logits at the input size, ``(B, Q, H, W)`` (a tuple when
        the images differ in size)."""
        n = len(inputs) if isinstance(inputs, (list, tuple)) else inputs.shape[0]
        metas = [ds.metainfo for ds in data_samples] if data_samples is not None else [{}] * n
        logits = self.ovss.slide_inference(self._split_inputs(inputs, metas))
        if all(lg.shape == logits[0].shape for lg in logits):
            return torch.stack(logits)
        return tuple(logits)

    def loss(self, inputs: Tensor, data_samples: List[SegDataSample]) -> dict:
        raise NotImplementedError(
            "FarSLIPSeg is a training-free evaluator: it has no loss. Run it with Runner.test() / `farslip ovss`; "
            "to train FarSLIP itself use farslip_ext's training recipes.")


# -------------------------------------------------------------------------------------- checkpoints
def _adopt_checkpoint(module: FarSLIPSeg, state_dict: dict, prefix: str, *args: Any) -> None:
    """Re-key a checkpoint in place before loading: this segmentor's own keys load as they are; an older
    FarSLIPSeg's ``clip.*`` keys and a bare OpenCLIP/FarSLIP checkpoint (``visual.*``, ...) become ``ovss.clip.*``."""
    keys = [k for k in state_dict if k.startswith(prefix)]
    own = prefix + "ovss."
    if not keys or any(k.startswith(own) for k in keys):
        return
    old = prefix + "clip."
    if all(k.startswith(old) for k in keys):
        for k in keys:
            state_dict[own + k[len(prefix):]] = state_dict.pop(k)
        return
    rel = {k[len(prefix):]: state_dict[k] for k in keys}
    if not any(k.startswith(("visual.", "module.visual.", "token_embedding.", "module.token_embedding."))
               for k in rel):
        return  # not a CLIP: leave it to the loader's own key report
    from farslip_ext.convert import convert_state_dict

    conv = convert_state_dict(rel, arch=module.ovss.clip_arch)
    want = set(module.ovss.clip.state_dict())
    got = set(conv.state_dict)
    if got != want:
        raise CheckpointFormatError(
            f"the checkpoint does not fit this segmentor's CLIP ({module.ovss.model_desc}): "
            f"{len(want - got)} tensors missing (e.g. {sorted(want - got)[:3]}), {len(got - want)} unexpected "
            f"(e.g. {sorted(got - want)[:3]}). Load it as clip=dict(model=<its architecture>, pretrained=<file>) "
            f"instead.")
    for k in keys:
        del state_dict[k]
    for k, v in conv.state_dict.items():
        state_dict[own + "clip." + k] = v
    logger.info("checkpoint: a bare CLIP state dict (%s), loaded into the segmentor's CLIP", conv.arch)


def _after_load(module: FarSLIPSeg, incompatible_keys: Any) -> None:
    """The text embeddings follow the text weights just loaded (a cache hit when they did not change)."""
    if isinstance(module, FarSLIPSeg):
        module.ovss.refresh_text()
