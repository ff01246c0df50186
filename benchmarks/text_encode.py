"""Text encoding of OVSS prompt sets: padded ``model.encode_text`` vs trimmed vs bucketed, side by side.

    .venv/bin/python benchmarks/text_encode.py [--archs farslip-vitb16,ViT-B-16] [--repeats 3] [--device auto]

Prompt sets in the OVSS style: class names (Potsdam's, as ``benchmarks/ovss_throughput.py``) over the
80 OpenAI templates (``open_clip.zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES``): 2 classes = 160
prompts and 6 classes = 480 prompts, for the 248-token LongCLIP tower (``farslip-vitb16``) and a
77-token one (``ViT-B-16``), random weights (the cost does not depend on them).

Cases, all under ``torch.no_grad`` on the same tokens, timed with interleaved repeats (one call of each
case per round, median over rounds, after a small warm-up call of each):

* ``padded``: ``model.encode_text(tokens)``, every row at the full context;
* ``trimmed``: :func:`farslip_ext.models.text.encode_text`, the batch cut to its longest row;
* ``bucketed``: :func:`farslip_ext.models.text.encode_texts_bucketed` (rows sorted by length, chunks of
  ``--chunk`` rows, each cut to its own longest row).

One JSON line per case: seconds (median) and every round's seconds, ``speedup_vs_padded`` (the median
over rounds of padded / case time in the same round: robust to a shared machine whose speed drifts
between rounds), ``max_abs_diff`` against ``padded``,
executed model FLOPs and the achieved fraction of the fp32 matmul rate measured in the same run
(``_common.matmul_peak``: best of 7 square 2048 matmuls). FLOPs are analytic (``_common.clip_text_flops``):
for a sequence of ``n`` tokens through ``layers`` blocks of width ``d`` (MLP ratio 4),
``2 · (12·d²) · n`` for the matmuls (qkv 3d², out d², MLP 8d² weights per layer: 2 FLOPs per weight per
token) plus ``4 · n² · d`` for attention (scores and weighted sum), per layer, plus ``2 · d · embed`` for
the projection of the pooled row; a path that runs ``B`` rows at ``n`` columns executes ``B×`` that.
The embedding lookup, norms and softmax are not counted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Dict, List

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import clip_text_flops, emit, machine, matmul_peak  # noqa: E402

import open_clip  # noqa: E402
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES  # noqa: E402

import farslip_ext  # noqa: E402,F401  (registers farslip-vitb16)
from farslip_ext.models.text import encode_text, encode_texts_bucketed, text_lengths  # noqa: E402

CLASSES = ["road", "building", "low vegetation", "tree", "car", "clutter"]  # Potsdam, one name per class
PROMPT_SETS = {"2x80": CLASSES[:2], "6x80": CLASSES}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def interleaved_medians(cases: Dict[str, Callable[[], torch.Tensor]], repeats: int, device: str,
                        warmup: Dict[str, Callable[[], object]]) -> Dict[str, object]:
    for fn in warmup.values():
        fn()
    _sync(device)
    times: Dict[str, List[float]] = {k: [] for k in cases}
    outputs: Dict[str, torch.Tensor] = {}
    for _ in range(repeats):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            outputs[name] = fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {"seconds": {k: statistics.median(v) for k, v in times.items()}, "all": times, "outputs": outputs}


def executed_flops(model, lengths: torch.Tensor, chunk: int) -> Dict[str, float]:
    ctx, b = model.positional_embedding.shape[0], lengths.numel()
    per_len = lambda n: clip_text_flops(model, context_length=n)  # noqa: E731
    srt = sorted(lengths.tolist(), reverse=True)
    bucketed = sum(len(srt[i:i + chunk]) * per_len(max(srt[i:i + chunk])) for i in range(0, b, chunk))
    return {"padded": b * per_len(ctx), "trimmed": b * per_len(int(lengths.max())), "bucketed": bucketed,
            "useful": sum(per_len(n) for n in srt)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="farslip-vitb16,ViT-B-16", help="comma list of open_clip model names")
    p.add_argument("--sets", default="2x80,6x80", help=f"comma list of prompt sets from {sorted(PROMPT_SETS)}")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunk", type=int, default=256, help="bucketed: rows per chunk")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    args = p.parse_args()
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    torch.manual_seed(0)
    peak = matmul_peak(device=dev)
    emit({"bench": "text_encode", "machine": machine(), "device": dev, "repeats": args.repeats,
          "chunk": args.chunk, "fp32_matmul_peak_flops": peak})
    for arch in args.archs.split(","):
        model = open_clip.create_model(arch).eval().to(dev)
        tokenizer = open_clip.get_tokenizer(arch)
        for set_name in args.sets.split(","):
            prompts = [t(c) for c in PROMPT_SETS[set_name] for t in OPENAI_IMAGENET_TEMPLATES]
            tokens = tokenizer(prompts).to(dev)
            lengths = text_lengths(model, tokens)
            if lengths is None:
                raise SystemExit(f"{arch}: text tower not trimmable, nothing to compare")
            small = tokens[:8]
            with torch.no_grad():
                cases = {
                    "padded": lambda: model.encode_text(tokens),
                    "trimmed": lambda: encode_text(model, tokens),
                    "bucketed": lambda: encode_texts_bucketed(model, tokens, batch_size=args.chunk),
                }
                warm = {"padded": lambda: model.encode_text(small), "trimmed": lambda: encode_text(model, small)}
                res = interleaved_medians(cases, args.repeats, dev, warm)
            flops = executed_flops(model, lengths, args.chunk)
            ref = res["outputs"]["padded"]
            common = {"arch": arch, "prompts": set_name, "rows": tokens.shape[0], "context": tokens.shape[1],
                      "max_len": int(lengths.max()), "mean_len": round(float(lengths.float().mean()), 2),
                      "useful_gflops": round(flops["useful"] / 1e9, 2)}
            for name, t in res["seconds"].items():
                emit({**common, "case": name, "seconds": round(t, 4), "repeats": args.repeats,
                      "all_seconds": [round(x, 4) for x in res["all"][name]],
                      "speedup_vs_padded": round(statistics.median(
                          p / c for p, c in zip(res["all"]["padded"], res["all"][name])), 2),
                      "max_abs_diff": float((res["outputs"][name].float() - ref.float()).abs().max()),
                      "gflops": round(flops[name] / 1e9, 2), "achieved_gflops": round(flops[name] / t / 1e9, 1),
                      "fraction_of_peak": round(flops[name] / t / peak, 3)})
        del model


if __name__ == "__main__":
    main()
