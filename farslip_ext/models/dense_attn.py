"""Dense-attention variants for the last ViT block (registered in ``DENSE_ATTN``).

Every variant replaces the attention of the last block of an OpenCLIP vision tower to produce
spatially faithful patch tokens (ovss-protocol.md §1.3, farslip-method.md §4.1). With ``y = ln_1(x)``
and per-head ``q, k, v`` from the block's ``in_proj``, ``s = head_dim^-1/2``:

============  ==========================================================  ===================
name          attention weights A (row softmax over all 1+N tokens)       reference
============  ==========================================================  ===================
vanilla       softmax(q kᵀ s)                                             CLIP
MaskCLIP      identity (output = v)                                       MaskCLIP
SCLIP         softmax(q qᵀ s) + softmax(k kᵀ s)                           SCLIP
ClearCLIP     softmax(q qᵀ s)                                             ClearCLIP
SegEarth      softmax(q qᵀ s) + softmax(k kᵀ s) + softmax(v vᵀ s)         SegEarth-OV (default)
NACLIP        softmax(k kᵀ s + Gaussian neighbourhood prior, σ=1)         NACLIP
============  ==========================================================  ===================

Rows of the summed variants are *not* renormalised (reference behaviour). The block output is then
``o = out_proj(A v)``; with ``ignore_residual=True`` (the reference default: no residual, no FFN) the
block returns ``o``, otherwise ``x + o + mlp(ln_2(x + o))``.

Each softmax-then-multiply is one ``scaled_dot_product_attention`` call, so the fused SDPA kernels
serve every variant; MaskCLIP needs no attention at all.

Adding a variant is one small class::

    @DENSE_ATTN.register_module(name=["MyAttn", "MyAttention"])
    class MyAttention(DenseAttention):
        def mix(self, q, k, v, grid):
            return F.scaled_dot_product_attention(k, q, v)
"""
from __future__ import annotations

import functools
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from farslip_ext.registry import DENSE_ATTN

__all__ = [
    "DenseAttention",
    "VanillaAttention",
    "MaskCLIPAttention",
    "SCLIPAttention",
    "ClearCLIPAttention",
    "SegEarthAttention",
    "NACLIPAttention",
    "SUPPORTED_TOWERS",
    "check_supported_tower",
    "naclip_prior",
    "build_dense_attention",
]

SUPPORTED_TOWERS = (
    "open_clip VisionTransformer towers built from ResidualAttentionBlock with nn.MultiheadAttention "
    "(OpenAI/OpenCLIP ViT-*, the farslip-* architectures), without an attentional pooler"
)


def check_supported_tower(visual: nn.Module) -> None:
    """Raise a clear error for vision towers the dense variants cannot serve (timm, ResNet, CoCa ...)."""
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    name = type(visual).__name__
    if not isinstance(visual, VisionTransformer):
        raise TypeError(f"dense attention variants need {SUPPORTED_TOWERS}; got a {name} vision tower. "
                        f"timm towers (vision_cfg.timm_model_name) and ModifiedResNet are not supported.")
    if getattr(visual, "attn_pool", None) is not None:
        raise TypeError(f"dense attention variants need {SUPPORTED_TOWERS}; this {name} has an attentional pooler.")
    last = visual.transformer.resblocks[-1]
    if not isinstance(last, ResidualAttentionBlock) or not isinstance(last.attn, nn.MultiheadAttention):
        raise TypeError(f"dense attention variants need {SUPPORTED_TOWERS}; the last block is a "
                        f"{type(last).__name__} (custom blocks with qk-norm/scaled-cosine attention are not supported).")


class DenseAttention:
    """Base class: computes the modified last block. Subclasses implement :meth:`mix`.

    Args:
        ignore_residual: if True (reference default), the block output is the attention output only
            (no residual, no FFN); otherwise ``x + o + mlp(ln_2(x + o))``.
    """

    name: str = "base"

    def __init__(self, ignore_residual: bool = True) -> None:
        self.ignore_residual = ignore_residual

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """Return ``A v`` for per-head ``q, k, v`` of shape (B, heads, 1+N, head_dim)."""
        raise NotImplementedError

    def __call__(self, block: nn.Module, x: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """Apply the modified ``block`` to batch-first tokens ``x`` (B, 1+N, width)."""
        attn: nn.MultiheadAttention = block.attn
        b, n, width = x.shape
        heads = attn.num_heads
        hd = width // heads
        y = block.ln_1(x)
        qkv = F.linear(y, attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = qkv.view(b, n, 3, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)  # each (B, h, N, hd)
        out = self.mix(q, k, v, grid)
        out = out.transpose(1, 2).reshape(b, n, width)
        out = attn.out_proj(out)
        if self.ignore_residual:
            return out
        ls_1 = getattr(block, "ls_1", nn.Identity())
        ls_2 = getattr(block, "ls_2", nn.Identity())
        x = x + ls_1(out)
        return x + ls_2(block.mlp(block.ln_2(x)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ignore_residual={self.ignore_residual})"


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ / sqrt(hd)) v


@DENSE_ATTN.register_module(name=["vanilla", "VanillaAttention"])
class VanillaAttention(DenseAttention):
    """softmax(q kᵀ s) — the unmodified attention (with ``ignore_residual`` as chosen)."""

    name = "vanilla"

    def mix(self, q, k, v, grid):
        return _sdpa(q, k, v)


@DENSE_ATTN.register_module(name=["MaskCLIP", "MaskCLIPAttention"])
class MaskCLIPAttention(DenseAttention):
    """Identity attention: each token keeps its own value vector (MaskCLIP)."""

    name = "MaskCLIP"

    def mix(self, q, k, v, grid):
        return v


@DENSE_ATTN.register_module(name=["SCLIP", "SCLIPAttention"])
class SCLIPAttention(DenseAttention):
    """softmax(q qᵀ s) + softmax(k kᵀ s) (SCLIP's correlative self-attention)."""

    name = "SCLIP"

    def mix(self, q, k, v, grid):
        return _sdpa(q, q, v) + _sdpa(k, k, v)


@DENSE_ATTN.register_module(name=["ClearCLIP", "ClearCLIPAttention"])
class ClearCLIPAttention(DenseAttention):
    """softmax(q qᵀ s) (ClearCLIP)."""

    name = "ClearCLIP"

    def mix(self, q, k, v, grid):
        return _sdpa(q, q, v)


@DENSE_ATTN.register_module(name=["SegEarth", "SegEarthAttention"])
class SegEarthAttention(DenseAttention):
    """softmax(q qᵀ s) + softmax(k kᵀ s) + softmax(v vᵀ s), rows not renormalised.

    The reference default of FarSLIP training (§1.2) and of the FarSLIP-OVSS evaluation (§1.7).
    """

    name = "SegEarth"

    def mix(self, q, k, v, grid):
        return _sdpa(q, q, v) + _sdpa(k, k, v) + _sdpa(v, v, v)


@functools.lru_cache(maxsize=32)
def _naclip_prior_cpu(h: int, w: int, std: float) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1)
    d2 = torch.cdist(pos, pos) ** 2
    prior = torch.zeros(h * w + 1, h * w + 1, dtype=torch.float64)
    prior[1:, 1:] = torch.exp(-d2 / (2.0 * std * std))
    return prior.to(torch.float32)


def naclip_prior(grid: Tuple[int, int], std: float = 1.0, device=None, dtype=torch.float32) -> torch.Tensor:
    """NACLIP's additive neighbourhood prior: ω_ij = exp(−‖p_i − p_j‖² / 2σ²) between patch positions
    on the (H, W) grid; the CLS row and column are zero. Shape (1+N, 1+N)."""
    return _naclip_prior_cpu(int(grid[0]), int(grid[1]), float(std)).to(device=device, dtype=dtype)


@DENSE_ATTN.register_module(name=["NACLIP", "NACLIPAttention"])
class NACLIPAttention(DenseAttention):
    """softmax(k kᵀ s + ω) with ω the Gaussian neighbourhood prior (σ = ``std``, reference 1.0)."""

    name = "NACLIP"

    def __init__(self, ignore_residual: bool = True, std: float = 1.0) -> None:
        super().__init__(ignore_residual)
        self.std = std

    def mix(self, q, k, v, grid):
        bias = naclip_prior(grid, self.std, device=k.device, dtype=k.dtype)
        return F.scaled_dot_product_attention(k, k, v, attn_mask=bias)


def build_dense_attention(spec, ignore_residual: bool = True) -> DenseAttention:
    """A variant from a name (``"SegEarth"``), a ``dict(type=..., ...)`` config or an instance."""
    if isinstance(spec, DenseAttention):
        return spec
    if isinstance(spec, str):
        spec = dict(type=spec)
    if isinstance(spec, dict):
        spec = dict(spec)
        spec.setdefault("ignore_residual", ignore_residual)
        return DENSE_ATTN.build(spec)
    raise TypeError(f"dense attention must be a name, a dict(type=...) or a DenseAttention; got {spec!r}")

