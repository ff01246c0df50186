"""Dense patch features for OpenCLIP vision towers, by composition (no edits or subclasses of open_clip).

One trunk pass yields both outputs the FarSLIP trainer and the OVSS segmentor need
(farslip-method.md §4.2 ``forward_v2``, ovss-protocol.md §1.3):

* ``image_embed``: the standard image embedding, bit-identical to ``model.encode_image`` (the normal
  last block, ``ln_post`` on the CLS token, ``proj``);
* ``patch_tokens``: the last block replaced by a dense-attention variant (``SegEarth`` by default),
  then ``ln_post`` and ``proj`` on every token → (B, H·W, D), not normalised; ``cls_token`` is the
  variant's output at the CLS position (the OVSS "global bias" term).

Blocks ``0..L-2`` run once and are shared by both heads. Inputs of any size work: the positional
embedding is bicubically interpolated to the input's patch grid (the image embedding then follows the
same interpolated embedding; at the training size it equals ``encode_image`` exactly).

Typical use::

    extractor = DenseFeatureExtractor(model, attn="SegEarth")     # validates the tower once
    out = extractor(images)                                        # DenseOutput
    out.patch_map()                                                # (B, D, H, W)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from farslip_ext.models.dense_attn import DenseAttention, build_dense_attention, check_supported_tower

__all__ = ["DenseOutput", "DenseFeatureExtractor", "dense_forward", "embed_tokens", "interpolate_pos_embed"]


@dataclass
class DenseOutput:
    """What :func:`dense_forward` returns (fields are None when not requested)."""

    image_embed: Optional[torch.Tensor]  # (B, D), == model.encode_image(images) at the training size
    patch_tokens: Optional[torch.Tensor]  # (B, H*W, D) projected dense tokens, unnormalised
    cls_token: Optional[torch.Tensor]  # (B, D) dense variant's CLS-position output, projected
    grid: Tuple[int, int]  # (H, W) token grid

    def patch_map(self) -> torch.Tensor:
        """Dense tokens as a (B, D, H, W) feature map."""
        if self.patch_tokens is None:
            raise ValueError("dense tokens were not computed (return_dense=False)")
        b, n, d = self.patch_tokens.shape
        h, w = self.grid
        return self.patch_tokens.transpose(1, 2).reshape(b, d, h, w)


def _visual(model: nn.Module) -> nn.Module:
    return getattr(model, "visual", model)


def interpolate_pos_embed(pos: torch.Tensor, old_grid: Tuple[int, int], new_grid: Tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of a ViT positional table (1 CLS row + H·W rows) to a new patch grid."""
    if tuple(old_grid) == tuple(new_grid):
        return pos
    cls_pos, patch_pos = pos[:1], pos[1:]
    d = pos.shape[-1]
    patch_pos = patch_pos.reshape(1, old_grid[0], old_grid[1], d).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(patch_pos.float(), size=tuple(new_grid), mode="bicubic", align_corners=False)
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(-1, d).to(pos.dtype)
    return torch.cat([cls_pos, patch_pos], dim=0)


def embed_tokens(visual: nn.Module, images: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Patch embedding + CLS + positional embedding + ``ln_pre``, for any input size.

    At the tower's own grid this is ``visual._embeds`` (so results match ``encode_image`` exactly).
    """
    ph, pw = visual.patch_size if isinstance(visual.patch_size, tuple) else (visual.patch_size,) * 2
    grid = (images.shape[-2] // ph, images.shape[-1] // pw)
    images = images.to(visual.conv1.weight.dtype)
    if grid == tuple(visual.grid_size):
        return visual._embeds(images), grid
    x = visual.conv1(images)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1).to(x.dtype)
    x = torch.cat([cls, x], dim=1)
    x = x + interpolate_pos_embed(visual.positional_embedding, tuple(visual.grid_size), grid).to(x.dtype)
    x = visual.patch_dropout(x)
    return visual.ln_pre(x), grid


def _run_block(block: nn.Module, x: torch.Tensor, use_ckpt: bool) -> torch.Tensor:
    if use_ckpt:
        return checkpoint(block, x, None, None, None, use_reentrant=False)
    return block(x)


def dense_forward(
    model: nn.Module,
    images: torch.Tensor,
    attn: Union[str, dict, DenseAttention] = "SegEarth",
    *,
    ignore_residual: bool = True,
    return_image_embed: bool = True,
    return_dense: bool = True,
    check_tower: bool = True,
    embed_rows: Optional[Union[slice, torch.Tensor]] = None,
    dense_rows: Optional[Union[slice, torch.Tensor]] = None,
) -> DenseOutput:
    """Image embedding and dense patch tokens from one trunk pass.

    Args:
        model: an open_clip CLIP (or its ``visual`` tower).
        images: (B, 3, H, W) normalised images; any H, W (positional embedding interpolated).
        attn: dense-attention variant: a registered name (``"SegEarth"``, ``"MaskCLIP"``, ``"SCLIP"``,
            ``"ClearCLIP"``, ``"NACLIP"``, ``"vanilla"``), a ``dict(type=...)`` config or an instance.
        ignore_residual: reference default True (the dense block has no residual and no FFN).
        return_image_embed / return_dense: skip the branch that is not needed.
        embed_rows / dense_rows: compute a branch for these batch rows only (a slice or index tensor);
            the trunk runs once for all rows. Used to encode global images and crops together when only
            some of them need the image embedding or the dense tokens.
    """
    visual = _visual(model)
    if check_tower:
        check_supported_tower(visual)
    variant = build_dense_attention(attn, ignore_residual=ignore_residual) if return_dense else None
    x, grid = embed_tokens(visual, images)
    tr = visual.transformer
    blocks = tr.resblocks
    use_ckpt = bool(getattr(tr, "grad_checkpointing", False)) and torch.is_grad_enabled()
    batch_first = getattr(tr, "batch_first", True)
    if not batch_first:
        x = x.transpose(0, 1)
    for blk in blocks[:-1]:
        x = _run_block(blk, x, use_ckpt)

    image_embed = None
    bf_dim = 0 if batch_first else 1

    def rows(t: torch.Tensor, sel) -> torch.Tensor:
        return t if sel is None else t.index_select(bf_dim, sel) if isinstance(sel, torch.Tensor) else (
            t[sel] if batch_first else t[:, sel])

    if return_image_embed:
        x_last = _run_block(blocks[-1], rows(x, embed_rows), use_ckpt)
        if not batch_first:
            x_last = x_last.transpose(0, 1)
        pooled, _ = visual._pool(x_last)
        image_embed = pooled @ visual.proj if visual.proj is not None else pooled

    patch_tokens = cls_token = None
    if variant is not None:
        xs = rows(x, dense_rows)
        xb = xs.transpose(0, 1) if not batch_first else xs
        dense = variant(blocks[-1], xb, grid)
        dense = visual.ln_post(dense)
        if visual.proj is not None:
            dense = dense @ visual.proj
        cls_token, patch_tokens = dense[:, 0], dense[:, 1:]
    return DenseOutput(image_embed=image_embed, patch_tokens=patch_tokens, cls_token=cls_token, grid=grid)


class DenseFeatureExtractor(nn.Module):
    """An ``nn.Module`` around :func:`dense_forward` that validates the tower when it is built.

    It holds a reference to the model (its parameters are the model's; nothing is copied).
    """

    def __init__(self, model: nn.Module, attn: Union[str, dict, DenseAttention] = "SegEarth",
                 ignore_residual: bool = True) -> None:
        super().__init__()
        check_supported_tower(_visual(model))
        self.model = model
        self.attn = build_dense_attention(attn, ignore_residual=ignore_residual)

    def forward(self, images: torch.Tensor, return_image_embed: bool = True, return_dense: bool = True) -> DenseOutput:
        return dense_forward(self.model, images, self.attn, return_image_embed=return_image_embed,
                             return_dense=return_dense, check_tower=False)

    def extra_repr(self) -> str:
        return f"attn={self.attn!r}"

