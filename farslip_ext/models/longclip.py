"""The LongCLIP text tower: the 77→248 positional stretch for training, and its export.

FarSLIP's ViT-B/16 checkpoints use Long-CLIP's knowledge-preserving stretch (docs/reference/method.md §2.5,
reference ``model.py`` ``load_from_pretrained_short_pe(keep_len=20)``): the first 20 rows of the 77-row
table are kept; each later gap is filled with 4 linear steps,
``row[20+4i+j] = ((4−j)·P[20+i] + j·P[21+i]) / 4`` for i = 0..55, j = 0..3, and the last 4 rows
extrapolate ``P[76] + j·(P[76] − P[75]) / 4`` — 4·77 − 3·20 = 248 rows.

In the reference the stretched table becomes a *frozen* ``positional_embedding`` and a *trainable*
copy ``positional_embedding_res``; positions < 20 read the frozen one, the rest the trainable one.
Here that split is a ``torch.nn.utils.parametrize`` parametrization on open_clip's own
``positional_embedding`` (no subclass, no new model attribute): the effective table is
``cat(frozen[:20], trainable[20:])``, so rows < 20 get no gradient and are unaffected by weight decay,
exactly as in the reference. :func:`open_clip_state_dict` exports the folded single table that stock
open_clip (``context_length=248``) loads.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = [
    "LONG_CONTEXT",
    "stretch_positional_embedding",
    "LongCLIPPositionSplit",
    "enable_long_clip_training",
    "is_long_clip_training",
    "open_clip_state_dict",
]

LONG_CONTEXT = 248


def stretch_positional_embedding(pe: torch.Tensor, keep_len: int = 20, factor: int = 4) -> torch.Tensor:
    """Long-CLIP's knowledge-preserving stretch of an (n, d) table to (keep + factor·(n − keep), d)."""
    n, d = pe.shape
    if not 0 < keep_len < n - 1:
        raise ValueError(f"keep_len must be in 1..{n - 2} for a {n}-row table, got {keep_len}")
    src = pe.detach().to(torch.float32)
    steps = torch.arange(factor, dtype=torch.float32, device=pe.device) / factor  # j / factor
    a, b = src[keep_len:-1], src[keep_len + 1:]  # P[keep+i], P[keep+i+1]
    middle = a[:, None, :] * (1 - steps)[None, :, None] + b[:, None, :] * steps[None, :, None]
    tail = src[-1][None, :] + steps[:, None] * (src[-1] - src[-2])[None, :]
    out = torch.cat([src[:keep_len], middle.reshape(-1, d), tail], dim=0)
    return out.to(pe.dtype)


class LongCLIPPositionSplit(nn.Module):
    """Parametrization: rows ``< keep_len`` come from a frozen copy, the rest from the trainable table."""

    def __init__(self, frozen: torch.Tensor, keep_len: int = 20) -> None:
        super().__init__()
        self.keep_len = keep_len
        self.register_buffer("frozen", frozen.detach()[:keep_len].clone())

    def forward(self, table: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.frozen.to(table.dtype), table[self.keep_len:]], dim=0)


def _causal_mask(n: int) -> torch.Tensor:
    return torch.full((n, n), float("-inf")).triu_(1)


def enable_long_clip_training(model: nn.Module, keep_len: int = 20) -> nn.Module:
    """Prepare an open_clip ``CLIP`` for LongCLIP training (in place; returns ``model``).

    A 77-row text table is stretched to 248 rows (``load_from_clip`` in the reference); a 248-row
    table is used as is (``load_from_scratch``). Either way rows ``< keep_len`` are frozen.
    """
    if not isinstance(getattr(model, "positional_embedding", None), torch.Tensor):
        raise TypeError(f"LongCLIP needs an open_clip CLIP with a native text tower (model.positional_embedding); "
                        f"got {type(model).__name__}")
    if is_long_clip_training(model):
        return model
    pe = model.positional_embedding
    if pe.shape[0] != LONG_CONTEXT:
        if pe.shape[0] != 77:
            raise ValueError(f"LongCLIP stretches a 77-row text table; this model has {pe.shape[0]} rows")
        table = stretch_positional_embedding(pe, keep_len=keep_len)
        model.positional_embedding = nn.Parameter(table, requires_grad=pe.requires_grad)
        model.register_buffer("attn_mask", _causal_mask(LONG_CONTEXT).to(pe.device), persistent=False)
        model.context_length = LONG_CONTEXT
    parametrize.register_parametrization(
        model, "positional_embedding", LongCLIPPositionSplit(model.positional_embedding, keep_len)
    )
    return model


def is_long_clip_training(model: nn.Module) -> bool:
    return parametrize.is_parametrized(model, "positional_embedding")


def open_clip_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The model's state dict in plain open_clip form (the LongCLIP split folded into one table)."""
    sd = model.state_dict()
    if not is_long_clip_training(model):
        return sd
    prefix = "parametrizations.positional_embedding."
    out = {k: v for k, v in sd.items() if not k.startswith(prefix)}
    out["positional_embedding"] = model.positional_embedding.detach().clone()
    return out
