"""The FLOP account: analytic model FLOPs next to torch's counted FLOPs, for the pieces every figure uses.

    .venv/bin/python benchmarks/flop_account.py [--arch ViT-B-16-quickgelu] [--long-arch farslip-vitb16]

Analytic (``_common``: 2 FLOPs per multiply-add; per block ``24·N·D²`` for the qkv/out/MLP matmuls with
MLP ratio 4, plus ``4·N²·D`` for attention scores and weighted sum; embeddings, norms, softmax not
counted). Counted: ``torch.utils.flop_counter.FlopCounterMode`` over one call (matmul, conv, SDPA
kernels it knows; 2 per multiply-add). Rows:

* ``encode_image``: one 224² ViT-B/16 image;
* ``encode_text``: one prompt at the full context (77 and 248), and trimmed to a prompt's real length
  (``a photo of a low vegetation.``: 9 tokens with start/end) through
  :func:`farslip_ext.models.text.encode_text`;
* ``ovss_text``: 6 names x 80 OpenAI templates, padded vs bucketed (the cold cost of OVSS);
* ``train_step``: a stage-1 / stage-2 step (B=2, 4 crops, forward + backward), analytic ``3 x forward``
  vs counted forward + backward of :class:`farslip_ext.train.task.FarSLIPTask`.

FLOPs only, no time; one JSON line per row.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import clip_image_flops, clip_text_flops, count_flops, emit  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="ViT-B-16-quickgelu")
    p.add_argument("--long-arch", default="farslip-vitb16")
    p.add_argument("--no-train", action="store_true")
    args = p.parse_args()
    import open_clip
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    import farslip_ext  # noqa: F401
    from farslip_ext.models.text import encode_text, encode_texts_bucketed, text_lengths

    torch.manual_seed(0)
    model = open_clip.create_model(args.arch).eval()
    img = torch.randn(1, 3, *model.visual.image_size)
    with torch.no_grad():
        emit({"row": "encode_image", "arch": args.arch, "analytic_gflops": round(clip_image_flops(model) / 1e9, 3),
              "counted_gflops": round(count_flops(lambda: model.encode_image(img)) / 1e9, 3)})
    long = open_clip.create_model(args.long_arch).eval()
    names = ["road", "building", "low vegetation", "tree", "car", "clutter"]
    for m, arch in ((model, args.arch), (long, args.long_arch)):
        tok = open_clip.get_tokenizer(arch)
        one = tok(["a photo of a low vegetation."])
        n = int(text_lengths(m, one)[0])
        with torch.no_grad():
            emit({"row": "encode_text", "arch": arch, "context": m.context_length,
                  "analytic_gflops_padded": round(clip_text_flops(m) / 1e9, 3),
                  "counted_gflops_padded": round(count_flops(lambda m=m, one=one: m.encode_text(one)) / 1e9, 3),
                  "tokens": n, "analytic_gflops_trimmed": round(clip_text_flops(m, n) / 1e9, 3),
                  "counted_gflops_trimmed": round(count_flops(lambda m=m, one=one: encode_text(m, one)) / 1e9, 3)})
        prompts = [t(c) for c in names for t in OPENAI_IMAGENET_TEMPLATES]
        toks = tok(prompts)
        lengths = text_lengths(m, toks)
        chunks = torch.sort(lengths, descending=True).values.split(256)
        with torch.no_grad():
            emit({"row": "ovss_text", "arch": arch, "prompts": len(prompts), "context": m.context_length,
                  "mean_tokens": round(float(lengths.float().mean()), 2), "max_tokens": int(lengths.max()),
                  "analytic_gflops_padded": round(len(prompts) * clip_text_flops(m) / 1e9, 1),
                  "analytic_gflops_bucketed": round(sum(len(c) * clip_text_flops(m, int(c.max()))
                                                        for c in chunks) / 1e9, 1),
                  "counted_gflops_bucketed": round(count_flops(lambda m=m, toks=toks: encode_texts_bucketed(m, toks))
                                                   / 1e9, 1)})
    if args.no_train:
        return
    from train_throughput import make_batch, task_config

    from farslip_ext.registry import TASKS

    for stage in (1, 2):
        torch.manual_seed(0)
        m = open_clip.create_model(args.arch).train()
        task = TASKS.build(task_config(stage), default_args={"model": m})
        batch = make_batch(stage, 2, 4, m.visual.image_size[0], m.context_length)

        def step(task=task, batch=batch):
            losses = task(batch)[0]
            sum(v for k, v in losses.items() if k.endswith("_loss")).backward()

        images, texts = 2 + 8, 2 + (8 if stage == 2 else 0)
        analytic = 3 * (images * clip_image_flops(m) + texts * clip_text_flops(m))
        emit({"row": "train_step", "arch": args.arch, "stage": stage, "batch": 2, "crops": 4,
              "images": images, "texts": texts, "analytic_tflops": round(analytic / 1e12, 4),
              "counted_tflops": round(count_flops(step) / 1e12, 4)})


if __name__ == "__main__":
    main()
