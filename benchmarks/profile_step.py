"""Where a training step spends its time: torch.profiler over one FarSLIP step, by kind of operator.

    .venv/bin/python benchmarks/profile_step.py --arch ViT-B-16-quickgelu --stage 1 --precisions fp32,bf16

One step (forward under autocast, backward, fused AdamW), after one warm-up step, the same batch as
``benchmarks/train_throughput.py`` (B images with K crops, texts at the whole context unless
``--caption-tokens`` / ``--prompt-tokens``). The profiler's self CPU time of every ATen operator is put
into one of these groups (first match in this order, on the operator name):

* ``matmul``: mm, addmm, bmm, matmul, linear, baddbmm, convolution and their backward;
* ``attention``: scaled_dot_product / flash-attention kernels, softmax and its backward;
* ``cast``: ``_to_copy``, ``copy_``, ``to`` (dtype conversions, autocast weight casts);
* ``norm``: layer norm forward and backward;
* ``optimizer``: ``_fused_adamw_`` / ``_foreach_*`` (the optimizer step and ``zero_grad``);
* ``elementwise``: mul, add, sigmoid, gelu, div, sub, exp, their backward, ``sum`` / ``mean`` reductions;
* ``other``: everything else (indexing, cat, roi_align, ...).

Prints one JSON line per precision: step seconds (profiled: a little slower than unprofiled), the
seconds and fraction per group, the analytic model FLOPs and the FLOP/s the matmul group alone reached
(``matmul_gflops``: model FLOPs over the matmul group's time; against ``matmul_peak_gflops`` of the same
dtype measured in the same run). The profiler adds its own cost to every operator (an element-wise op
measured ~3× slower under it), so read the shares, not absolute op times. Times are never asserted.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from collections import defaultdict
from typing import Dict

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, machine, matmul_peak  # noqa: E402
from train_throughput import build, make_batch, step_model_flops, task_config, train_step  # noqa: E402

from farslip_ext.registry import TASKS  # noqa: E402
from farslip_ext.train.optim import build_optimizer  # noqa: E402

GROUPS = [
    ("matmul", r"(^|::)(mm|addmm|bmm|matmul|linear|baddbmm|convolution|_convolution|mkldnn_convolution|"
               r"convolution_backward|mkldnn_linear|_mkl_linear|linear_backward)$|^aten::mm|^aten::addmm|"
               r"^aten::bmm"),
    ("attention", r"scaled_dot_product|flash_attention|_efficient_attention|softmax"),
    ("cast", r"(^|::)(_to_copy|copy_|to|_copy_from|_copy_from_and_resize)$"),
    ("norm", r"layer_norm"),
    ("optimizer", r"_fused_adam|_foreach_|adamw"),
    ("elementwise", r"(^|::)(mul|add|sub|div|sigmoid|gelu|exp|neg|sum|mean|pow|sqrt|rsqrt|clamp|"
                    r"sigmoid_backward|gelu_backward|threshold_backward|mul_|add_|div_|fill_|zero_|"
                    r"where|norm|linalg_vector_norm|clamp_min|masked_fill|mse_loss|_log_softmax|nll_loss)"),
]


def group_of(name: str) -> str:
    for g, pat in GROUPS:
        if re.search(pat, name):
            return g
    return "other"


def profile(arch: str, stage: int, b: int, k: int, precision: str, caption_tokens: int, prompt_tokens: int,
            peaks: Dict[str, float], top: int) -> Dict[str, object]:
    from torch.profiler import ProfilerActivity, profile as tprofile

    model = build(arch).train()
    size, ctx = model.visual.image_size[0], model.context_length
    batch = make_batch(stage, b, k, size, ctx, caption_tokens=caption_tokens, prompt_tokens=prompt_tokens)
    task = TASKS.build(task_config(stage), default_args=dict(model=model))
    opt = build_optimizer(model, lr=1e-6, weight_decay=1.0, impl="fused")
    dtype = torch.bfloat16 if precision == "bf16" else None

    def step() -> None:
        train_step(lambda b: task(b)[0], opt, batch, "cpu", dtype)

    step()  # warm-up: oneDNN primitives, optimizer state
    with tprofile(activities=[ProfilerActivity.CPU]) as prof:
        import time

        t0 = time.perf_counter()
        step()
        seconds = time.perf_counter() - t0
    by_group: Dict[str, float] = defaultdict(float)
    ops = []
    for ev in prof.key_averages():
        if not ev.key.startswith("aten::"):
            continue
        s = ev.self_cpu_time_total / 1e6
        by_group[group_of(ev.key)] += s
        ops.append((s, ev.key, ev.count))
    total = sum(by_group.values()) or 1.0
    flops = step_model_flops(model, batch, stage)
    mm = by_group.get("matmul", 0.0)
    return {"case": "profile_step", "arch": arch, "stage": stage, "batch": b, "crops": k, "precision": precision,
            "step_s": round(seconds, 3), "profiled_aten_s": round(total, 3),
            "seconds": {g: round(v, 3) for g, v in sorted(by_group.items(), key=lambda kv: -kv[1])},
            "fraction": {g: round(v / total, 3) for g, v in sorted(by_group.items(), key=lambda kv: -kv[1])},
            "model_gflops": round(flops / 1e9, 1),
            "matmul_gflops": round(flops / mm / 1e9, 1) if mm else None,
            "matmul_peak_gflops": round(peaks[precision] / 1e9, 1),
            "mfu": round(flops / seconds / peaks[precision], 3),
            "top_ops": [[n, round(s, 3), c] for s, n, c in sorted(ops, reverse=True)[:top]]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="farslip-test-tiny")
    p.add_argument("--stage", type=int, default=1, choices=(1, 2))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--crops", type=int, default=4)
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--caption-tokens", type=int, default=0)
    p.add_argument("--prompt-tokens", type=int, default=0)
    p.add_argument("--top", type=int, default=12, help="how many of the slowest operators to list")
    args = p.parse_args()
    precs = [x.strip() for x in args.precisions.split(",") if x.strip()]
    bad = [x for x in precs if x not in ("fp32", "bf16")]
    if bad:
        p.error(f"--precisions {','.join(bad)}: accepted fp32, bf16")
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    emit({"bench": "profile_step", "machine": machine(),
          "matmul_peak_gflops": {k: round(v / 1e9, 1) for k, v in peaks.items()}})
    for prec in precs:
        emit(profile(args.arch, args.stage, args.batch, args.crops, prec, args.caption_tokens, args.prompt_tokens,
                     peaks, args.top))


if __name__ == "__main__":
    main()
