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


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 1024, device: str = "cpu", repeats: int = 5) -> float:
    """Measured dense matmul FLOP/s on this machine (the denominator of 'fraction of peak')."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    t = median_time(lambda: a @ b, repeats=repeats, warmup=2)
    return 2 * n ** 3 / t


def machine() -> Dict[str, object]:
    return {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def emit(record: Dict[str, object]) -> None:
    print(json.dumps(record), flush=True)
