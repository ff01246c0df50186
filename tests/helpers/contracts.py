"""Generic contract checks every registered loss, head and dense-attention variant must pass.

Used by the parametrised tests (tests/losses/test_loss_contract.py, tests/heads/test_head_contract.py,
tests/models/test_dense_variants.py) over ``REGISTRY.names()``, and by the plugin test on a third-party
plugin's components. The dense-variant reference is an explicit per-image, per-head loop over the
block's weights; the attention matrix of each built-in variant is written out here, independently of
farslip_ext (a third-party variant supplies ``reference_weights(q, k, v, grid)``).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Mapping

import torch
import torch.nn.functional as F

from farslip_ext.train.components import build_loss_entry
from farslip_ext.train.features import call_component, check_feature_names


# ============================================================================================== losses
def _float_leaves(feats: Mapping[str, Any], names) -> Dict[str, torch.Tensor]:
    return {n: feats[n] for n in names if isinstance(feats[n], torch.Tensor) and feats[n].requires_grad}


def check_loss(name: str, registry) -> None:
    """The loss contract for the registered ``name`` (see farslip_ext/losses/base.py)."""
    cls = registry.get(name)
    assert hasattr(cls, "example_inputs"), f"{name}: a training loss provides example_inputs() (FeatureLoss has one)"
    kwargs, feats = cls.example_inputs()
    loss = cls(**kwargs)
    names = check_feature_names(name, loss.required_features)
    assert names, f"{name} declares no feature"
    out = call_component(loss, feats, names)  # only the declared features are passed
    assert isinstance(out, Mapping), f"{name} returned {type(out).__name__}"
    terms = {k: v for k, v in out.items() if k.endswith("_loss")}
    assert terms, f"{name} returned no '*_loss' term: {list(out)}"
    for k, v in terms.items():
        assert isinstance(v, torch.Tensor) and v.dim() == 0 and v.is_floating_point(), (name, k, v)
        assert torch.isfinite(v), (name, k, v)
    for k, v in out.items():
        if not k.endswith("_loss"):
            assert isinstance(v, (int, float)) or (isinstance(v, torch.Tensor) and v.numel() == 1), (name, k)
    total = sum(terms.values())
    leaves = _float_leaves(feats, names)
    params = [p for p in getattr(loss, "parameters", lambda: [])() if p.requires_grad]
    grads = torch.autograd.grad(total, list(leaves.values()) + params, allow_unused=True)
    inputs_moved = [n for n, g in zip(leaves, grads[:len(leaves)]) if g is not None and g.abs().sum() > 0]
    assert inputs_moved, f"{name}: the loss does not depend on any of its declared features {list(leaves)}"
    for p, g in zip(params, grads[len(leaves):]):
        assert g is not None, f"{name}: a learnable parameter of shape {tuple(p.shape)} gets no gradient"
    # the same inputs give the same value (no hidden state between calls)
    again = call_component(loss, feats, names)
    for k in terms:
        torch.testing.assert_close(again[k], terms[k])
    # the config entry's weight scales the terms: weight 2 = 2 x weight 1
    one, two = build_loss_entry("a", dict(type=name, **kwargs, weight=1.0)), \
        build_loss_entry("b", dict(type=name, **kwargs, weight=2.0))
    t1 = {k: v * one.multiplier for k, v in call_component(one.loss, feats, names).items() if k.endswith("_loss")}
    t2 = {k: v * two.multiplier for k, v in call_component(two.loss, feats, names).items() if k.endswith("_loss")}
    for k in t1:
        torch.testing.assert_close(t2[k], 2 * t1[k])


# =============================================================================================== heads
def check_head(name: str, registry) -> None:
    """The region-head contract: (M, D) unit rows, one per valid box, differentiable, parameters trained."""
    cls = registry.get(name)
    assert hasattr(cls, "example_inputs"), f"{name}: a region head provides example_inputs() (RegionHead has one)"
    kwargs, feats = cls.example_inputs()
    head = cls(**kwargs)
    names = check_feature_names(name, head.required_features)
    out = call_component(head, feats, names)
    m = int((feats["boxes"][..., 4] > 0.5).sum())
    assert isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[0] == m, (name, getattr(out, "shape", out))
    assert out.dtype in (torch.float32, torch.float64), (name, out.dtype)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(m, dtype=out.dtype))
    leaves = _float_leaves(feats, names)
    params = [p for p in head.parameters() if p.requires_grad]
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(0), dtype=out.dtype)
    grads = torch.autograd.grad((out * w).sum(), list(leaves.values()) + params, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads[:len(leaves)]), f"{name} ignores its inputs"
    for p, g in zip(params, grads[len(leaves):]):
        assert g is not None, f"{name}: a learnable parameter of shape {tuple(p.shape)} gets no gradient"


# ====================================================================================== dense variants
def _softmax(a: torch.Tensor, b: torch.Tensor, s: float) -> torch.Tensor:
    return torch.softmax((a @ b.T) * s, dim=-1)


def naclip_prior_loops(h: int, w: int, prefix: int = 1, std: float = 1.0) -> torch.Tensor:
    n = h * w
    om = torch.zeros(n + prefix, n + prefix)
    for a in range(n):
        for b in range(n):
            ya, xa, yb, xb = a // w, a % w, b // w, b % w
            om[a + prefix, b + prefix] = math.exp(-((ya - yb) ** 2 + (xa - xb) ** 2) / (2 * std ** 2))
    return om


def _naclip(q, k, v, grid):
    s = q.shape[-1] ** -0.5
    prefix = k.shape[0] - grid[0] * grid[1]
    return torch.softmax((k @ k.T) * s + naclip_prior_loops(*grid, prefix=prefix).to(k.dtype), dim=-1)


#: One head's (T, T) attention matrix of each built-in variant, written out.
BUILTIN_WEIGHTS: Dict[str, Callable] = {
    "vanilla": lambda q, k, v, grid: _softmax(q, k, q.shape[-1] ** -0.5),
    "MaskCLIP": lambda q, k, v, grid: torch.eye(q.shape[0], dtype=q.dtype),
    "SCLIP": lambda q, k, v, grid: _softmax(q, q, q.shape[-1] ** -0.5) + _softmax(k, k, q.shape[-1] ** -0.5),
    "ClearCLIP": lambda q, k, v, grid: _softmax(q, q, q.shape[-1] ** -0.5),
    "SegEarth": lambda q, k, v, grid: (_softmax(q, q, q.shape[-1] ** -0.5) + _softmax(k, k, q.shape[-1] ** -0.5)
                                       + _softmax(v, v, q.shape[-1] ** -0.5)),
    "NACLIP": _naclip,
}


def variant_weights(cls) -> Callable:
    """The independent attention formula of a variant class: the table above, or its ``reference_weights``."""
    name = getattr(cls, "name", None)
    if name in BUILTIN_WEIGHTS and cls.__module__.startswith("farslip_ext."):
        return BUILTIN_WEIGHTS[name]
    ref = getattr(cls, "reference_weights", None)
    assert ref is not None, (f"{cls.__name__}: a dense-attention variant provides reference_weights(q, k, v, grid), "
                             f"the explicit (T, T) attention matrix of one head, for this test")
    return ref


def openai_reference_block(visual, x: torch.Tensor, weights: Callable, grid, ignore_residual: bool) -> torch.Tensor:
    """Explicit per-image, per-head loops (no SDPA, no batching) over an open_clip ViT's last block:
    the modified block, ``ln_post``, ``proj``. ``x``: tokens entering the last block (B, 1+N, width)."""
    blk = visual.transformer.resblocks[-1]
    W, bias = blk.attn.in_proj_weight, blk.attn.in_proj_bias
    heads = blk.attn.num_heads
    width = x.shape[-1]
    hd = width // heads
    outs = []
    for bi in range(x.shape[0]):
        y = F.layer_norm(x[bi], (width,), blk.ln_1.weight, blk.ln_1.bias, blk.ln_1.eps)
        q_all = y @ W[:width].T + bias[:width]
        k_all = y @ W[width:2 * width].T + bias[width:2 * width]
        v_all = y @ W[2 * width:].T + bias[2 * width:]
        per_head = []
        for h in range(heads):
            q, k, v = (t[:, h * hd:(h + 1) * hd] for t in (q_all, k_all, v_all))
            per_head.append(weights(q, k, v, grid) @ v)
        o = torch.cat(per_head, dim=-1) @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias
        if not ignore_residual:
            r = x[bi] + o
            o = r + blk.mlp(blk.ln_2(r))
        o = F.layer_norm(o, (width,), visual.ln_post.weight, visual.ln_post.bias, visual.ln_post.eps) @ visual.proj
        outs.append(o)
    return torch.stack(outs)


def openai_trunk(visual, images: torch.Tensor) -> torch.Tensor:
    """Tokens entering the last block, by running open_clip's own modules one by one."""
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1)
    x = visual.ln_pre(torch.cat([cls, x], dim=1) + visual.positional_embedding)
    for blk in visual.transformer.resblocks[:-1]:
        x = blk(x)
    return x


def check_dense_variant(name: str, registry, model, images: torch.Tensor, ignore_residual: bool) -> None:
    """``dense_forward(model, images, name)`` against :func:`openai_reference_block` (an open_clip ViT)."""
    from farslip_ext.models import dense_forward

    cls = registry.get(name)
    weights = variant_weights(cls)
    with torch.no_grad():
        out = dense_forward(model, images, dict(type=name, ignore_residual=ignore_residual))
        ref = openai_reference_block(model.visual, openai_trunk(model.visual, images), weights, out.grid,
                                     ignore_residual)
    torch.testing.assert_close(out.patch_tokens, ref[:, 1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.cls_token, ref[:, 0], rtol=1e-5, atol=1e-5)


def fork_maskclip_tokens(visual, images: torch.Tensor) -> torch.Tensor:
    """The training fork's MaskCLIP dense tokens, written out (docs/reference/method.md §4.1):
    x' = x + out_proj(v(ln_1 x)), then x' + mlp(ln_2 x'), then ln_post and proj; (B, 1+N, D)."""
    blk = visual.transformer.resblocks[-1]
    x = openai_trunk(visual, images)
    width = x.shape[-1]
    y = F.layer_norm(x, (width,), blk.ln_1.weight, blk.ln_1.bias, blk.ln_1.eps)
    v = y @ blk.attn.in_proj_weight[2 * width:].T + blk.attn.in_proj_bias[2 * width:]
    x1 = x + v @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias
    h = F.layer_norm(x1, (width,), blk.ln_2.weight, blk.ln_2.bias, blk.ln_2.eps)
    out = x1 + blk.mlp.c_proj(blk.mlp.gelu(blk.mlp.c_fc(h)))
    return F.layer_norm(out, (width,), visual.ln_post.weight, visual.ln_post.bias, visual.ln_post.eps) @ visual.proj
