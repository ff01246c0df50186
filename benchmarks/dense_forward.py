"""Cost of the dense forward relative to a plain ``encode_image`` (same run, ratios), per variant.

    .venv/bin/python benchmarks/dense_forward.py [--arch farslip-vitb16] [--batch 4] [--repeats 5]

Prints one JSON line per measurement: seconds (median), model FLOPs per call (analytic), achieved
FLOP/s and the fraction of the fp32 matmul rate measured in the same run, and the ratio to
``encode_image``. ``reference_bmm`` is the reference implementation's formulation of the SegEarth block
(explicit bmm + softmax per term) for comparison with our SDPA formulation.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import clip_image_flops, emit, machine, matmul_peak, median_time, transformer_flops  # noqa: E402

import open_clip  # noqa: E402

import farslip_ext  # noqa: E402,F401
from farslip_ext.models import dense_forward  # noqa: E402
from farslip_ext.models.dense_attn import DenseAttention  # noqa: E402


class ReferenceBmmSegEarth(DenseAttention):
    """SegEarth block the way the reference computes it: three explicit score matrices (bmm)."""

    name = "reference_bmm"

    def mix(self, q, k, v, grid):
        s = q.shape[-1] ** -0.5
        a = (torch.softmax(q @ q.transpose(-1, -2) * s, -1) + torch.softmax(k @ k.transpose(-1, -2) * s, -1)
             + torch.softmax(v @ v.transpose(-1, -2) * s, -1))
        return a @ v


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--arch", default="farslip-vitb16")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    torch.manual_seed(0)
    model = open_clip.create_model(args.arch).eval().to(args.device)
    size = model.visual.image_size[0]
    x = torch.randn(args.batch, 3, size, size, device=args.device)
    peak = matmul_peak(device=args.device)
    emit({"bench": "dense_forward", "machine": machine(), "arch": args.arch, "batch": args.batch,
          "fp32_matmul_peak_flops": peak})
    cases = {"encode_image": lambda: model.encode_image(x)}
    for v in ["SegEarth", "SCLIP", "ClearCLIP", "MaskCLIP", "NACLIP", "vanilla"]:
        cases[f"dense+embed:{v}"] = (lambda v=v: dense_forward(model, x, v))
    cases["dense_only:SegEarth"] = lambda: dense_forward(model, x, "SegEarth", return_image_embed=False)
    cases["dense+embed:reference_bmm"] = lambda: dense_forward(model, x, ReferenceBmmSegEarth())
    v = model.visual
    per_image = clip_image_flops(model)
    last_block = transformer_flops(v.grid_size[0] * v.grid_size[1] + 1, v.conv1.out_channels, 1)
    base = None
    with torch.inference_mode():
        for name, fn in cases.items():
            t = median_time(fn, repeats=args.repeats)
            # analytic: the trunk once, plus one extra last block when both outputs are produced
            extra = last_block if name.startswith("dense+embed") else 0.0
            flops = args.batch * (per_image + extra)
            base = base or t
            emit({"case": name, "seconds": round(t, 4), "ratio_to_encode_image": round(t / base, 3),
                  "gflops_per_call": round(flops / 1e9, 2), "achieved_gflops": round(flops / t / 1e9, 1),
                  "fraction_of_peak": round(flops / t / peak, 3)})


if __name__ == "__main__":
    main()
