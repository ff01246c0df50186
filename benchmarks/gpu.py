"""GPU readiness: stage-1 / stage-2 training pairs/s + MFU and OVSS images/s on one device, in < 5 minutes.

    bash benchmarks/gpu.sh                                  # one GPU: ViT-B/16, bf16, the full matrix
    bash benchmarks/gpu.sh --batch 256 --budget-s 240       # bigger batch, stricter wall-clock budget
    .venv/bin/python benchmarks/gpu.py --tiny --device cpu  # the CPU smoke run the test suite does

Cases, each printed as one JSON line as soon as it is measured:

* ``train``: one full FarSLIP training step (:class:`farslip_ext.train.task.FarSLIPTask` with the stage's
  losses, as ``benchmarks/train_throughput.py``), bf16 autocast, fused AdamW
  (:func:`farslip_ext.train.optim.build_optimizer`, ``impl="fused"``), the task's forward under
  ``torch.compile``, for stage 1 and stage 2, with and without gradient checkpointing (``--no-compile``
  adds nothing but drops compile; ``--eager`` adds the eager rows as well). ``pairs_per_s`` = image-text
  pairs (the global images) per second; ``images_per_s`` also counts the crops. ``mfu``: analytic model
  FLOPs (every image and caption once through its tower, x3 for forward + backward,
  ``_common.clip_image_flops`` / ``clip_text_flops``) per second over the bf16 dense peak: the vendor
  figure for known GPUs (``peak_source: "spec"``, H100/H200 SXM 989 TFLOP/s) or, otherwise and always
  as ``mfu_measured``, the best square bf16 matmul rate measured in the same run.
* ``ovss``: :class:`farslip_ext.ovss.OVSSPredictor` (SegEarth, 224/112 windows = 9 per 448² image,
  80 templates x 6 classes, text computed once, then cached), ``images_per_s`` over ``--ovss-images``
  images per call, fp32 and bf16, with the bf16 label agreement against fp32 on the same images.

Random weights (no download, no network): the speed does not depend on them. ``--budget-s`` (default
270) skips the remaining cases once it is spent, printing ``{"case": "skipped", ...}``; the compile
time is part of each case's ``setup_s``, not of its step time. Times are never asserted anywhere.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import clip_image_flops, emit, machine, matmul_peak  # noqa: E402
from train_throughput import make_batch, step_model_flops, task_config, train_step  # noqa: E402

#: bf16 dense tensor-core peak (no sparsity), FLOP/s, by a substring of ``torch.cuda.get_device_name``.
SPEC_BF16_PEAK = {"H200": 989.4e12, "H100": 989.4e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12,
                  "A10G": 125e12, "RTX 4090": 165e12, "B200": 2250e12}
CLASSES = ["road", "building", "low vegetation", "tree", "car", "clutter"]  # Potsdam, one name per class


def _sync(dev: str) -> None:
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def _sig(x: float) -> float:
    return float(f"{x:.3g}")


def spec_peak(dev: str) -> Optional[float]:
    if not dev.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(0)
    for key, value in SPEC_BF16_PEAK.items():
        if key in name:
            return value
    return None


def train_case(arch: str, stage: int, batch: int, crops: int, dev: str, steps: int, compile_: bool,
               grad_ckpt: bool, compile_backend: str, peaks: Dict[str, Optional[float]]) -> Dict[str, Any]:
    import open_clip

    from farslip_ext.registry import TASKS
    from farslip_ext.train.optim import build_optimizer

    t_setup = time.perf_counter()
    torch.manual_seed(0)
    model = open_clip.create_model(arch).to(dev).train()
    if grad_ckpt:
        model.set_grad_checkpointing(True)
    size, ctx = model.visual.image_size[0], model.context_length
    data = {k: v.to(dev) for k, v in make_batch(stage, batch, crops, size, ctx).items()}
    task = TASKS.build(task_config(stage), default_args=dict(model=model))
    fwd = lambda b: task(b)[0]  # noqa: E731
    if compile_:
        fwd = torch.compile(fwd, backend=compile_backend)
    opt = build_optimizer(model, lr=1e-6, weight_decay=0.2, impl="fused" if dev.startswith("cuda") else "auto")

    def step() -> torch.Tensor:
        return train_step(fwd, opt, data, dev.split(":")[0], torch.bfloat16)

    for _ in range(2):  # compile + autotune + allocator warm-up
        step()
    _sync(dev)
    setup_s = time.perf_counter() - t_setup
    if dev.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    _sync(dev)
    step_s = (time.perf_counter() - t0) / steps
    n_crops = int((data["subset_boxes" if stage == 1 else "boxes"][..., 4] > 0.5).sum())
    flops = step_model_flops(model, data, stage)
    peak = peaks["spec"] or peaks["measured"]
    rec = {"case": "train", "arch": arch, "stage": stage, "precision": "bf16", "batch": batch, "crops": crops,
           "compile": compile_backend if compile_ else False, "grad_ckpt": grad_ckpt, "optimizer": type(opt).__name__,
           "fused": bool(opt.defaults.get("fused")), "steps": steps, "step_s": round(step_s, 4),
           "pairs_per_s": round(batch / step_s, 1), "images_per_s": round((batch + n_crops) / step_s, 1),
           "model_tflops_per_step": _sig(flops / 1e12), "achieved_tflops": _sig(flops / step_s / 1e12),
           "mfu": _sig(flops / step_s / peak), "peak_source": "spec" if peaks["spec"] else "measured",
           "mfu_measured": _sig(flops / step_s / peaks["measured"]), "setup_s": round(setup_s, 1),
           "loss": round(float(loss), 4), "finite": bool(torch.isfinite(loss))}
    if dev.startswith("cuda"):
        rec["peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    return rec


def ovss_cases(arch: str, dev: str, n_images: int, size: int, n_classes: int, repeats: int,
               precisions: List[str], peaks: Dict[str, Optional[float]]) -> List[Dict[str, Any]]:
    import open_clip

    from farslip_ext.ovss import OVSSPredictor

    torch.manual_seed(0)
    net = open_clip.create_model(arch).eval()
    crop = net.visual.image_size[0]
    g = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (n_images, 3, size, size), generator=g, dtype=torch.uint8)
    out, labels = [], {}
    for prec in precisions:
        t0 = time.perf_counter()
        pred = OVSSPredictor(net, CLASSES[:n_classes], attn="SegEarth", slide_crop=crop, slide_stride=crop // 2,
                             resize_long_side=None, window_batch_size=1024, precision=prec, device=dev,
                             text_cache=False, text_progress=False)
        _sync(dev)
        build_s = time.perf_counter() - t0
        images = [pred.normalize(x.to(pred.device).float()) for x in rgb]
        shapes = [(size, size)] * n_images

        def run(pred=pred, images=images, shapes=shapes) -> torch.Tensor:
            with torch.inference_mode():
                return torch.stack([pred.postprocess_logits(lg)[1][0] for lg in pred.inference(images, shapes)])

        labels[prec] = run()  # warm-up (and the labels)
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(repeats):
            run()
        _sync(dev)
        t = (time.perf_counter() - t0) / repeats
        windows = len(pred.plan(images))
        flops = windows * clip_image_flops(pred.clip)
        peak = (peaks["spec"] or peaks["measured"]) if prec == "bf16" else peaks["measured_fp32"]
        rec = {"case": "ovss", "arch": arch, "precision": prec, "images": n_images, "size": size,
               "classes": n_classes, "prompts": n_classes * len(pred.templates), "windows": windows,
               "build_with_text_s": round(build_s, 3), "s_per_call": round(t, 4),
               "images_per_s": round(n_images / t, 2), "achieved_tflops": _sig(flops / t / 1e12),
               "fraction_of_peak": _sig(flops / t / peak)}
        if prec != precisions[0]:
            rec["label_agreement_vs_" + precisions[0]] = round(float((labels[prec] == labels[precisions[0]])
                                                                     .float().mean()), 6)
        out.append(rec)
    return out


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="ViT-B-16-quickgelu", help="training architecture (FarSLIP's ViT-B/16)")
    p.add_argument("--ovss-arch", default="farslip-vitb16", help="OVSS architecture (248-token LongCLIP text)")
    p.add_argument("--batch", type=int, default=128, help="pairs (global images) per step")
    p.add_argument("--crops", type=int, default=4, help="crops per image (stage-1 subsets, stage-2 objects)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per case (after 2 warm-up steps)")
    p.add_argument("--stages", default="1,2")
    p.add_argument("--no-compile", action="store_true", help="eager only")
    p.add_argument("--eager", action="store_true", help="also time the eager step")
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--ovss-images", type=int, default=32)
    p.add_argument("--ovss-size", type=int, default=448)
    p.add_argument("--ovss-repeats", type=int, default=3)
    p.add_argument("--budget-s", type=float, default=270.0, help="skip remaining cases after this many seconds")
    p.add_argument("--tiny", action="store_true", help="farslip-test-tiny(-long), small batch: a smoke run")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    if args.tiny:
        args.arch, args.ovss_arch = "farslip-test-tiny", "farslip-test-tiny-long"
        args.batch, args.crops, args.steps = min(args.batch, 2), min(args.crops, 2), min(args.steps, 1)
        args.ovss_images, args.ovss_size, args.ovss_repeats = min(args.ovss_images, 2), 128, 1
    os.environ.setdefault("FARSLIP_CACHE", tempfile.mkdtemp(prefix="farslip-gpu-bench-"))
    import farslip_ext  # noqa: F401  (registers the farslip-* architectures)

    start = time.perf_counter()
    dev = args.device
    if dev.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    n = 8192 if dev.startswith("cuda") else 512
    peaks = {"spec": spec_peak(dev), "measured": matmul_peak(torch.bfloat16, n=n, device=dev),
             "measured_fp32": matmul_peak(torch.float32, n=n, device=dev)}
    emit({"bench": "gpu", "machine": machine(), "device": dev, "arch": args.arch, "ovss_arch": args.ovss_arch,
          "bf16_peak_tflops": {"spec": peaks["spec"] and round(peaks["spec"] / 1e12, 1),
                               "measured": round(peaks["measured"] / 1e12, 2)},
          "fp32_matmul_tflops_measured": round(peaks["measured_fp32"] / 1e12, 2)})

    def over_budget(what: str) -> bool:
        spent = time.perf_counter() - start
        if spent > args.budget_s:
            emit({"case": "skipped", "what": what, "elapsed_s": round(spent, 1), "budget_s": args.budget_s})
            return True
        return False

    modes = []
    if not args.no_compile:
        modes += [(True, False), (True, True)]
    if args.no_compile or args.eager:
        modes += [(False, False), (False, True)]
    for stage in [int(s) for s in args.stages.split(",") if s]:
        for compile_, ckpt in modes:
            if over_budget(f"train stage {stage} compile={compile_} grad_ckpt={ckpt}"):
                continue
            emit(train_case(args.arch, stage, args.batch, args.crops, dev, args.steps, compile_, ckpt,
                            args.compile_backend, peaks))
            if dev.startswith("cuda"):
                torch.cuda.empty_cache()
    if not over_budget("ovss"):
        for rec in ovss_cases(args.ovss_arch, dev, args.ovss_images, args.ovss_size, len(CLASSES),
                              args.ovss_repeats, ["fp32", "bf16"], peaks):
            emit(rec)
    emit({"case": "done", "elapsed_s": round(time.perf_counter() - start, 1)})


if __name__ == "__main__":
    main()
