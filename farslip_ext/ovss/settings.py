"""The segmentor's settings: one typed record whose defaults are the base mmseg config.

``farslip_ext/segmentation/configs/_base_/farslip_ovss.py`` is the single place the defaults are
written (its ``model`` dict; they are the ``farslip`` preset, docs/reference/ovss-evaluation.md#17-segearth-ov-versus-rs-ovss).
``FarSLIPSeg``, :class:`~farslip_ext.ovss.OVSSPredictor` and ``run_ovss`` all fill what they are not
given from there, read with mmengine's ``Config`` (no mmseg import).
"""
from __future__ import annotations

import difflib
import functools
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

from farslip_ext.errors import ConfigError

__all__ = ["SegSettings", "UnknownSettingError", "base_config_path", "base_model_config", "default_settings",
           "default_clip", "WINDOW_MODES", "NOT_SETTINGS"]

#: ``resize``: every window that is not the model's input size is resized to it (RS-OVSS, the FarSLIP numbers);
#: ``native``: windows run at their own patch-padded size with interpolated positions (SegEarth-OV).
WINDOW_MODES = ("resize", "native")
#: Keys of the base config's ``model`` dict that are not settings (the model, its classes, mmseg's own).
NOT_SETTINGS = ("type", "clip", "class_names", "data_preprocessor")

Size = Union[int, Sequence[int]]


class UnknownSettingError(ConfigError, TypeError):
    """A setting name that is neither a segmentor setting nor a run setting."""


@dataclass(frozen=True)
class SegSettings:
    """Everything that shapes a segmentation besides the CLIP weights and the class names.

    templates: prompt templates (``openai``: the 80 OpenAI ImageNet prompts; a ``TEMPLATES`` name; a list
    of strings with ``{c}``). attn, ignore_residual: the dense last block. cls_token_lambda: λ of
    ``logits += λ·(ĉ·t̂ᵀ)``. prob_thd, bg_idx: pixels whose top probability is below ``prob_thd`` get
    ``bg_idx``. logit_scale: multiplier before the softmax. slide_crop, slide_stride: sliding windows
    (``slide_crop <= 0``: one window per image). window_mode: :data:`WINDOW_MODES`. window_size: input
    size in ``resize`` mode (None: the model's). resize_long_side: resize the input (cv2 bilinear, as
    mmcv's ``Resize``) before the windows — for arrays; under mmseg the pipeline resizes and this stays
    None. window_batch_size: most windows per forward. norm_decimals: the model's mean/std × 255 rounded
    to this many decimals (3 gives RS-OVSS's constants for OpenAI-normalised models; None: unrounded).
    precision, device: :mod:`farslip_ext.precision` / :mod:`farslip_ext.devices` values. text_cache:
    keep text embeddings on disk too. text_batch_size: prompts per text forward. check_labels: fail on
    ground truth that is neither a class index nor 255.
    """

    templates: Any
    attn: Union[str, dict]
    ignore_residual: bool
    cls_token_lambda: float
    prob_thd: float
    bg_idx: int
    logit_scale: float
    slide_crop: Size
    slide_stride: Size
    window_mode: str
    window_size: Optional[Size]
    resize_long_side: Optional[int]
    window_batch_size: int
    norm_decimals: Optional[int]
    precision: str
    device: str
    text_cache: bool
    text_batch_size: int
    check_labels: bool

    @classmethod
    def names(cls) -> Tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_overrides(cls, overrides: Optional[Mapping[str, Any]] = None, *, base: Optional[Mapping[str, Any]] = None,
                       what: str = "FarSLIPSeg") -> "SegSettings":
        """``base`` (default: :func:`default_settings`) updated with ``overrides``; an unknown key is an
        :class:`UnknownSettingError` naming the close matches. Values are checked (:meth:`check`)."""
        values = dict(default_settings() if base is None else base)
        for k, v in dict(overrides or {}).items():
            if k not in cls.names():
                raise unknown_setting(k, what)
            values[k] = v
        missing = [n for n in cls.names() if n not in values]
        if missing:
            raise ConfigError(f"{what}: settings {missing} have no value (the base config "
                              f"{base_config_path()} lacks them)")
        s = cls(**{n: values[n] for n in cls.names()})
        s.check()
        return s

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def check(self) -> None:
        """Clear errors for values out of range (before any weights load)."""
        from farslip_ext.ovss.windows import pair

        if self.window_mode not in WINDOW_MODES:
            raise ConfigError(f"window_mode={self.window_mode!r}; choose one of {WINDOW_MODES} "
                              f"('resize': FarSLIP/RS-OVSS, 'native': SegEarth-OV)")
        crop, stride = pair(self.slide_crop, "slide_crop"), pair(self.slide_stride, "slide_stride")
        if min(crop) > 0 and (min(stride) <= 0 or stride[0] > crop[0] or stride[1] > crop[1]):
            raise ConfigError(f"slide_stride={self.slide_stride!r} must be positive and at most "
                              f"slide_crop={self.slide_crop!r} (a larger stride leaves pixels that no window covers)")
        if not 0.0 <= float(self.prob_thd) <= 1.0:
            raise ConfigError(f"prob_thd={self.prob_thd!r} is a probability threshold in [0, 1] (0 disables it)")
        if float(self.logit_scale) <= 0:
            raise ConfigError(f"logit_scale={self.logit_scale!r} must be positive (the reference uses 50)")
        if int(self.window_batch_size) < 1:
            raise ConfigError(f"window_batch_size={self.window_batch_size!r} must be >= 1")
        if int(self.text_batch_size) < 1:
            raise ConfigError(f"text_batch_size={self.text_batch_size!r} must be >= 1")
        if self.resize_long_side is not None and int(self.resize_long_side) < 1:
            raise ConfigError(f"resize_long_side={self.resize_long_side!r} must be a positive number of pixels "
                              f"(or None: no resize)")
        if self.norm_decimals is not None and not 0 <= int(self.norm_decimals) <= 12:
            raise ConfigError(f"norm_decimals={self.norm_decimals!r}: decimals of the mean/std ×255 (3 = the "
                              f"reference's constants) or None for unrounded values")


def unknown_setting(key: str, what: str, extra: Sequence[str] = ()) -> UnknownSettingError:
    known = list(SegSettings.names()) + list(extra)
    close = difflib.get_close_matches(key, known, n=3)
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    return UnknownSettingError(f"{what} got an unknown setting {key!r}{hint}. Segmentor settings: "
                               f"{list(SegSettings.names())}" + (f"; run settings: {list(extra)}" if extra else ""))


def base_config_path() -> Path:
    """The base mmseg config (``farslip_ext/segmentation/configs/_base_/farslip_ovss.py``)."""
    from farslip_ext.catalogue import package_dir

    return package_dir() / "segmentation" / "configs" / "_base_" / "farslip_ovss.py"


@functools.lru_cache(maxsize=4)
def _read_base(path: str, mtime: float) -> Dict[str, Any]:
    from mmengine.config import Config

    cfg = Config.fromfile(path, import_custom_modules=False)
    return cfg.to_dict()


def base_config() -> Dict[str, Any]:
    """The whole base config as a plain dict (read without importing mmseg); a fresh copy on every call."""
    import copy

    p = base_config_path()
    return copy.deepcopy(_read_base(str(p), p.stat().st_mtime))


def base_model_config() -> Dict[str, Any]:
    """The base config's ``model`` dict (a copy)."""
    return base_config()["model"]


def default_settings() -> Dict[str, Any]:
    """The default settings (the base config's ``model`` dict without :data:`NOT_SETTINGS`)."""
    m = base_model_config()
    return {k: v for k, v in m.items() if k not in NOT_SETTINGS}


def default_clip() -> Dict[str, Any]:
    """The base config's ``clip`` (the released FarSLIP ViT-B/16 stage-2 weights)."""
    return dict(base_model_config()["clip"])
