"""Dense-attention variants for the last ViT block (registered in ``DENSE_ATTN``).

Every variant replaces the attention of the last block of a ViT vision tower (any family of
:mod:`farslip_ext.models.towers`) to produce spatially faithful patch tokens (docs/reference/ovss-evaluation.md §1.3,
docs/reference/method.md §4.1). With ``y = norm_1(x)`` and per-head ``q, k, v`` as the block's own attention
computes them (its q/k norms and rotary positions included), ``s = head_dim^-1/2``:

============  ==========================================================  ===================
name          attention weights A (row softmax over all T tokens)         reference
============  ==========================================================  ===================
vanilla       softmax(q kᵀ s)                                             CLIP
MaskCLIP      identity (output = v)                                       MaskCLIP
SCLIP         softmax(q qᵀ s) + softmax(k kᵀ s)                           SCLIP
ClearCLIP     softmax(q qᵀ s)                                             ClearCLIP
SegEarth      softmax(q qᵀ s) + softmax(k kᵀ s) + softmax(v vᵀ s)         SegEarth-OV (default)
NACLIP        softmax(k kᵀ s + Gaussian neighbourhood prior, σ=1)         NACLIP
============  ==========================================================  ===================

T = prefix tokens (CLS, registers) + H·W patches. Rows of the summed variants are *not* renormalised
(reference behaviour). The block output is then ``o = out_proj(A v)``; with ``ignore_residual=True``
(no residual, no FFN) the block returns ``o``, otherwise ``x + o + mlp(norm_2(x + o))``.

Which residual rule is the reference depends on the place (docs/reference/method.md §4.1,
docs/reference/ovss-evaluation.md §1.3): the OVSS code (RS-OVSS, SegEarth-OV; ``FarSLIPSeg``) applies ``ignore_residual=True`` to every
variant; the FarSLIP *training* fork's ``--last-attn-type MaskCLIP`` keeps the residual and the MLP
(``x + out_proj(v(ln_1 x))``, then ``+ mlp(ln_2 ·)``) and its SegEarth drops both. Each variant states
its training-fork rule in :attr:`DenseAttention.training_ignore_residual`; ``ignore_residual=None``
selects it (what ``FarSLIPTask`` does).

Each softmax-then-multiply is one ``scaled_dot_product_attention`` call, so the fused SDPA kernels
serve every variant; MaskCLIP needs no attention at all.

Adding a variant is one small class::

    @DENSE_ATTN.register_module(name=["MyAttn", "MyAttention"])
    class MyAttention(DenseAttention):
        def mix(self, q, k, v, grid):
            return F.scaled_dot_product_attention(k, q, v)

A variant that is not one of the six above should also define ``reference_weights(q, k, v, grid)``,
the explicit (T, T) attention matrix of ONE head (loops or plain matrix algebra, no SDPA): the generic
test (tests/models/test_dense_variants.py) checks ``mix`` against it for every registered variant.
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from farslip_ext.models.towers import SUPPORTED_FAMILIES, LastBlock, OpenCLIPLastBlock, tower_of, vision_tower
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

#: The supported tower families, in words (:data:`farslip_ext.models.towers.SUPPORTED_FAMILIES`).
SUPPORTED_TOWERS = "; ".join(SUPPORTED_FAMILIES)


def check_supported_tower(visual: nn.Module) -> None:
    """Raise :class:`~farslip_ext.models.towers.UnsupportedTowerError` (a ``TypeError``) naming the
    supported families for a tower the dense variants cannot serve (ResNet, ConvNeXt, CoCa, custom blocks).

    A supported timm tower (open_clip ``TimmModel``) also gets the attribute ``patch_size`` that open_clip's
    own ViT has (the trunk's patch size), so callers read it the same way on every supported tower.
    """
    tower = tower_of(visual)
    vis = vision_tower(visual)
    if not hasattr(vis, "patch_size"):
        vis.patch_size = tower.patch_size


class DenseAttention:
    """Base class: computes the modified last block. Subclasses implement :meth:`mix`.

    Args:
        ignore_residual: True: the block output is the attention output only (no residual, no FFN; the
            OVSS reference for every variant and the training fork's SegEarth); False: ``x + o`` then
            ``+ mlp(ln_2(x + o))`` (the training fork's MaskCLIP). ``None``: this variant's training-fork
            default, :attr:`training_ignore_residual`.
    """

    name: str = "base"
    #: What the FarSLIP training fork does for this variant (docs/reference/method.md §4.1): True = no residual, no MLP.
    training_ignore_residual: bool = True

    def __init__(self, ignore_residual: Optional[bool] = True) -> None:
        self.ignore_residual = type(self).training_ignore_residual if ignore_residual is None else bool(ignore_residual)

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """Return ``A v`` for per-head ``q, k, v`` of shape (B, heads, T, head_dim); T = prefix + H·W tokens."""
        raise NotImplementedError

    def __call__(self, last: Union[LastBlock, nn.Module], x: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """Apply the modified last block to batch-first tokens ``x`` (B, T, width).

        ``last`` is a :class:`~farslip_ext.models.towers.LastBlock` (from ``tower_of(model).last``) or an
        open_clip ``ResidualAttentionBlock``.
        """
        if not isinstance(last, LastBlock):
            last = OpenCLIPLastBlock(last)
        y = last.norm_in(x)
        q, k, v = last.qkv(y, grid)
        out = last.attn_output(self.mix(q, k, v, grid), y)
        if self.ignore_residual:
            return out
        return last.residual(x, out)

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
    #: the training fork keeps residual + MLP for MaskCLIP (docs/reference/method.md §4.1)
    training_ignore_residual = False

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

    The reference default of FarSLIP training (docs/reference/method.md §1.2) and of the FarSLIP-OVSS evaluation (docs/reference/ovss-evaluation.md §1.7).
    """

    name = "SegEarth"

    def mix(self, q, k, v, grid):
        return _sdpa(q, q, v) + _sdpa(k, k, v) + _sdpa(v, v, v)


@functools.lru_cache(maxsize=32)
def _naclip_prior_cpu(h: int, w: int, std: float, prefix: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1)
    d2 = torch.cdist(pos, pos) ** 2
    prior = torch.zeros(h * w + prefix, h * w + prefix, dtype=torch.float64)
    prior[prefix:, prefix:] = torch.exp(-d2 / (2.0 * std * std))
    return prior.to(torch.float32)


def naclip_prior(grid: Tuple[int, int], std: float = 1.0, device=None, dtype=torch.float32,
                 prefix: int = 1) -> torch.Tensor:
    """NACLIP's additive neighbourhood prior: ω_ij = exp(−‖p_i − p_j‖² / 2σ²) between patch positions
    on the (H, W) grid; the rows and columns of the ``prefix`` tokens (CLS, registers) are zero.
    Shape (prefix+N, prefix+N)."""
    return _naclip_prior_cpu(int(grid[0]), int(grid[1]), float(std), int(prefix)).to(device=device, dtype=dtype)


@DENSE_ATTN.register_module(name=["NACLIP", "NACLIPAttention"])
class NACLIPAttention(DenseAttention):
    """softmax(k kᵀ s + ω) with ω the Gaussian neighbourhood prior (σ = ``std``, reference 1.0)."""

    name = "NACLIP"

    def __init__(self, ignore_residual: Optional[bool] = True, std: float = 1.0) -> None:
        super().__init__(ignore_residual)
        self.std = std

    def mix(self, q, k, v, grid):
        prefix = k.shape[-2] - int(grid[0]) * int(grid[1])
        bias = naclip_prior(grid, self.std, device=k.device, dtype=k.dtype, prefix=prefix)
        return F.scaled_dot_product_attention(k, k, v, attn_mask=bias)


def build_dense_attention(spec, ignore_residual: Optional[bool] = True) -> DenseAttention:
    """A variant from a name (``"SegEarth"``), a ``dict(type=..., ...)`` config or an instance.

    ``ignore_residual`` applies when the spec does not set it; ``None`` means the variant's training-fork
    rule (:attr:`DenseAttention.training_ignore_residual`). An instance is returned as it is.
    """
    if isinstance(spec, DenseAttention):
        return spec
    if isinstance(spec, str):
        spec = dict(type=spec)
    if isinstance(spec, dict):
        spec = dict(spec)
        spec.setdefault("ignore_residual", ignore_residual)
        return DENSE_ATTN.build(spec)
    raise TypeError(f"dense attention must be a name, a dict(type=...) or a DenseAttention; got {spec!r}")
