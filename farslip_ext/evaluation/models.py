"""Load any OpenCLIP model for evaluation, and the precision/autocast policy (method §4.6).

``load_model`` accepts everything :func:`farslip_ext.create_model_and_transforms` does: a FarSLIP
architecture with a tag (``farslip-vitb16`` + ``s2``) or a checkpoint path in any FarSLIP container,
``hf-hub:org/repo``, ``local-dir:/path``, and stock open_clip names and tags (``ViT-B-32`` + ``openai``).
The tokenizer follows the built model's text context (77, or 248 for LongCLIP towers).
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Optional, Union

import torch

from farslip_ext.devices import resolve_device  # noqa: F401  (re-exported)

__all__ = ["PRECISIONS", "LoadedModel", "load_model", "resolve_device", "autocast_context"]

logger = logging.getLogger(__name__)

#: ``amp``: fp16 autocast on CUDA, as the reference tests (``precision='amp'``); ``amp_bf16``: bf16
#: autocast on CUDA; ``fp32``: none. On a CPU every choice runs in fp32.
PRECISIONS = ("amp", "amp_bf16", "fp32")


@dataclass
class LoadedModel:
    """A model ready for evaluation with its eval preprocessing and tokenizer."""

    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Callable[..., torch.Tensor]
    name: str
    pretrained: Optional[str]
    device: torch.device
    precision: str

    def autocast(self) -> ContextManager:
        return autocast_context(self.device, self.precision)


def autocast_context(device: Union[str, torch.device], precision: str = "amp") -> ContextManager:
    """The autocast context for ``precision`` on ``device`` (a no-op on CPU and for ``fp32``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; choose one of {PRECISIONS}")
    dev = torch.device(device)
    if dev.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch.float16 if precision == "amp" else torch.bfloat16)


def load_model(model: str, pretrained: Optional[str] = None, device: Union[None, str, torch.device] = None,
               precision: str = "amp", cache_dir: Optional[str] = None, **kwargs: Any) -> LoadedModel:
    """Build ``model`` with ``pretrained`` weights in eval mode on ``device``; see the module docstring.

    Extra keyword arguments go to ``farslip_ext.create_model_and_transforms`` (``force_quick_gelu``, ...).
    """
    import farslip_ext

    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; choose one of {PRECISIONS}")
    dev = resolve_device(device)
    if dev.type != "cuda" and precision != "fp32":
        logger.info("precision %r has no effect on %s; evaluating in fp32", precision, dev)
    if cache_dir is not None:
        kwargs["cache_dir"] = cache_dir
    net, _, preprocess = farslip_ext.create_model_and_transforms(model, pretrained=pretrained, **kwargs)
    net = net.to(dev).eval()
    tokenizer = farslip_ext.get_tokenizer(net, model)
    logger.info("loaded %s (pretrained=%s) on %s, text context %s", model, pretrained, dev,
                getattr(net, "context_length", "?"))
    return LoadedModel(net, preprocess, tokenizer, model, pretrained, dev, precision)
