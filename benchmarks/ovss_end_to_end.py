"""OVSS end to end, cold and warm, ours vs the official RS-OVSS code in the same run.

    .venv/bin/python benchmarks/ovss_end_to_end.py --images 20 [--rsovss-repo PATH/TO/RS-OVSS] [--bf16]

The protocol of the FarSLIP numbers: ``farslip-vitb16`` (248-token LongCLIP text), random weights, 448×448
RGB images (random uint8), SegEarth last block, 224/112 windows (9 per image), 6 classes x 80 OpenAI
templates = 480 prompts, fp32 on the CPU.

* ``ours``: :class:`farslip_ext.ovss.OVSSPredictor` via :func:`~farslip_ext.ovss.build_predictor`
  (``farslip`` preset) with an empty text cache. ``cold_s`` = build (model + text embeddings) + all
  ``--images`` images, one :meth:`~farslip_ext.ovss.OVSSPredictor.segment` call each (as the mmseg
  runner and ``farslip segment`` call it); ``warm_s_per_image`` = the median image afterwards.
* ``reference`` (``--check-images``, default 3): the same predictor with the old execution, padded text
  encoding (``model.encode_text`` on 256-prompt chunks at the full context) and one window per forward;
  its fp32 labels are compared with ours pixel for pixel (``identical_labels``).
* ``bf16`` (``--bf16``): the same images with ``precision="bf16"`` (bf16 matmul weights, text encoded in
  them) and with ``precision="amp_bf16"`` (fp32 weights, bf16 autocast on the image side, text in fp32);
  ``label_agreement_vs_fp32`` against our fp32 labels for each.
* ``official`` (``--rsovss-repo``): ``benchmarks/official/rsovss_segment.py`` in a child process (their
  ``CustomizedSegmentation``: build + text + one image cold, then warm images); the official cold time for
  N images is extrapolated as ``cold_1 + (N - 1) x warm`` (their segmentor keeps its text features, so
  each further image costs one warm image). Ratios ``cold_speedup``/``warm_speedup`` = official / ours.

The two implementations run different random weights, so their labels are not compared with each
other here (the normalisation and the maths are matched in tests/ovss). Times are never asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, machine, matmul_peak  # noqa: E402

CLASSES = ["road", "building", "low vegetation", "tree", "car", "clutter"]  # Potsdam, one name per class


def padded_text():
    """The text encoding before trimming: every prompt at the full context, chunks of 256, in order."""

    @torch.no_grad()
    def encode(model, tokens, batch_size=256, *, normalize=False, progress=False):
        return torch.cat([model.encode_text(tokens[i:i + batch_size], normalize=normalize)
                          for i in range(0, tokens.shape[0], batch_size)])

    return encode


def run_ours(arch: str, images, classes, precision: str, window_batch_size: int, old_text: bool = False):
    import farslip_ext.models.text as text_mod
    from farslip_ext.ovss import build_predictor
    from farslip_ext.ovss.text import clear_memory_cache

    clear_memory_cache()
    saved = text_mod.encode_texts_bucketed
    if old_text:
        text_mod.encode_texts_bucketed = padded_text()
    try:
        t0 = time.perf_counter()
        torch.manual_seed(0)
        pred = build_predictor(list(classes), clip={"model": arch, "pretrained": "random"}, precision=precision,
                               device="cpu", text_cache=False, window_batch_size=window_batch_size,
                               text_progress=False)
        build_s = time.perf_counter() - t0
    finally:
        text_mod.encode_texts_bucketed = saved
    labels, per_image = [], []
    for img in images:
        t1 = time.perf_counter()
        labels.append(pred.segment(img).labels)
        per_image.append(time.perf_counter() - t1)
    cold_s = time.perf_counter() - t0
    return pred, build_s, cold_s, per_image, np.stack(labels)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="farslip-vitb16")
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--size", type=int, default=448)
    p.add_argument("--classes", type=int, default=6)
    p.add_argument("--warm-images", type=int, default=0, help="extra warm images timed after the cold run")
    p.add_argument("--check-images", type=int, default=3, help="images segmented by the reference path (0: skip)")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--rsovss-repo", default=None, help="an official RS-OVSS checkout: time it in the same run")
    p.add_argument("--official-repeats", type=int, default=5)
    args = p.parse_args()
    os.environ.setdefault("FARSLIP_CACHE", tempfile.mkdtemp(prefix="farslip-e2e-"))
    import farslip_ext  # noqa: F401

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(args.images)]
    classes = CLASSES[:args.classes]
    emit({"bench": "ovss_end_to_end", "machine": machine(), "arch": args.arch, "images": args.images,
          "size": args.size, "classes": len(classes), "templates": 80,
          "fp32_matmul_gflops_before": round(matmul_peak() / 1e9, 1)})

    pred, build_s, cold_s, per_image, labels = run_ours(args.arch, images, classes, "fp32", 128)
    warm = per_image[1:] or per_image
    if args.warm_images:
        for img in images[:args.warm_images]:
            t1 = time.perf_counter()
            pred.segment(img)
            warm.append(time.perf_counter() - t1)
    ours = {"case": "ours", "precision": "fp32", "build_with_text_s": round(build_s, 3), "cold_s": round(cold_s, 3),
            "warm_s_per_image": round(statistics.median(warm), 4), "first_image_s": round(per_image[0], 4),
            "windows_per_image": len(pred.plan([torch.empty(3, args.size, args.size)])),
            "prompts": pred.num_queries * len(pred.templates)}
    emit(ours)
    del pred

    if args.check_images:
        n = min(args.check_images, args.images)
        _, rb, rc, rper, rlab = run_ours(args.arch, images[:n], classes, "fp32", 1, old_text=True)
        emit({"case": "reference", "precision": "fp32", "images": n, "build_with_text_s": round(rb, 3),
              "cold_s": round(rc, 3), "warm_s_per_image": round(statistics.median(rper[1:] or rper), 4),
              "identical_labels": bool((rlab == labels[:n]).all()),
              "pixels_differing": int((rlab != labels[:n]).sum())})

    for low in (("bf16", "amp_bf16") if args.bf16 else ()):
        _, bb, bc, bper, blab = run_ours(args.arch, images, classes, low, 128)
        emit({"case": "ours", "precision": low, "build_with_text_s": round(bb, 3), "cold_s": round(bc, 3),
              "warm_s_per_image": round(statistics.median(bper[1:] or bper), 4),
              "label_agreement_vs_fp32": round(float((blab == labels).mean()), 6)})

    if args.rsovss_repo:
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "official", "rsovss_segment.py")
        out = subprocess.run([sys.executable, script, "--rsovss-repo", args.rsovss_repo, "--size", str(args.size),
                              "--classes", str(args.classes), "--repeats", str(args.official_repeats),
                              "--cold-repeats", "1"], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        recs = {r["what"]: r for r in (json.loads(ln) for ln in out.stdout.splitlines() if ln.startswith("{"))}
        cold1 = recs["official_rsovss_segment_cold"]["seconds"]
        owarm = recs["official_rsovss_segment_warm"]["seconds"]
        ocold = cold1 + (args.images - 1) * owarm
        emit({"case": "official", "cold_1_image_s": cold1, "text_s": recs["official_rsovss_segment_cold"].get(
              "text_seconds"), "warm_s_per_image": owarm, "cold_s_extrapolated": round(ocold, 3),
              "windows": recs["official_rsovss_segment_warm"].get("windows"),
              "prompts": recs["official_rsovss_segment_warm"].get("prompts")})
        emit({"case": "ratios", "images": args.images, "cold_speedup": round(ocold / ours["cold_s"], 3),
              "warm_speedup": round(owarm / ours["warm_s_per_image"], 3),
              "first_image_speedup": round(cold1 / (ours["build_with_text_s"] + ours["first_image_s"]), 3)})
    emit({"case": "machine_after", "fp32_matmul_gflops": round(matmul_peak() / 1e9, 1)})


if __name__ == "__main__":
    main()
