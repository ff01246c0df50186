"""Trimmed text encoding: run the text tower only on the token columns the pooled feature can see.

open_clip encodes every caption at the full context (77, or 248 for the LongCLIP tower) although a
prompt such as "a photo of a road." has 7 real tokens. With a *causal* attention mask the output at
position ``p`` depends only on positions ``<= p``, and ``argmax``/``eos`` pooling reads one position per
row (the end-of-text token). So the pooled feature of every row is unchanged when the batch is cut to
``tokens[:, :L]``, the positional table to ``[:L]`` and the mask to ``[:L, :L]``, where ::

    L = max over rows of (pooled position + 1)

(for tokenizer output the pooled position is the EOT token, the last non-pad token, so ``L`` is the
longest real length in the batch). The cost falls from ``B·ctx`` to ``B·L`` token-rows, and attention
from ``ctx²`` to ``L²``: 10-20x less work for template prompt sets at 248 tokens.

:func:`encode_text` is a drop-in for ``model.encode_text`` (same values within float rounding, same
gradients, LongCLIP parametrization and autocast included); :func:`encode_texts_bucketed` is the
no-grad path for large prompt sets (sort by length, encode in chunks, restore the order).

Only public attributes of open_clip modules are used. ``open_clip.transformer.text_global_pool`` is a
module-level function without a leading underscore (open_clip's own ``CLIP.encode_text`` calls it),
though not re-exported from ``open_clip/__init__``; we call it so that pooling is open_clip's, not a copy.
"""
from __future__ import annotations

import sys
import weakref
from typing import Any, Callable, Dict, Iterable, NamedTuple, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from open_clip.model import CLIP, CustomTextCLIP
from open_clip.transformer import (
    Attention,
    CustomResidualAttentionBlock,
    LayerNorm,
    LayerNormFp32,
    ResidualAttentionBlock,
    TextTransformer,
    Transformer,
    text_global_pool,  # module-level in open_clip.transformer (see the module docstring)
)
from torch import nn

from farslip_ext.compat import tensor_version

__all__ = ["encode_text", "encode_texts_bucketed", "trim_unsupported_reason", "text_lengths"]

Progress = Union[bool, Callable[..., Iterable]]

_POOLS = ("argmax", "eos")
_LN_TYPES = (nn.LayerNorm, LayerNorm, LayerNormFp32, nn.Identity)
_BLOCK_ATTN = {ResidualAttentionBlock: nn.MultiheadAttention, CustomResidualAttentionBlock: Attention}


class _Tower(NamedTuple):
    """The pieces of a native open_clip text tower (a ``CLIP`` or a ``CustomTextCLIP.text``)."""

    owner: nn.Module  # the module holding ``positional_embedding`` (read at call time: parametrizations)
    token_embedding: nn.Module
    transformer: Transformer
    attn_mask: torch.Tensor
    ln_final: nn.Module
    text_projection: Optional[Union[torch.Tensor, nn.Linear]]
    pool_type: str
    eos_id: Optional[int]


def _same_method(obj: object, cls: type, name: str) -> bool:
    return isinstance(obj, cls) and getattr(type(obj), name, None) is getattr(cls, name)


#: id(mask) -> (weak reference, in-place version counter, verdict): the value check reads the mask once, not on every
#: call (on a GPU it is a device-to-host sync; under torch.compile a graph break each step otherwise).
_CAUSAL_SEEN: Dict[int, Tuple[Any, int, bool]] = {}


@torch.compiler.disable
def _causal(mask: object, n: int) -> bool:
    """A float (n, n) mask that forbids every future position (-inf strictly above the diagonal)."""
    if not isinstance(mask, torch.Tensor) or not mask.is_floating_point() or mask.shape != (n, n):
        return False
    seen = _CAUSAL_SEEN.get(id(mask))
    if seen is not None and seen[0]() is mask and seen[1] == tensor_version(mask):
        return seen[2]
    upper = torch.ones(n, n, dtype=torch.bool, device=mask.device).triu_(1)
    verdict = bool(torch.isneginf(mask[upper]).all())
    if len(_CAUSAL_SEEN) > 256:
        _CAUSAL_SEEN.clear()
    _CAUSAL_SEEN[id(mask)] = (weakref.ref(mask), tensor_version(mask), verdict)
    return verdict


def _tower(model: nn.Module) -> Union[_Tower, str]:
    """The text tower of ``model`` if it can be trimmed exactly, else the reason it cannot."""
    if _same_method(model, CLIP, "encode_text"):
        owner, pool, eos = model, getattr(model, "text_pool_type", None), getattr(model, "text_eos_id", None)
    elif _same_method(model, CustomTextCLIP, "encode_text"):
        owner = model.text
        if not (_same_method(owner, TextTransformer, "forward") and _same_method(owner, TextTransformer, "_embeds")):
            return f"text tower {type(owner).__name__} is not open_clip's TextTransformer"
        if owner.cls_emb is not None:
            return "TextTransformer with a class token (CoCa): 'last' pooling over an appended token"
        if owner.use_pad_mask or owner.output_tokens:
            return "TextTransformer with a padding mask or token outputs"
        pool, eos = owner.pool_type, owner.eos_id
    else:
        return f"{type(model).__name__} is neither open_clip CLIP nor CustomTextCLIP (or overrides encode_text)"
    pe = getattr(owner, "positional_embedding", None)
    if not isinstance(pe, torch.Tensor) or pe.ndim != 2:
        return "no 2-D positional_embedding"
    if pool not in _POOLS:
        return f"pool type {pool!r} reads positions other than the end-of-text token"
    if pool == "eos" and eos is None:
        return "'eos' pooling without an eos id"
    if not _causal(owner.attn_mask, pe.shape[0]):
        return "attention mask is not causal (or not a float context x context mask)"
    if type(owner.token_embedding) is not nn.Embedding:
        return f"token embedding {type(owner.token_embedding).__name__} is not nn.Embedding"
    tr = owner.transformer
    if not _same_method(tr, Transformer, "forward"):
        return f"transformer {type(tr).__name__} is not open_clip's Transformer"
    for blk in tr.resblocks:
        attn_cls = _BLOCK_ATTN.get(type(blk))
        if attn_cls is None or type(blk.attn) is not attn_cls:
            return f"unknown text block {type(blk).__name__} / attention {type(getattr(blk, 'attn', None)).__name__}"
    if type(owner.ln_final) not in _LN_TYPES:
        return f"final norm {type(owner.ln_final).__name__} is not a LayerNorm"
    proj = owner.text_projection
    if not (proj is None or isinstance(proj, torch.Tensor) or type(proj) is nn.Linear):
        return f"text projection {type(proj).__name__} is not a tensor or nn.Linear"
    return _Tower(owner, owner.token_embedding, tr, owner.attn_mask, owner.ln_final, proj, pool, eos)


def trim_unsupported_reason(model: nn.Module) -> Optional[str]:
    """``None`` when :func:`encode_text` trims ``model``'s text tower, else why it falls back."""
    t = _tower(model)
    return t if isinstance(t, str) else None


def _pool_index(tower: _Tower, tokens: torch.Tensor) -> torch.Tensor:
    # The same index rule as text_global_pool: first maximal token ('argmax') or first eos ('eos').
    if tower.pool_type == "argmax":
        return tokens.argmax(dim=-1)
    return (tokens == tower.eos_id).int().argmax(dim=-1)


def text_lengths(model: nn.Module, tokens: torch.Tensor) -> Optional[torch.Tensor]:
    """Per row, the number of leading columns the pooled feature depends on (pooled position + 1);
    ``None`` when the tower is not trimmable."""
    tower = _tower(model)
    return None if isinstance(tower, str) else _pool_index(tower, tokens) + 1


def encode_text(model: nn.Module, tokens: torch.Tensor, *, normalize: bool = False, trim: bool = True) -> torch.Tensor:
    """``model.encode_text(tokens, normalize=normalize)``, computed on the first ``L`` columns only.

    ``L = max(pooled position) + 1`` over the batch. Trimming is exact, and is used only when all of
    these hold (checked on every call, each a cheap attribute or type test):

    * ``model`` is an open_clip ``CLIP`` whose ``encode_text`` is open_clip's (subclasses made by
      ``torch.nn.utils.parametrize``, e.g. the LongCLIP split, qualify), or a ``CustomTextCLIP`` whose
      ``text`` is an open_clip ``TextTransformer`` without class token, padding mask or token outputs;
    * pooling is ``'argmax'`` or ``'eos'`` (with an eos id): one position per row is read;
    * the attention mask is a float ``(ctx, ctx)`` tensor with ``-inf`` everywhere above the diagonal
      (no position sees a later one), so the kept positions never read the dropped ones;
    * every module on the path is one whose per-position behaviour is known: ``nn.Embedding``; an
      open_clip ``Transformer`` of ``ResidualAttentionBlock`` (``nn.MultiheadAttention``) or
      ``CustomResidualAttentionBlock`` (open_clip ``Attention``) blocks; a LayerNorm (or Identity) final
      norm; a tensor, ``nn.Linear`` or no projection;
    * ``tokens`` is a non-empty 2-D integer tensor with exactly ``ctx`` columns (as the padded path
      requires; other widths go to ``model.encode_text``, which raises as it always did).

    Otherwise, or with ``trim=False``, it returns ``model.encode_text(tokens, normalize=normalize)``:
    an unsupported tower is never trimmed. Gradients flow as in the padded path; rows ``>= L`` of the
    positional table get a zero gradient (as they do there), and a parametrized table (LongCLIP's frozen
    first rows) is evaluated through its parametrization and then sliced, so frozen rows stay frozen.
    """
    tower = _tower(model) if trim else "trim=False"
    pe_rows = tower.owner.positional_embedding.shape[0] if not isinstance(tower, str) else -1
    if (isinstance(tower, str) or tokens.ndim != 2 or tokens.shape[0] == 0 or tokens.shape[1] != pe_rows
            or tokens.is_floating_point() or tokens.is_complex()):
        return model.encode_text(tokens, normalize=normalize)
    length = int(_pool_index(tower, tokens).max()) + 1
    text = tokens[:, :length]
    cast_dtype = tower.transformer.get_cast_dtype()
    x = tower.token_embedding(text).to(cast_dtype)
    x = x + tower.owner.positional_embedding[:length].to(cast_dtype)
    x = tower.transformer(x, attn_mask=tower.attn_mask[:length, :length])
    x = tower.ln_final(x)
    x = text_global_pool(x, text, tower.pool_type, eos_token_id=tower.eos_id)
    proj = tower.text_projection
    if isinstance(proj, nn.Linear):
        x = proj(x)
    elif proj is not None:
        x = x @ proj
    return F.normalize(x, dim=-1) if normalize else x


def _progress(chunks: Iterable, total: int, progress: Progress) -> Iterable:
    if callable(progress):
        return progress(chunks, total=total)
    if progress and sys.stderr.isatty():
        try:
            from tqdm import tqdm
        except ImportError:  # progress is cosmetic
            return chunks
        return tqdm(chunks, total=total, desc="text", unit="chunk", leave=False)
    return chunks


@torch.no_grad()
def encode_texts_bucketed(model: nn.Module, tokens: torch.Tensor, batch_size: int = 256, *,
                          normalize: bool = False, progress: Progress = False) -> torch.Tensor:
    """Encode many prompts (e.g. 8 names x 80 templates) without gradients, in the original row order.

    Rows are sorted by length (longest first, stable), encoded in chunks of ``batch_size`` with
    :func:`encode_text` (each chunk trimmed to its own longest row) and put back in place. An
    untrimmable tower is encoded chunk by chunk in the given order with ``model.encode_text``.
    ``progress``: ``True`` shows a tqdm bar when stderr is a terminal; a callable is used as
    ``progress(iterable, total=n_chunks)`` and must yield the items (``tqdm.tqdm`` fits).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = tokens.shape[0]
    if tokens.ndim != 2 or n == 0:
        return model.encode_text(tokens, normalize=normalize)
    lengths = text_lengths(model, tokens)
    order = (torch.argsort(lengths, descending=True, stable=True) if lengths is not None
             else torch.arange(n, device=tokens.device))
    starts = range(0, n, batch_size)
    out: Optional[torch.Tensor] = None
    for start in _progress(starts, len(starts), progress):
        rows = order[start:start + batch_size]
        feats = encode_text(model, tokens[rows], normalize=normalize)
        if out is None:
            out = feats.new_empty((n, *feats.shape[1:]))
        out[rows] = feats
    return out
