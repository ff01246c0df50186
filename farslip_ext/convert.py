"""Checkpoint conversion: any plausible FarSLIP / OpenCLIP container to a plain open_clip state dict.

Accepted inputs (docs/reference/method.md §4.5, docs/reference/ovss-evaluation.md §2.7):

* a bare state dict, or a training checkpoint ``{"state_dict": ..., "epoch": ..., "optimizer": ...}``
  (also ``{"model": ...}``), keys optionally prefixed with ``module.`` (DDP) or ``_orig_mod.``
  (``torch.compile``);
* fp16 / bf16 tensors (cast to fp32);
* the LongCLIP text tower of the reference fork: ``positional_embedding`` (248 rows) plus
  ``positional_embedding_res`` and the buffers ``mask1``/``mask2``. ``encode_text`` there adds
  ``pe * mask1 + pe_res * mask2``, which is linear in the two tables, so it folds exactly into one
  248-row table that stock open_clip (``context_length=248``) uses unchanged.

Files are read without unpickling code: safetensors, or ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import torch

from farslip_ext.errors import CheckpointFormatError, NonFiniteWeightsError
from farslip_ext.io import atomic_path, check_destination

__all__ = [
    "ConvertedCheckpoint",
    "CheckpointFormatError",
    "load_checkpoint_file",
    "unwrap_state_dict",
    "fold_long_clip",
    "text_context_length",
    "infer_arch",
    "convert_state_dict",
    "convert_checkpoint_file",
    "check_finite",
]

logger = logging.getLogger(__name__)

_LONGCLIP_KEYS = ("positional_embedding_res", "mask1", "mask2")
_CONTAINER_KEYS = ("state_dict", "model", "module", "state_dict_ema")
_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class ConvertedCheckpoint:
    """A state dict ready for ``model.load_state_dict(strict=True)`` plus what was learned on the way."""

    state_dict: Dict[str, torch.Tensor]
    context_length: Optional[int]
    long_clip_folded: bool
    arch: Optional[str] = None
    notes: List[str] = field(default_factory=list)

    @property
    def long_clip(self) -> bool:
        """True when the text tower has the 248-position LongCLIP table."""
        return self.context_length is not None and self.context_length > 77


def load_checkpoint_file(path: Union[str, Path]) -> Any:
    """Read a checkpoint without executing pickled code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # SafetensorError (truncated, not safetensors) names no file
            raise CheckpointFormatError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e}); "
                                        f"the file is truncated or corrupt: delete it and download or convert it "
                                        f"again") from e
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle with code, or not a torch file at all
        raise CheckpointFormatError(
            f"{path} could not be read with torch.load(weights_only=True): {e}. farslip_ext never unpickles "
            "arbitrary code; re-save the weights as a plain state dict (torch.save(model.state_dict(), ...)) "
            "or as safetensors."
        ) from e


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def unwrap_state_dict(obj: Any) -> Dict[str, torch.Tensor]:
    """Find the state dict inside a container and strip wrapper prefixes."""
    seen = 0
    while not _is_tensor_dict(obj):
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in _CONTAINER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is not None and seen < 3:
                obj, seen = inner, seen + 1
                continue
            # Tolerate non-tensor extras inside a state dict (e.g. ints saved by old code).
            tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if len(tensors) >= max(1, len(obj) // 2):
                obj = tensors
                continue
            keys = list(obj)[:10]
            raise CheckpointFormatError(
                f"no state dict found in the checkpoint: top-level keys {keys}; expected a tensor dict or one "
                f"under one of {list(_CONTAINER_KEYS)}"
            )
        raise CheckpointFormatError(f"a checkpoint must be a dict of tensors, got {type(obj).__name__}")
    sd = dict(obj)
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def fold_long_clip(sd: Dict[str, torch.Tensor], keep_len: int = 20) -> Tuple[Dict[str, torch.Tensor], bool]:
    """Fold the two-table LongCLIP text positional embedding into one table.

    The reference (FarSLIP ``open_clip/model.py`` ``encode_text``) adds ``pe * mask1 + pe_res * mask2``
    where ``mask1`` is 1 for positions ``< keep_len`` and ``mask2`` the complement. The masks are taken
    from the checkpoint when present; otherwise the reference split ``keep_len=20`` is used.
    Returns ``(state_dict, folded)``.
    """
    if "positional_embedding_res" not in sd:
        extra = [k for k in ("mask1", "mask2") if k in sd]
        if extra:
            raise CheckpointFormatError(f"checkpoint has LongCLIP buffers {extra} but no positional_embedding_res")
        return sd, False
    sd = dict(sd)
    pe = sd.pop("positional_embedding")
    pe_res = sd.pop("positional_embedding_res")
    if pe.shape != pe_res.shape:
        raise CheckpointFormatError(
            f"LongCLIP tables disagree: positional_embedding {tuple(pe.shape)} vs positional_embedding_res "
            f"{tuple(pe_res.shape)}"
        )
    n = pe.shape[0]
    if "mask1" in sd and "mask2" in sd:
        m1 = sd.pop("mask1").to(torch.float32).reshape(n, -1)
        m2 = sd.pop("mask2").to(torch.float32).reshape(n, -1)
    else:
        sd.pop("mask1", None)
        sd.pop("mask2", None)
        m1 = torch.zeros(n, 1)
        m1[:keep_len] = 1.0
        m2 = 1.0 - m1
    sd["positional_embedding"] = pe.to(torch.float32) * m1 + pe_res.to(torch.float32) * m2
    return sd, True


def text_context_length(sd: Mapping[str, torch.Tensor]) -> Optional[int]:
    pe = sd.get("positional_embedding")
    return int(pe.shape[0]) if pe is not None and pe.ndim == 2 else None


def _count_blocks(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    idx = set()
    for k in sd:
        if k.startswith(prefix):
            rest = k[len(prefix):]
            head = rest.split(".", 1)[0]
            if head.isdigit():
                idx.add(int(head))
    return len(idx)


def _signature_from_state_dict(sd: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    def shape(k: str) -> Optional[Tuple[int, ...]]:
        t = sd.get(k)
        return tuple(t.shape) if t is not None else None

    conv = shape("visual.conv1.weight")
    vpos = shape("visual.positional_embedding")
    return {
        "vision_width": conv[0] if conv else None,
        "patch_size": conv[-1] if conv else None,
        "vision_tokens": vpos[0] if vpos else None,
        "vision_layers": _count_blocks(sd, "visual.transformer.resblocks."),
        "embed_dim": (shape("visual.proj") or (None, None))[1],
        "text_width": (shape("token_embedding.weight") or (None, None))[1],
        "vocab_size": (shape("token_embedding.weight") or (None, None))[0],
        "text_layers": _count_blocks(sd, "transformer.resblocks."),
    }


def _signature_from_config(cfg: Mapping[str, Any]) -> Dict[str, Any]:
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    size = v.get("image_size", 224)
    size = size if isinstance(size, (list, tuple)) else (size, size)
    p = v.get("patch_size", 16)
    return {
        "vision_width": v.get("width", 768),
        "patch_size": p,
        "vision_tokens": (size[0] // p) * (size[1] // p) + 1,
        "vision_layers": v.get("layers", 12),
        "embed_dim": cfg["embed_dim"],
        "text_width": t.get("width", 512),
        "vocab_size": t.get("vocab_size", 49408),
        "text_layers": t.get("layers", 12),
    }


def describe_shapes(sd: Mapping[str, torch.Tensor], limit: int = 12) -> str:
    keys = [k for k in ("visual.conv1.weight", "visual.positional_embedding", "visual.proj", "token_embedding.weight",
                        "positional_embedding", "text_projection") if k in sd]
    keys += [k for k in sd if k not in keys][: max(0, limit - len(keys))]
    return ", ".join(f"{k}: {tuple(sd[k].shape)}" for k in keys)


def infer_arch(sd: Mapping[str, torch.Tensor], candidates: Optional[Iterable[str]] = None) -> str:
    """Name of the registered architecture whose tensors match ``sd`` (text context excluded).

    ``candidates`` defaults to the farslip model configs; among matches, one whose text context
    length also matches is preferred (the tensors decide the context when the model is built).
    """
    import open_clip

    from farslip_ext.catalogue import CATALOGUE

    names = list(candidates) if candidates is not None else CATALOGUE.arch_names()
    sig = _signature_from_state_dict(sd)
    ctx = text_context_length(sd)
    matches = []
    for name in names:
        cfg = open_clip.get_model_config(name)
        if cfg is None or "timm_model_name" in cfg.get("vision_cfg", {}) or "hf_model_name" in cfg.get("text_cfg", {}):
            continue
        if _signature_from_config(cfg) == sig:
            matches.append((cfg["text_cfg"].get("context_length", 77) != ctx, name))
    if matches:
        return sorted(matches)[0][1]  # prefer an architecture whose text context matches too
    raise CheckpointFormatError(
        f"the checkpoint fits none of the architectures {names}: its tensors are {describe_shapes(sd)} "
        f"(vision layers {sig['vision_layers']}, text layers {sig['text_layers']}). Register a model config "
        f"with these shapes (open_clip.add_model_config or a farslip_ext plugin) or pass the right arch."
    )


def check_finite(sd: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise :class:`NonFiniteWeightsError` naming every floating tensor of ``sd`` that holds NaN/inf."""
    bad = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        raise NonFiniteWeightsError(
            f"{source}: {len(bad)} tensor(s) hold NaN or infinite values ({shown}); these weights would give wrong "
            f"numbers (e.g. every pixel labelled class 0). Use an earlier checkpoint of the run.")


def convert_state_dict(obj: Any, arch: Optional[str] = None, keep_len: int = 20) -> ConvertedCheckpoint:
    """Convert a loaded checkpoint object (any accepted container) into an open_clip state dict."""
    sd = unwrap_state_dict(obj)
    notes: List[str] = []
    dtypes = {v.dtype for v in sd.values() if v.is_floating_point()}
    if dtypes - {torch.float32}:
        notes.append(f"cast {sorted(str(d) for d in dtypes)} to float32")
    sd = {k: (v.to(torch.float32) if v.is_floating_point() else v) for k, v in sd.items()}
    sd.pop("attn_mask", None)  # non-persistent in open_clip; old files may still carry it
    sd, folded = fold_long_clip(sd, keep_len=keep_len)
    if folded:
        notes.append("folded LongCLIP positional_embedding + positional_embedding_res (mask1/mask2) into one table")
    if "logit_scale" in sd and sd["logit_scale"].ndim == 1 and sd["logit_scale"].numel() == 1:
        sd["logit_scale"] = sd["logit_scale"].reshape(())
    # Always check the tensors against the architecture: a wrong file is a clear error, not a strict-load dump.
    arch = infer_arch(sd, candidates=[arch] if arch is not None else None)
    return ConvertedCheckpoint(sd, text_context_length(sd), folded, arch=arch, notes=notes)


def convert_checkpoint_file(src: Union[str, Path], dst: Union[str, Path], arch: Optional[str] = None, *,
                            overwrite: bool = False) -> ConvertedCheckpoint:
    """Convert ``src`` and write it as an open_clip safetensors file at ``dst``.

    ``dst`` must not be ``src`` (by resolved path) and must not exist unless ``overwrite``; it is
    written atomically and readable by everyone (0644), so a failure never leaves a partial file.
    """
    from safetensors.torch import save_file

    dst = check_destination(dst, src=src, overwrite=overwrite, what="conversion destination")
    conv = convert_state_dict(load_checkpoint_file(src), arch=arch)
    check_finite(conv.state_dict, str(src))
    meta = {
        "format": "pt",
        "source": Path(src).name,
        "arch": conv.arch or "",
        "context_length": str(conv.context_length),
        "long_clip_folded": json.dumps(conv.long_clip_folded),
    }
    with atomic_path(dst) as tmp:
        save_file({k: v.contiguous() for k, v in conv.state_dict.items()}, str(tmp), metadata=meta)
    return conv
