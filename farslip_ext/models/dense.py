"""Dense patch features for ViT vision towers, by composition (no edits or subclasses of open_clip or timm).

One trunk pass yields both outputs the FarSLIP trainer and the OVSS segmentor need
(docs/reference/method.md §4.2 ``forward_v2``, docs/reference/ovss-evaluation.md §1.3):

* ``image_embed``: the standard image embedding, bit-identical to ``model.encode_image`` (the normal
  last block and the tower's own pooling and projection);
* ``patch_tokens``: the last block replaced by a dense-attention variant (``SegEarth`` by default),
  then the tower's per-token map into the embedding space (``ln_post`` + ``proj`` for open_clip ViTs)
  → (B, H·W, D), not normalised; ``cls_token`` is the variant's output at the CLS position (the OVSS
  "global bias" term), or the tower's pooling of the dense tokens when it has no class token.

Blocks ``0..L-2`` run once and are shared by both heads. The tower families (open_clip ViTs, timm
ViT / SigLIP / EVA02 trunks inside open_clip) are adapted in :mod:`farslip_ext.models.towers`.
Inputs of any size work for open_clip ViTs (the positional embedding is bicubically interpolated to the
input's patch grid; at the training size the image embedding equals ``encode_image`` exactly) and for
timm trunks built with ``dynamic_img_size``.

Typical use::

    extractor = DenseFeatureExtractor(model, attn="SegEarth")     # validates the tower once
    out = extractor(images)                                        # DenseOutput
    out.patch_map()                                                # (B, D, H, W)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
from torch import nn

from farslip_ext.models.dense_attn import DenseAttention, build_dense_attention, check_supported_tower
from farslip_ext.models.towers import embed_tokens, interpolate_pos_embed, tower_of

__all__ = ["DenseOutput", "DenseFeatureExtractor", "dense_forward", "embed_tokens", "interpolate_pos_embed"]


@dataclass
class DenseOutput:
    """What :func:`dense_forward` returns (fields are None when not requested)."""

    image_embed: Optional[torch.Tensor]  # (B, D), == model.encode_image(images) at the training size
    patch_tokens: Optional[torch.Tensor]  # (B, H*W, D) projected dense tokens, unnormalised
    cls_token: Optional[torch.Tensor]  # (B, D) dense variant's CLS-position output (or the tower's pooling of
    #                                    the dense tokens when it has no class token), projected
    grid: Tuple[int, int]  # (H, W) token grid

    def patch_map(self) -> torch.Tensor:
        """Dense tokens as a (B, D, H, W) feature map."""
        if self.patch_tokens is None:
            raise ValueError("dense tokens were not computed (return_dense=False)")
        b, n, d = self.patch_tokens.shape
        h, w = self.grid
        return self.patch_tokens.transpose(1, 2).reshape(b, d, h, w)


Rows = Optional[Union[slice, torch.Tensor]]


def _rows(t: torch.Tensor, sel: Rows) -> torch.Tensor:
    if sel is None:
        return t
    return t.index_select(0, sel) if isinstance(sel, torch.Tensor) else t[sel]


def dense_forward(
    model: nn.Module,
    images: torch.Tensor,
    attn: Union[str, dict, DenseAttention] = "SegEarth",
    *,
    ignore_residual: Optional[bool] = True,
    return_image_embed: bool = True,
    return_dense: bool = True,
    check_tower: bool = True,
    embed_rows: Rows = None,
    dense_rows: Rows = None,
) -> DenseOutput:
    """Image embedding and dense patch tokens from one trunk pass.

    Args:
        model: an open_clip CLIP (or its ``visual`` tower) of a supported family
            (:data:`farslip_ext.models.towers.SUPPORTED_FAMILIES`: open_clip ViTs, timm ViT / SigLIP / EVA02
            trunks); any other tower raises :class:`~farslip_ext.models.towers.UnsupportedTowerError`.
        images: (B, 3, H, W) normalised images; any H, W for open_clip ViTs (positional embedding
            interpolated) and timm trunks built with ``dynamic_img_size``.
        attn: dense-attention variant: a registered name (``"SegEarth"``, ``"MaskCLIP"``, ``"SCLIP"``,
            ``"ClearCLIP"``, ``"NACLIP"``, ``"vanilla"``), a ``dict(type=...)`` config or an instance.
        ignore_residual: True (the OVSS reference for every variant): the dense block has no residual and no
            FFN; False keeps both; None: the variant's training-fork rule (MaskCLIP keeps them). Used when
            ``attn`` is a name or a config without its own ``ignore_residual``.
        return_image_embed / return_dense: skip the branch that is not needed.
        check_tower: kept for compatibility; the tower is always identified (a cheap type check).
        embed_rows / dense_rows: compute a branch for these batch rows only (a slice or index tensor);
            the trunk runs once for all rows. Used to encode global images and crops together when only
            some of them need the image embedding or the dense tokens.
    """
    tower = tower_of(model)
    variant = build_dense_attention(attn, ignore_residual=ignore_residual) if return_dense else None
    x, grid = tower.tokens(images)
    tower.check_token_count(x, grid)

    image_embed = None
    if return_image_embed:
        image_embed = tower.image_embed(tower.run_last_block(_rows(x, embed_rows), grid))

    patch_tokens = cls_token = None
    if variant is not None:
        dense = variant(tower.last, _rows(x, dense_rows), grid)
        projected = tower.project_tokens(dense)
        patch_tokens = projected[:, tower.num_prefix_tokens:]
        cls_token = tower.global_token(dense, projected)
    return DenseOutput(image_embed=image_embed, patch_tokens=patch_tokens, cls_token=cls_token, grid=grid)


class DenseFeatureExtractor(nn.Module):
    """An ``nn.Module`` around :func:`dense_forward` that validates the tower when it is built.

    It holds a reference to the model (its parameters are the model's; nothing is copied).
    """

    def __init__(self, model: nn.Module, attn: Union[str, dict, DenseAttention] = "SegEarth",
                 ignore_residual: Optional[bool] = True) -> None:
        super().__init__()
        check_supported_tower(model)
        self.model = model
        self.attn = build_dense_attention(attn, ignore_residual=ignore_residual)

    def forward(self, images: torch.Tensor, return_image_embed: bool = True, return_dense: bool = True) -> DenseOutput:
        return dense_forward(self.model, images, self.attn, return_image_embed=return_image_embed,
                             return_dense=return_dense, check_tower=False)

    def extra_repr(self) -> str:
        return f"attn={self.attn!r}"

