"""OVSS inference throughput: windows one at a time vs batched, text-embedding cache, per variant, image size.

    .venv/bin/python benchmarks/ovss_throughput.py --arch farslip-vitb16 --images 2          # CPU: a few minutes
    .venv/bin/python benchmarks/ovss_throughput.py --arch farslip-test-tiny --sizes 112,224   # quick

Protocol of the published numbers (docs/reference/ovss-evaluation.md §1.7): images resized to long side 448, 224/112
windows (9 per 448² image), SegEarth last block, 80 OpenAI templates. Prints JSON lines: seconds per
image (median), images/s, model FLOPs per image (analytic: windows × encode_image FLOPs), achieved
FLOP/s, fraction of the fp32 matmul rate measured in the same run, and ratios between the compared
settings. Times are never asserted.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import List

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import clip_image_flops, emit, machine, matmul_peak, median_time  # noqa: E402

CLASSES = ["road,parking lot", "building", "low vegetation", "tree", "car", "clutter,background"]  # Potsdam


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="farslip-vitb16")
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--sizes", default="448", help="comma list of input long sides (448 = the protocol)")
    p.add_argument("--variants", default="SegEarth,SCLIP,ClearCLIP,MaskCLIP,NACLIP,vanilla")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    os.environ.setdefault("FARSLIP_CACHE", tempfile.mkdtemp(prefix="farslip-bench-"))

    import open_clip

    import farslip_ext  # noqa: F401
    from farslip_ext.segmentation.segmentor import FarSLIPSeg, resolve_templates
    from farslip_ext.segmentation.text_cache import TextEmbeddingCache, clear_memory_cache, compute_text_embeddings

    dev = args.device
    peak = matmul_peak(device=dev)
    emit({"bench": "ovss_throughput", "machine": machine(), "arch": args.arch,
          "fp32_matmul_peak_gflops": round(peak / 1e9, 1)})
    torch.manual_seed(0)
    model = open_clip.create_model(args.arch).eval().to(dev)
    crop = model.visual.image_size[0]
    stride = crop // 2

    # ---- text side: 80 templates x the class names, computed vs cached --------------------------
    tok = open_clip.get_tokenizer(args.arch)
    templates = resolve_templates("openai")
    names = [n for line in CLASSES for n in line.split(",")]
    with torch.inference_mode():
        t_compute = median_time(lambda: compute_text_embeddings(model, tok, names, templates, device=torch.device(dev)),
                                repeats=1, warmup=0)
        cache = TextEmbeddingCache(use_disk=True)
        cache.get(model, tok, names, templates, device=torch.device(dev))  # fill memory + disk
        t_mem = median_time(lambda: cache.get(model, tok, names, templates, device=torch.device(dev)), repeats=3)
        clear_memory_cache()
        t0 = time.perf_counter()
        TextEmbeddingCache(use_disk=True).get(model, tok, names, templates, device=torch.device(dev))
        t_disk = time.perf_counter() - t0
    emit({"case": "text_embeddings", "names": len(names), "templates": len(templates),
          "compute_s": round(t_compute, 3), "memory_hit_s": round(t_mem, 5), "disk_hit_s": round(t_disk, 4),
          "speedup_memory": round(t_compute / max(t_mem, 1e-9), 1), "speedup_disk": round(t_compute / t_disk, 1)})

    # ---- image side ---------------------------------------------------------------------------------
    for size in [int(s) for s in args.sizes.split(",")]:
        images: List[torch.Tensor] = [torch.randn(3, size, size, device=dev) for _ in range(args.images)]
        for variant in args.variants.split(","):
            res = {}
            for mode, wbs in (("one_window_at_a_time", 1), ("batched_windows", 128)):
                seg = FarSLIPSeg(model, class_names=CLASSES, attn=variant, slide_crop=crop, slide_stride=stride,
                                 window_batch_size=wbs, precision="fp32", device=dev)

                def run(seg=seg):
                    with torch.inference_mode():
                        for lg in seg.slide_inference(images):
                            seg.postprocess_logits(lg)

                t = median_time(run, repeats=args.repeats)
                # analytic: every window through the image tower once (the dense block replaces the last one)
                flops = len(seg._plan(images)) * clip_image_flops(model)
                res[mode] = t
                emit({"case": "segment", "size": size, "variant": variant, "mode": mode,
                      "s_per_image": round(t / len(images), 4), "images_per_s": round(len(images) / t, 3),
                      "gflops_per_image": round(flops / len(images) / 1e9, 2),
                      "achieved_gflops": round(flops / t / 1e9, 1), "fraction_of_peak": round(flops / t / peak, 3)})
            emit({"case": "batching_speedup", "size": size, "variant": variant,
                  "speedup": round(res["one_window_at_a_time"] / res["batched_windows"], 3)})
            if size != max(int(s) for s in args.sizes.split(",")):
                break  # the variant sweep only at the largest size


if __name__ == "__main__":
    main()
