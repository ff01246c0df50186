"""Text side of a stage-2 step: long captions next to short region prompts, forward + backward.

    .venv/bin/python benchmarks/text_parts.py [--arch farslip-vitb16] [--caption-tokens 200] [--repeats 3]

Three ways to encode B captions and K region prompts of one step (random-init weights, fp32):
``padded`` (every row at the full context, ``model.encode_text``), ``joint`` (one call trimmed to the
longest row, i.e. every prompt at the caption length) and ``per_part`` (one call per part, each
trimmed to its own longest row: what ``FarSLIPTask(trim_text=True)`` does). Prints one JSON line per
way with the median seconds and the ratio to ``padded``; the outputs of the three agree to 1e-5.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import open_clip
import torch

import farslip_ext  # noqa: F401  (registers the FarSLIP architectures)
from farslip_ext.models.text import encode_text


def _tokens(ctx: int, rows: int, length: int, gen: torch.Generator) -> torch.Tensor:
    t = torch.zeros(rows, ctx, dtype=torch.long)
    t[:, 0] = 49406  # start of text
    t[:, 1:length - 1] = torch.randint(1, 49000, (rows, length - 2), generator=gen)
    t[:, length - 1] = 49407  # end of text (the argmax pool)
    return t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="farslip-vitb16")
    p.add_argument("--captions", type=int, default=2)
    p.add_argument("--caption-tokens", type=int, default=200)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--prompt-tokens", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    torch.manual_seed(0)
    model = open_clip.create_model(a.arch).train()
    ctx = model.context_length
    g = torch.Generator().manual_seed(0)
    caps = _tokens(ctx, a.captions, a.caption_tokens, g)
    prompts = _tokens(ctx, a.prompts, a.prompt_tokens, g)
    ways = {
        "padded": lambda: model.encode_text(torch.cat([caps, prompts])),
        "joint": lambda: encode_text(model, torch.cat([caps, prompts])),
        "per_part": lambda: torch.cat([encode_text(model, caps), encode_text(model, prompts)]),
    }
    ref = None
    times = {}
    for name, fn in ways.items():
        out = fn()
        ref = out.detach() if ref is None else ref
        err = float((out.detach() - ref).abs().max())
        runs = []
        for _ in range(a.repeats):
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            fn().square().sum().backward()
            runs.append(time.perf_counter() - t0)
        times[name] = statistics.median(runs)
        print(json.dumps({"what": f"stage-2 text fwd+bwd, {name}", "arch": a.arch, "context": ctx,
                          "captions": [a.captions, a.caption_tokens], "prompts": [a.prompts, a.prompt_tokens],
                          "seconds": round(times[name], 4), "all_seconds": [round(r, 4) for r in runs],
                          "speedup_vs_padded": round(times["padded"] / times[name], 2),
                          "max_abs_diff_vs_padded": err}), flush=True)


if __name__ == "__main__":
    main()
