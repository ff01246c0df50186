"""Small torch.distributed helpers shared by the losses (rank/world size, gathers, row padding).

Everything here degrades to a no-op in a single process (``torch.distributed`` not initialised).
"""
from __future__ import annotations

import warnings
from typing import List, Tuple

import torch
import torch.distributed as dist

__all__ = ["dist_info", "all_sizes", "pad_rows", "gather_rows_with_grad", "gather_rows", "zero_loss"]


def dist_info() -> Tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` when it is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_sizes(n: int, device: torch.device) -> List[int]:
    """The row count ``n`` of every rank (one tiny all-gather)."""
    _, world = dist_info()
    if world == 1:
        return [int(n)]
    mine = torch.tensor([int(n)], dtype=torch.long, device=device)
    out = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(out, mine)
    return [int(x.item()) for x in out]


def pad_rows(t: torch.Tensor, n: int, value: float = 0) -> torch.Tensor:
    """``t`` with rows appended (filled with ``value``) up to ``n`` rows; differentiable."""
    if t.shape[0] == n:
        return t
    if t.shape[0] > n:
        raise ValueError(f"cannot pad {t.shape[0]} rows down to {n}")
    pad = t.new_full((n - t.shape[0],) + tuple(t.shape[1:]), value)
    return torch.cat([t, pad], dim=0)


def gather_rows_with_grad(t: torch.Tensor) -> torch.Tensor:
    """All-gather ``t`` (same shape on every rank) along dim 0 *with* gradient.

    Uses ``torch.distributed.nn.functional.all_gather`` (what the reference uses, docs/reference/method.md §2.3). Its backward
    sums the incoming gradients of every rank (reduce-scatter/all-to-all with SUM), so when every
    rank computes the same global loss, the local rows receive ``world_size`` times the gradient of
    a single process holding the whole batch; DDP's gradient averaging then restores the
    single-process parameter gradient. The function is deprecated in recent torch (FutureWarning,
    silenced here) but is the only public autograd-aware all-gather that also works on gloo.
    """
    _, world = dist_info()
    if world == 1:
        return t
    from torch.distributed.nn import functional as dist_nn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        parts = dist_nn.all_gather(t.contiguous())
    return torch.cat(parts, dim=0)


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """All-gather ``t`` (same shape on every rank) along dim 0 without gradient (labels, masks)."""
    _, world = dist_info()
    if world == 1:
        return t
    t = t.contiguous()
    out = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(out, t)
    return torch.cat(out, dim=0)


def zero_loss(*tensors: torch.Tensor) -> torch.Tensor:
    """A float32 scalar 0 that is connected to the autograd graph of every given tensor.

    Used where the reference averages over an empty set (NaN): backward then runs through the same
    graph (and the same collectives) on every rank and yields zero gradients.
    """
    out = None
    for t in tensors:
        if t is None or not torch.is_tensor(t) or not t.is_floating_point():
            continue
        term = t.float().sum() * 0.0
        out = term if out is None else out + term
    if out is None:
        raise ValueError("zero_loss needs at least one floating-point tensor")
    return out
