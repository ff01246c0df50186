"""Vision-tower adapters: one interface over the ViT families whose last block can be re-attended.

Dense features (:func:`farslip_ext.models.dense_forward`) need four things from a vision tower: the
tokens entering the last block, that block split into norm / q-k-v / output projection / residual
path (so a :class:`~farslip_ext.models.dense_attn.DenseAttention` variant can replace the mixing),
the standard image embedding, and the per-token map from block outputs to the embedding space.
:func:`tower_of` returns a :class:`Tower` that provides them for:

==========================================  ==============================================================
family                                      examples
==========================================  ==============================================================
open_clip ``VisionTransformer``             OpenAI / OpenCLIP ViT-B/32, B/16, L/14, L/14@336, farslip-*
timm ``VisionTransformer`` trunk            SigLIP, SigLIP 2 (no class token, attention pooling ``map``),
(open_clip ``TimmModel``)                   timm CLIP ViTs (class token)
timm ``Eva`` trunk (``TimmModel``)          EVA02-CLIP (rotary position embedding, SwiGLU)
==========================================  ==============================================================

The trunk runs through the towers' public ``forward_intermediates`` (stopping after block ``L-2``);
open_clip ViTs at a grid other than their own go through an interpolated positional table instead
(:func:`embed_tokens`). The image embedding follows the towers' own pooling
exactly (bit-identical to ``encode_image`` at the training size).

Per-token map: ``ln_post`` + ``proj`` (open_clip); ``norm`` + the pooling's value path + ``fc_norm`` +
``head`` + the adapter head (timm). An attention pool (SigLIP's ``map``) applied to a single token
returns that token's value path (one key: its softmax weight is 1), which is how each token is
mapped; the CLS-position output of a tower without a class token is the tower's own pooling of the
dense tokens.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from farslip_ext.compat import vit_embeds, vit_pool
from farslip_ext.errors import FarSLIPError

__all__ = [
    "SUPPORTED_FAMILIES",
    "UnsupportedTowerError",
    "LastBlock",
    "Tower",
    "OpenCLIPViTTower",
    "TimmViTTower",
    "tower_of",
    "vision_tower",
    "embed_tokens",
    "interpolate_pos_embed",
]

SUPPORTED_FAMILIES = (
    "open_clip VisionTransformer (OpenAI/OpenCLIP ViT-B/32, B/16, L/14, L/14@336, farslip-*) built from "
    "ResidualAttentionBlock with nn.MultiheadAttention, without an attentional pooler",
    "timm VisionTransformer trunks inside open_clip's TimmModel (class token or none; token/avg/map pooling: "
    "SigLIP, SigLIP 2, timm CLIP ViTs) built from timm Block + Attention",
    "timm Eva trunks inside open_clip's TimmModel (EVA02-CLIP, rotary positions) built from EvaBlock + EvaAttention",
)


class UnsupportedTowerError(FarSLIPError, TypeError):
    """A vision tower that cannot give dense tokens (a ResNet, a ConvNeXt, an unknown block type)."""


def _unsupported(what: str) -> UnsupportedTowerError:
    return UnsupportedTowerError(
        f"dense features need a ViT vision tower, but {what}. Supported families: " + "; ".join(SUPPORTED_FAMILIES)
        + ". Convolutional towers (open_clip ModifiedResNet, timm ResNet/ConvNeXt) have no token sequence whose "
          "last attention could be replaced: pick a ViT architecture (e.g. model.name='ViT-B-16-quickgelu').")


def vision_tower(model: nn.Module) -> nn.Module:
    """``model.visual`` for a CLIP, the module itself for a bare tower."""
    return getattr(model, "visual", model)


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, h*hd) -> (B, h, T, hd)."""
    b, n, _ = t.shape
    return t.view(b, n, heads, -1).transpose(1, 2)


def _merge(mixed: torch.Tensor) -> torch.Tensor:
    """(B, h, T, hd) -> (B, T, h*hd)."""
    b, h, n, d = mixed.shape
    return mixed.transpose(1, 2).reshape(b, n, h * d)


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
    """Patch embedding + CLS + positional embedding + ``ln_pre`` of an open_clip ViT, for any input size.

    At the tower's own grid this is open_clip's own embedding (so results match ``encode_image``
    exactly); elsewhere the positional table is resized bicubically.
    """
    ph, pw = visual.patch_size if isinstance(visual.patch_size, tuple) else (visual.patch_size,) * 2
    grid = (images.shape[-2] // ph, images.shape[-1] // pw)
    images = images.to(visual.conv1.weight.dtype)
    if grid == tuple(visual.grid_size):
        return vit_embeds(visual, images), grid
    x = visual.conv1(images)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1).to(x.dtype)
    x = torch.cat([cls, x], dim=1)
    x = x + interpolate_pos_embed(visual.positional_embedding, tuple(visual.grid_size), grid).to(x.dtype)
    x = visual.patch_dropout(x)
    return visual.ln_pre(x), grid


# ================================================================================================ last blocks

def _timm_attn_output(attn: nn.Module, mixed: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A timm attention's output path after the attention mix: optional norm and gate, projection, dropout."""
    x = attn.norm(_merge(mixed))
    gate = getattr(attn, "gate", None)
    if gate is not None:
        x = x * gate(y).sigmoid()
    return attn.proj_drop(attn.proj(x))

class LastBlock:
    """The last transformer block of a tower, split for the dense-attention variants.

    ``variant(last, x, grid)`` computes ``y = norm_in(x)``, ``q, k, v = qkv(y, grid)`` (per head, as the
    block's own attention computes them: q/k norms, rotary positions), mixes them, and returns
    ``o = attn_output(mixed, y)`` or, with the residual kept, ``residual(x, o)``. ``forward(x, grid)``
    is the unmodified block. All tokens are batch-first (B, T, width).
    """

    def __init__(self, block: nn.Module, num_heads: int) -> None:
        self.block = block
        self.num_heads = int(num_heads)

    def norm_in(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def qkv(self, y: torch.Tensor, grid: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    def attn_output(self, mixed: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def residual(self, x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class OpenCLIPLastBlock(LastBlock):
    """open_clip ``ResidualAttentionBlock`` with ``nn.MultiheadAttention`` (``in_proj``, ``out_proj``)."""

    def __init__(self, block: nn.Module, batch_first: bool = True) -> None:
        super().__init__(block, block.attn.num_heads)
        self.batch_first = batch_first

    def norm_in(self, x):
        return self.block.ln_1(x)

    def qkv(self, y, grid):
        attn = self.block.attn
        qkv = F.linear(y, attn.in_proj_weight, attn.in_proj_bias)
        b, n, _ = y.shape
        q, k, v = qkv.view(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def attn_output(self, mixed, y):
        return self.block.attn.out_proj(_merge(mixed))

    def residual(self, x, o):
        blk = self.block
        x = x + blk.ls_1(o)
        return x + blk.ls_2(blk.mlp(blk.ln_2(x)))

    def forward(self, x, grid):
        if not self.batch_first:
            return self.block(x.transpose(0, 1)).transpose(0, 1)
        return self.block(x)


class TimmLastBlock(LastBlock):
    """timm ``Block`` with timm ``Attention`` (fused ``qkv``, optional q/k norms, scale norm, gate)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__(block, block.attn.num_heads)

    def norm_in(self, x):
        return self.block.norm1(x)

    def qkv(self, y, grid):
        attn = self.block.attn
        b, n, _ = y.shape
        q, k, v = attn.qkv(y).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        return attn.q_norm(q), attn.k_norm(k), v

    def attn_output(self, mixed, y):
        return _timm_attn_output(self.block.attn, mixed, y)

    def residual(self, x, o):
        blk = self.block
        x = x + blk.drop_path1(blk.ls1(o))
        return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))

    def forward(self, x, grid):
        return self.block(x)


class EvaLastBlock(LastBlock):
    """timm ``EvaBlock`` with ``EvaAttention`` (fused or separate q/k/v, rotary positions on the patches)."""

    def __init__(self, block: nn.Module, rope: Callable[[Tuple[int, int]], Optional[torch.Tensor]]) -> None:
        super().__init__(block, block.attn.num_heads)
        self.rope = rope

    def norm_in(self, x):
        return self.block.norm1(x)

    def qkv(self, y, grid):
        from timm.layers import apply_rot_embed_cat

        attn = self.block.attn
        b, n, _ = y.shape
        if attn.qkv is not None:
            if attn.q_bias is None:
                qkv = attn.qkv(y)
            else:
                bias = torch.cat((attn.q_bias, attn.k_bias, attn.v_bias))
                qkv = attn.qkv(y) + bias if attn.qkv_bias_separate else F.linear(y, attn.qkv.weight, bias)
            q, k, v = qkv.reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        else:
            q = _heads(attn.q_proj(y), self.num_heads)
            k = _heads(attn.k_proj(y), self.num_heads)
            v = _heads(attn.v_proj(y), self.num_heads)
        q, k = attn.q_norm(q), attn.k_norm(k)
        rope = self.rope(grid)
        if rope is not None:
            npt = attn.num_prefix_tokens
            half = getattr(attn, "rotate_half", False)
            q = torch.cat([q[:, :, :npt], apply_rot_embed_cat(q[:, :, npt:], rope, half=half)], dim=2).type_as(v)
            k = torch.cat([k[:, :, :npt], apply_rot_embed_cat(k[:, :, npt:], rope, half=half)], dim=2).type_as(v)
        return q, k, v

    def attn_output(self, mixed, y):
        return _timm_attn_output(self.block.attn, mixed, y)

    def residual(self, x, o):
        blk = self.block
        if blk.gamma_1 is not None:
            o = blk.gamma_1 * o
        x = x + blk.drop_path1(o)
        m = blk.mlp(blk.norm2(x))
        if blk.gamma_2 is not None:
            m = blk.gamma_2 * m
        return x + blk.drop_path2(m)

    def forward(self, x, grid):
        return self.block(x, rope=self.rope(grid))


# ===================================================================================================== towers
class Tower:
    """What dense features need from one vision tower (see the module docstring)."""

    family: str = "?"

    def __init__(self, visual: nn.Module, last: LastBlock, num_prefix_tokens: int, has_class_token: bool,
                 patch_size: Tuple[int, int]) -> None:
        self.visual = visual
        self.last = last
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.has_class_token = bool(has_class_token)
        self.patch_size = (int(patch_size[0]), int(patch_size[1]))

    def grid_of(self, images: torch.Tensor) -> Tuple[int, int]:
        return images.shape[-2] // self.patch_size[0], images.shape[-1] // self.patch_size[1]

    @property
    def grad_checkpointing(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def tokens(self, images: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Tokens entering the last block (B, prefix + H·W, width), batch-first, and the grid (H, W)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def run_last_block(self, x: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """The unmodified last block (gradient checkpointed when the tower is)."""
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(self.last.forward, x, grid, use_reentrant=False)
        return self.last.forward(x, grid)

    def image_embed(self, x_last: torch.Tensor) -> torch.Tensor:
        """The image embedding from the last block's output (== ``encode_image`` at the training size)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def project_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Every token of a last-block output mapped into the embedding space, (B, T, D)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def global_token(self, dense: torch.Tensor, projected: torch.Tensor) -> torch.Tensor:
        """The dense variant's global token (B, D): the CLS position, or the tower's pooling of ``dense``."""
        if self.has_class_token:
            return projected[:, 0]
        return self.pool_dense(dense)

    def pool_dense(self, dense: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_token_count(self, x: torch.Tensor, grid: Tuple[int, int]) -> None:
        want = self.num_prefix_tokens + grid[0] * grid[1]
        if x.shape[1] != want:
            raise ValueError(f"the {self.family} tower gave {x.shape[1]} tokens for a {grid[0]}x{grid[1]} grid "
                             f"(+{self.num_prefix_tokens} prefix) = {want}: patch dropout is active; dense features "
                             f"need every token (switch patch dropout off, docs/reference/method.md §7.16)")


class OpenCLIPViTTower(Tower):
    """open_clip ``VisionTransformer``."""

    family = "open_clip VisionTransformer"

    def __init__(self, visual: nn.Module) -> None:
        tr = visual.transformer
        self.batch_first = bool(getattr(tr, "batch_first", True))
        super().__init__(visual, OpenCLIPLastBlock(tr.resblocks[-1], self.batch_first), 1, True,
                         tuple(visual.patch_size) if isinstance(visual.patch_size, (tuple, list))
                         else (visual.patch_size,) * 2)

    @property
    def grad_checkpointing(self) -> bool:
        return bool(getattr(self.visual.transformer, "grad_checkpointing", False))

    def tokens(self, images):
        visual = self.visual
        grid = self.grid_of(images)
        images = images.to(visual.conv1.weight.dtype)
        blocks = visual.transformer.resblocks
        if grid == tuple(visual.grid_size) and len(blocks) >= 2:
            out = visual.forward_intermediates(images, indices=[len(blocks) - 2], stop_early=True,
                                               intermediates_only=True, output_fmt="NLC", output_extra_tokens=True)
            x = torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]], dim=1)
            return x, grid
        x, grid = embed_tokens(visual, images)
        if not self.batch_first:
            x = x.transpose(0, 1)
        for blk in blocks[:-1]:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(blk, x, None, None, None, use_reentrant=False)
            else:
                x = blk(x)
        return (x if self.batch_first else x.transpose(0, 1)), grid

    def image_embed(self, x_last):
        pooled, _ = vit_pool(self.visual, x_last)
        return pooled @ self.visual.proj if self.visual.proj is not None else pooled

    def project_tokens(self, tokens):
        tokens = self.visual.ln_post(tokens)
        return tokens @ self.visual.proj if self.visual.proj is not None else tokens


class TimmViTTower(Tower):
    """A timm ``VisionTransformer`` or ``Eva`` trunk inside open_clip's ``TimmModel``."""

    def __init__(self, visual: nn.Module, last: LastBlock, family: str) -> None:
        trunk = visual.trunk
        self.trunk = trunk
        self.family = family
        super().__init__(visual, last, trunk.num_prefix_tokens, getattr(trunk, "cls_token", None) is not None,
                         tuple(trunk.patch_embed.patch_size))

    @property
    def grad_checkpointing(self) -> bool:
        return bool(getattr(self.trunk, "grad_checkpointing", False))

    def tokens(self, images):
        trunk = self.trunk
        grid = self.grid_of(images)
        if not getattr(trunk, "dynamic_img_size", False) and grid != tuple(trunk.patch_embed.grid_size):
            raise ValueError(f"this {self.family} was built for {tuple(trunk.patch_embed.img_size)} inputs and "
                             f"cannot run at {tuple(images.shape[-2:])} (its timm model has dynamic_img_size=False); "
                             f"resize the images to the tower's image size")
        images = images.to(trunk.patch_embed.proj.weight.dtype)
        prefix = self.num_prefix_tokens
        out = trunk.forward_intermediates(images, indices=[len(trunk.blocks) - 2], return_prefix_tokens=prefix > 0,
                                          norm=False, stop_early=True, output_fmt="NLC", intermediates_only=True)
        item = out[0]
        x = torch.cat([item[1], item[0]], dim=1) if prefix > 0 else item
        return x, grid

    def image_embed(self, x_last):
        return self.visual.head(self.trunk.forward_head(self.trunk.norm(x_last)))

    def project_tokens(self, tokens):
        trunk = self.trunk
        t = trunk.norm(tokens)
        pool = getattr(trunk, "attn_pool", None)
        if pool is not None:  # the pooling's value path, one token at a time (a single key: weight 1)
            b, n, c = t.shape
            t = pool(t.reshape(b * n, 1, c)).reshape(b, n, -1)
        t = trunk.head_drop(trunk.fc_norm(t))
        return self.visual.head(trunk.head(t))

    def pool_dense(self, dense):
        return self.visual.head(self.trunk.forward_head(self.trunk.norm(dense)))


def _eva_rope(trunk: nn.Module) -> Callable[[Tuple[int, int]], Optional[torch.Tensor]]:
    """The rotary embedding Eva's own forward uses for a grid (``Eva._pos_embed``'s rule, public modules only)."""

    def rope(grid: Tuple[int, int]) -> Optional[torch.Tensor]:
        r = getattr(trunk, "rope", None)
        if r is None:
            return None
        if trunk.dynamic_img_size:
            return r.get_embed(shape=tuple(grid))
        if hasattr(r, "feat_shape"):
            return r.get_embed()
        return r.get_embed(shape=tuple(trunk.patch_embed.grid_size))

    return rope


def _timm_tower(visual: nn.Module) -> Tower:
    from timm.layers import Attention, AttentionPoolLatent
    from timm.models.eva import Eva, EvaAttention, EvaBlock
    from timm.models.vision_transformer import Block, VisionTransformer

    trunk = visual.trunk
    name = type(trunk).__name__
    if not isinstance(trunk, (VisionTransformer, Eva)):
        raise _unsupported(f"the open_clip TimmModel holds a timm {name}")
    blocks = trunk.blocks
    if len(blocks) < 2:
        raise _unsupported(f"the timm {name} has {len(blocks)} block(s); at least 2 are needed")
    pool = getattr(trunk, "attn_pool", None)
    if pool is not None and (not isinstance(pool, AttentionPoolLatent) or pool.pos_embed is not None
                             or pool.pool not in ("token", "avg")):
        raise _unsupported(f"the timm {name} pools with {type(pool).__name__} (only AttentionPoolLatent without "
                           f"its own positional table, pool 'token'/'avg', is supported)")
    last = blocks[-1]
    if isinstance(trunk, Eva):
        if type(last) is not EvaBlock or type(last.attn) is not EvaAttention:
            raise _unsupported(f"the timm Eva's last block is {type(last).__name__}/{type(last.attn).__name__}")
        if getattr(trunk, "rope_mixed", False):
            raise _unsupported("the timm Eva uses depth-dependent ('mixed') rotary embeddings")
        if getattr(trunk, "patch_drop", None) is not None:
            raise _unsupported("the timm Eva was built with patch dropout (tokens are dropped with their rotary "
                               "positions); build it with patch_drop_rate=0")
        return TimmViTTower(visual, EvaLastBlock(last, _eva_rope(trunk)), "timm Eva in open_clip TimmModel")
    if type(last) is not Block or type(last.attn) is not Attention:
        raise _unsupported(f"the timm VisionTransformer's last block is {type(last).__name__}/"
                           f"{type(getattr(last, 'attn', None)).__name__}")
    return TimmViTTower(visual, TimmLastBlock(last), "timm VisionTransformer in open_clip TimmModel")


def tower_of(model: nn.Module) -> Tower:
    """The :class:`Tower` adapter of a CLIP (or of its ``visual``); :class:`UnsupportedTowerError` otherwise."""
    from open_clip.timm_model import TimmModel
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    visual = vision_tower(model)
    name = type(visual).__name__
    if isinstance(visual, VisionTransformer):
        if getattr(visual, "attn_pool", None) is not None:
            raise _unsupported(f"this {name} has an attentional pooler (CoCa-style)")
        last = visual.transformer.resblocks[-1]
        if type(last) is not ResidualAttentionBlock or not isinstance(last.attn, nn.MultiheadAttention):
            raise _unsupported(f"the last block of this {name} is a {type(last).__name__} (custom blocks with "
                               f"qk-norm/scaled-cosine attention are not supported)")
        return OpenCLIPViTTower(visual)
    if isinstance(visual, TimmModel):
        return _timm_tower(visual)
    raise _unsupported(f"the vision tower is a {name}")
