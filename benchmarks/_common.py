"""Shared helpers for the benchmarks: timing medians, FLOP counting, the machine's matmul peak."""
from __future__ import annotations

import json
import platform
import statistics
import time
from typing import Callable, Dict

import torch


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call, counted by torch's FlopCounterMode (matmul/conv/SDPA; 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 2048, device: str = "cpu", repeats: int = 7) -> float:
    """Measured dense matmul FLOP/s on this machine (the denominator of 'fraction of peak'): the best of
    ``repeats`` square ``n``-matmuls, since on a shared machine only the fastest run shows the hardware."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def machine() -> Dict[str, object]:
    return {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def emit(record: Dict[str, object]) -> None:
    print(json.dumps(record), flush=True)


def transformer_flops(tokens: int, width: int, layers: int, mlp_ratio: float = 4.0) -> float:
    """Forward FLOPs (2 per multiply-add) of ``layers`` standard pre-norm blocks on ``tokens`` tokens:
    qkv + out projections 8·N·D², MLP 4·r·N·D², attention scores and weighted sum 4·N²·D."""
    n, d = tokens, width
    return layers * (8 * n * d * d + 4 * mlp_ratio * n * d * d + 4 * n * n * d)


def clip_image_flops(model) -> float:
    """Analytic forward FLOPs of ``model.encode_image`` for one image at the model's size (open_clip's
    model_profile counts the same: ViT-B/16 at 224 px = 35.1 GFLOPs)."""
    v = model.visual
    gh, gw = v.grid_size
    n = gh * gw + 1
    width = v.conv1.out_channels
    patch = v.conv1.in_channels * v.conv1.kernel_size[0] * v.conv1.kernel_size[1]
    return 2 * gh * gw * patch * width + transformer_flops(n, width, len(v.transformer.resblocks)) \
        + 2 * width * v.output_dim


def clip_text_flops(model, context_length: int = None) -> float:
    """Analytic forward FLOPs of ``model.encode_text`` for one caption (all context positions computed)."""
    n = context_length or model.context_length
    width = model.transformer.width
    return transformer_flops(n, width, len(model.transformer.resblocks)) + 2 * width * model.text_projection.shape[1]
