"""The one model loader: :func:`load` resolves any weights source once and returns everything a caller needs.

Sources (``model`` / ``pretrained``):

==============================================  ======================================================
``load("farslip-vitb16", "s2")``                a catalogue tag: downloaded, verified and converted once
                                                (cached), loaded strictly
``load("farslip-vitb16", "ckpt.pt")``           a checkpoint in any FarSLIP/OpenCLIP container, converted
                                                once in memory for that architecture
``load("ckpt.pt")``                             the same, architecture inferred from the tensors
``load("ViT-B-16", "openai")``                  stock open_clip names and tags (open_clip loads them)
``load("hf-hub:org/repo")``, ``"local-dir:d"``  open_clip Hub folders
==============================================  ======================================================

The text context (77, or 248 for LongCLIP towers) is read from the weights, so the built model and
its tokenizer always match the file. Every floating tensor is checked to be finite. The result is a
:class:`LoadedModel`; reusing one model for several consumers (e.g. the eight OVSS benchmarks of a
run) is done by passing that object around, not by a hidden cache.
"""
from __future__ import annotations

import contextlib
import difflib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Optional, Tuple, Union

import open_clip
import torch

from farslip_ext.catalogue import CATALOGUE, PretrainedEntry
from farslip_ext.convert import check_finite, convert_state_dict, load_checkpoint_file
from farslip_ext.devices import resolve_device
from farslip_ext.errors import CheckpointFormatError, WeightsNotAvailableError
from farslip_ext.precision import Precision, parse_precision

__all__ = ["LoadedModel", "load", "create_model", "create_model_and_transforms", "get_tokenizer", "image_transforms",
           "CHECKPOINT_SUFFIXES"]

logger = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


@dataclass
class LoadedModel:
    """A built model with everything that belongs to it."""

    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]  # eval transform (PIL image -> normalised tensor)
    tokenizer: Callable[..., torch.Tensor]  # context length matches the model
    arch: str  # architecture name, or the hf-hub:/local-dir: name
    context_length: Optional[int]
    source: str  # human-readable description of the weights
    device: torch.device
    precision: Precision

    def autocast(self) -> ContextManager:
        """The precision's autocast context on the model's device."""
        return self.precision.autocast(self.device)


def image_transforms(model: torch.nn.Module) -> Tuple[Callable, Callable]:
    """``(train, eval)`` image transforms from the model's preprocess config (open_clip's public API)."""
    pp = dict(open_clip.get_model_preprocess_cfg(model) or {})
    kw = dict(mean=pp.get("mean"), std=pp.get("std"), resize_mode=pp.get("resize_mode"),
              interpolation=pp.get("interpolation"), fill_color=pp.get("fill_color", 0))
    size = pp.get("size", getattr(getattr(model, "visual", model), "image_size", 224))
    return open_clip.image_transform(size, is_train=True, **kw), open_clip.image_transform(size, is_train=False, **kw)


def get_tokenizer(model_or_name: Union[str, torch.nn.Module], model_name: Optional[str] = None, **kwargs: Any):
    """A tokenizer whose context length matches a built model (or open_clip's, for a name)."""
    if isinstance(model_or_name, str):
        return open_clip.get_tokenizer(model_or_name, **kwargs)
    ctx = getattr(model_or_name, "context_length", None)
    return open_clip.get_tokenizer(model_name or "", context_length=ctx, **kwargs)


# --------------------------------------------------------------------------------------------- sources
@dataclass
class _Source:
    kind: str  # "tag" | "file" | "openclip"
    arch: Optional[str]
    name: str  # the open_clip name to build / tokenizer name
    pretrained: Optional[str] = None
    entry: Optional[PretrainedEntry] = None
    file: Optional[Path] = None


def _resolve_source(model: str, pretrained: Optional[str]) -> _Source:
    model = str(model)
    if model.startswith(("hf-hub:", "local-dir:")):
        return _Source("openclip", None, model, pretrained)
    if Path(model).is_file():
        if pretrained is not None:
            raise ValueError(f"model={model!r} is a checkpoint file and pretrained={pretrained!r} is set too; pass "
                             f"model=<architecture> with pretrained=<file>, or the file alone as model")
        return _Source("file", None, "", file=Path(model))
    if model.endswith(CHECKPOINT_SUFFIXES):
        raise FileNotFoundError(f"model={model!r} looks like a checkpoint file but does not exist")
    if model not in open_clip.list_models():
        close = difflib.get_close_matches(model, open_clip.list_models(), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise ValueError(f"unknown OpenCLIP model {model!r}{hint}. Pass a farslip_ext architecture "
                         f"({CATALOGUE.arch_names()}), a stock open_clip name (open_clip.list_models()), "
                         f"'hf-hub:<org>/<repo>', 'local-dir:<folder>' or a checkpoint file")
    if not pretrained:
        return _Source("openclip", model, model, None)
    entry = CATALOGUE.find(model, pretrained)
    if entry is not None:
        return _Source("tag", model, model, pretrained, entry=entry)
    if Path(pretrained).is_file():
        return _Source("file", model, model, pretrained, file=Path(pretrained))
    if str(pretrained).endswith(CHECKPOINT_SUFFIXES):
        raise FileNotFoundError(f"pretrained={pretrained!r} looks like a checkpoint file but does not exist")
    if open_clip.get_pretrained_cfg(model, pretrained):
        return _Source("openclip", model, model, pretrained)
    other = [f"{a}:{t}" for a, t in CATALOGUE.list_pretrained() if t == pretrained.lower()]
    hint = f" The tag {pretrained!r} is registered for {other}." if other else ""
    raise WeightsNotAvailableError(
        f"pretrained={pretrained!r} is neither a tag of {model!r} ({open_clip.list_pretrained_tags_by_model(model)}) "
        f"nor an existing file.{hint}")


def _weights(src: _Source, cache_dir: Optional[Union[str, Path]]) -> Tuple[str, Dict[str, torch.Tensor], Optional[int], str]:
    """``(arch, state_dict, context_length, description)`` of a tag or file source (converted once)."""
    if src.kind == "tag":
        from safetensors.torch import load_file

        from farslip_ext.hub import fetch_converted

        path, info = fetch_converted(src.entry, cache_dir=cache_dir)
        try:
            sd = load_file(str(path), device="cpu")  # already converted: no second conversion
        except Exception as e:
            raise CheckpointFormatError(f"{path} (converted weights of {src.arch}:{src.pretrained}) cannot be read "
                                        f"({type(e).__name__}: {e}); delete it to convert again") from e
        ctx = info.get("context_length")
        return src.arch, sd, int(ctx) if ctx else None, f"{src.arch}:{src.entry.tag} ({src.entry.location})"
    conv = convert_state_dict(load_checkpoint_file(src.file), arch=src.arch)
    for n in conv.notes:
        logger.info("%s: %s", src.file, n)
    if src.arch is None:
        logger.info("%s: inferred architecture %s from its tensors", src.file, conv.arch)
    return conv.arch, conv.state_dict, conv.context_length, str(src.file)


@contextlib.contextmanager
def _quiet_random_init():
    """open_clip logs 'No pretrained weights loaded ... initialized randomly' for a model we fill next."""
    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "initialized randomly" not in record.getMessage()

    flt, root = _Drop(), logging.getLogger()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def _arch_context(arch: str) -> int:
    cfg = CATALOGUE.model_config(arch) or open_clip.get_model_config(arch) or {}
    return int(cfg.get("text_cfg", {}).get("context_length", 77))


def load(model: Union[str, Path], pretrained: Optional[str] = None, *, device: Union[None, str, torch.device] = "cpu",
         precision: Union[str, Precision] = "fp32", cache_dir: Optional[Union[str, Path]] = None, eval: bool = True,
         check_weights: bool = True, **create_kwargs: Any) -> LoadedModel:
    """Build ``model`` with ``pretrained`` weights (see the module doc for the accepted sources).

    Args:
        device: ``"auto"``/``None`` (CUDA if available), ``"cpu"``, ``"cuda[:i]"``.
        precision: a value of :data:`farslip_ext.precision.PRECISIONS`; ``auto`` is ``amp`` on CUDA and
            ``fp32`` on a CPU. Low-precision weights (``fp16``, ``bf16``, ...) are applied after loading.
        cache_dir: Hugging Face / download cache for tags (default: the usual HF cache).
        eval: ``True`` returns the model in eval mode with gradients off; ``False`` leaves it trainable.
        check_weights: refuse weights with NaN/inf values (names the tensors).
        create_kwargs: passed to ``open_clip.create_model`` (``force_quick_gelu``, ``force_context_length``,
            ``force_image_size`` ...).
    """
    dev = resolve_device(device)
    prec = parse_precision(precision, dev)
    src = _resolve_source(str(model), pretrained)
    if src.kind == "openclip":
        net = open_clip.create_model(src.name, pretrained=src.pretrained, cache_dir=cache_dir, precision=prec.weights,
                                     device=dev, **create_kwargs)
        if check_weights and src.pretrained:
            check_finite(net.state_dict(), f"{src.name}:{src.pretrained}")
        arch, desc = src.name, f"{src.name}:{src.pretrained}" if src.pretrained else f"{src.name} (random init)"
    else:
        arch, sd, ctx, desc = _weights(src, cache_dir)
        if check_weights:
            check_finite(sd, desc)
        if ctx is not None and ctx != _arch_context(arch):
            if "force_context_length" not in create_kwargs:
                logger.warning("%s has a %d-token text tower; building %s with context_length=%d instead of its %d "
                               "(the tokenizer follows)", desc, ctx, arch, ctx, _arch_context(arch))
            create_kwargs.setdefault("force_context_length", ctx)
        with _quiet_random_init():
            net = open_clip.create_model(arch, pretrained=None, precision=prec.weights, device=dev, **create_kwargs)
        net.load_state_dict(sd, strict=True)  # any missing or unexpected key raises, naming the keys
        _check_quick_gelu(net, arch, src, desc, sd)
    if eval:
        net.eval().requires_grad_(False)
    tokenizer = get_tokenizer(net, src.name or arch)
    _, preprocess = image_transforms(net)
    lm = LoadedModel(net, preprocess, tokenizer, arch, getattr(net, "context_length", None), desc, dev, prec)
    logger.info("loaded %s on %s (%s, text context %s)", desc, dev, prec, lm.context_length)
    return lm


def _check_quick_gelu(net: torch.nn.Module, arch: str, src: _Source, desc: str,
                      sd: Optional[Dict[str, torch.Tensor]] = None) -> None:
    """Warn when weights trained with QuickGELU go into a GELU model: a tag says so; a file loaded into one of
    our architectures, or whose tensors fit one of our (QuickGELU) architectures, is taken to be OpenAI-initialised."""
    from farslip_ext.convert import infer_arch
    from farslip_ext.models.quickgelu import warn_if_not_quick_gelu

    if src.entry is not None:
        expects = src.entry.quick_gelu
    elif arch in CATALOGUE.arch_names():
        expects = bool((CATALOGUE.model_config(arch) or {}).get("quick_gelu", False))
    else:
        try:
            ours = infer_arch(sd or {})
        except (CheckpointFormatError, KeyError, TypeError):
            ours = None
        expects = ours is not None and bool((CATALOGUE.model_config(ours) or {}).get("quick_gelu", False))
    if expects:
        warn_if_not_quick_gelu(net, desc)


def create_model(model_name: str, pretrained: Optional[str] = None, *, cache_dir: Optional[Union[str, Path]] = None,
                 device: Union[None, str, torch.device] = "cpu", precision: str = "fp32", **kwargs: Any
                 ) -> torch.nn.Module:
    """``open_clip.create_model`` with :func:`load`'s weight handling (the model is left as built: train mode)."""
    return load(model_name, pretrained, cache_dir=cache_dir, device=device, precision=precision, eval=False,
                **kwargs).model


def create_model_and_transforms(model_name: str, pretrained: Optional[str] = None, **kwargs: Any):
    """Like ``open_clip.create_model_and_transforms`` with :func:`load`'s weight handling."""
    model = create_model(model_name, pretrained=pretrained, **kwargs)
    train, val = image_transforms(model)
    return model, train, val
