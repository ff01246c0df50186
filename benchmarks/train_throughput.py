"""Training throughput: our FarSLIP step vs a reference-style step, side by side in one run.

    .venv/bin/python benchmarks/train_throughput.py --arch farslip-test-tiny --stages 1,2 --batch 8
    .venv/bin/python benchmarks/train_throughput.py --arch ViT-B-16-quickgelu --batch 2 --steps 2   # CPU: slow

Paths (each one full training step: forward, backward, optimizer step):

* ``reference``: how the official code executes (docs/reference/method.md §1.2, §2.4, §7.18): separate encoder
  calls for the global images and for the crops, dense maps computed for every image even when no loss
  uses them (stage 2), a per-parameter ("for") AdamW, fp16 autocast with a GradScaler on GPU (fp32 on
  CPU, where fp16 autocast is not a reference configuration);
* ``ours``: :class:`farslip_ext.train.task.FarSLIPTask` (one batched encoder call, only declared features),
  fused AdamW, bf16 autocast (``--precision``), optional ``--compile`` / ``--grad-ckpt``.

Prints JSON lines: step time (median), samples/s, peak memory, model FLOPs per sample (analytic: every
image and caption once through its tower, x3 for forward + backward; ``counted`` is torch's
FlopCounterMode, which misses fused attention kernels), achieved model FLOP/s and model FLOP utilisation
(``mfu``: against the best fp32 or bf16 matmul rate measured in the same run), peak memory and
``speedup_vs_reference``. Times are never asserted anywhere.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
from typing import Any, Dict

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import clip_image_flops, clip_text_flops, count_flops, emit, machine, matmul_peak, median_time  # noqa: E402,E501

import open_clip  # noqa: E402

import farslip_ext  # noqa: E402,F401
from farslip_ext.models.dense import dense_forward  # noqa: E402
from farslip_ext.registry import LOSSES, TASKS  # noqa: E402
from farslip_ext.train.optim import build_optimizer  # noqa: E402


def make_batch(stage: int, b: int, k: int, size: int, ctx: int, seed: int = 0) -> Dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tok = lambda *shape: torch.randint(1, 49000, (*shape, ctx), generator=g).clamp_max(49406)  # noqa: E731
    batch = {"global_image": torch.randn(b, 3, size, size, generator=g), "global_text": tok(b)}
    batch["global_text"][:, -1] = 49407  # an EOT token for argmax pooling
    boxes = torch.tensor([0.1, 0.1, 0.6, 0.7, 1.0]).repeat(b, k, 1)
    if stage == 1:
        batch["subset_images"] = torch.randn(b, k, 3, size, size, generator=g)
        batch["subset_boxes"] = boxes
    else:
        batch["local_images"] = torch.randn(b, k, 3, size, size, generator=g)
        batch["local_texts"] = tok(b, k)
        batch["local_texts"][..., -1] = 49407
        batch["local_categories"] = torch.randint(0, 5, (b, k), generator=g)
        batch["boxes"] = boxes
    return batch


def task_config(stage: int) -> Dict[str, Any]:
    if stage == 1:
        return dict(type="FarSLIPTask", losses=dict(global_itc=dict(type="GlobalITCLoss"),
                                                    distill=dict(type="PatchDistillLoss", align="roi2pooled")))
    return dict(type="FarSLIPTask", region_head=dict(type="CropClsHead"),
                losses=dict(global_itc=dict(type="GlobalITCLoss"), region=dict(type="RegionCategoryLoss")))


class ReferenceStyleStep:
    """The official code's execution path, for comparison (same losses, same maths)."""

    def __init__(self, model: torch.nn.Module, stage: int) -> None:
        self.model, self.stage = model, stage
        self.itc = LOSSES.build(dict(type="GlobalITCLoss"))
        self.distill = LOSSES.build(dict(type="PatchDistillLoss", align="roi2pooled"))
        self.region = LOSSES.build(dict(type="RegionCategoryLoss"))

    def losses(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        m = self.model
        g = dense_forward(m, batch["global_image"], "SegEarth")  # dense map always computed
        txt = F.normalize(m.encode_text(batch["global_text"]), dim=-1)
        scale = m.logit_scale.exp()
        out = dict(self.itc(F.normalize(g.image_embed, dim=-1), txt, scale))
        if self.stage == 1:
            boxes = batch["subset_boxes"]
            crops = batch["subset_images"][boxes[..., 4] > 0.5]
            c = dense_forward(m, crops, "SegEarth")  # a separate call for the crops
            out.update(self.distill(g.patch_tokens, g.grid, boxes, crop_patches=c.patch_tokens))
        else:
            boxes = batch["boxes"]
            valid = boxes[..., 4] > 0.5
            c = dense_forward(m, batch["local_images"][valid], "SegEarth")  # dense map unused by the CLS head
            region = F.normalize(c.image_embed, dim=-1)
            t = F.normalize(m.encode_text(batch["local_texts"][valid]), dim=-1)
            out.update(self.region(region, t, scale, labels=batch["local_categories"][valid]))
        return out


def build(arch: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return open_clip.create_model(arch)


def run_path(name: str, arch: str, stage: int, batch: Dict[str, torch.Tensor], device: str, precision: str,
             steps: int, compile_: bool, grad_ckpt: bool, peaks: Dict[str, float]) -> Dict[str, Any]:
    model = build(arch).to(device).train()
    if grad_ckpt:
        model.set_grad_checkpointing(True)
    batch = {k: v.to(device) for k, v in batch.items()}
    if name == "reference":
        fwd = ReferenceStyleStep(model, stage).losses
        opt = build_optimizer(model, lr=1e-6, weight_decay=1.0, impl="for")
    else:
        task = TASKS.build(task_config(stage), default_args=dict(model=model))
        fwd = (lambda b: task(b)[0])
        if compile_:
            fwd = torch.compile(fwd)
        opt = build_optimizer(model, lr=1e-6, weight_decay=1.0, impl="fused")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    scaler = torch.amp.GradScaler(device, enabled=dtype == torch.float16)

    def step() -> float:
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            losses = fwd(batch)
        total = sum(v for k, v in losses.items() if k.endswith("_loss"))
        opt.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(opt)
        scaler.update()
        return float(total.detach())

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = median_time(step, repeats=steps, warmup=1)
    mem = (torch.cuda.max_memory_allocated() if device == "cuda"
           else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024)
    counted = count_flops(step)
    b = batch["global_image"].shape[0]
    crops = int((batch["subset_boxes" if stage == 1 else "boxes"][..., 4] > 0.5).sum())
    texts = b + (crops if stage == 2 else 0)
    # model FLOPs: the necessary work (every image and caption once through its tower), forward + backward = 3x
    model_flops = 3 * ((b + crops) * clip_image_flops(model) + texts * clip_text_flops(model))
    peak = peaks["bf16" if dtype == torch.bfloat16 else "fp32"]
    return {"path": name, "arch": arch, "stage": stage, "precision": precision, "batch": b,
            "step_s": round(t, 4), "samples_per_s": round(b / t, 2), "peak_mem_mb": round(mem / 2 ** 20, 1),
            "model_gflops_per_sample": round(model_flops / b / 1e9, 2),
            "counted_gflops_per_sample": round(counted / b / 1e9, 2),
            "achieved_model_gflops": round(model_flops / t / 1e9, 1),
            "mfu": round(model_flops / t / peak, 3), "compile": compile_, "grad_ckpt": grad_ckpt}


def loss_drift(arch: str, stage: int, batch: Dict[str, torch.Tensor], device: str, precision: str) -> Dict[str, Any]:
    """Total and per-term loss under ``precision`` autocast vs fp32, same weights and batch (one forward)."""
    model = build(arch).to(device)
    task = TASKS.build(task_config(stage), default_args=dict(model=model))
    batch = {k: v.to(device) for k, v in batch.items()}
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    with torch.no_grad():
        ref = task(batch)[0]
        with torch.autocast(device, dtype=dtype):
            low = task(batch)[0]
    return {"case": "loss_drift", "arch": arch, "stage": stage, "precision": precision,
            **{f"{k}_fp32": round(float(ref[k]), 6) for k in ref},
            **{f"{k}_rel_drift": float(f"{abs(float(low[k]) - float(ref[k])) / max(abs(float(ref[k])), 1e-12):.2e}")
               for k in ref}}


def _one(spec: Dict[str, Any]) -> Dict[str, Any]:
    dev = spec["device"]
    peaks = spec["peaks"]
    model = build(spec["arch"])
    size, ctx = model.visual.image_size[0], model.context_length
    del model
    batch = make_batch(spec["stage"], spec["batch"], spec["crops"], size, ctx)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = run_path(spec["path"], spec["arch"], spec["stage"], batch, dev, spec["precision"], spec["steps"],
                 spec["compile"], spec["grad_ckpt"], peaks)
    r["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    r["rss_before_steps_mb"] = round(rss_before / 1024, 1)
    r["crops"] = spec["crops"]
    return r


def main() -> None:
    import json
    import subprocess

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="farslip-test-tiny")
    p.add_argument("--stages", default="1,2")
    p.add_argument("--batch", default="8", help="comma list: the batch-size scaling sweep")
    p.add_argument("--crops", default="4", help="comma list: crops per image (stage 1 sweep)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--precision", default="bf16", help="ours: bf16 (default), fp32 or fp16")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--grad-ckpt", action="store_true")
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one path in this process
    args = p.parse_args()
    if args.one:
        spec = json.loads(args.one)
        if spec.get("path") == "drift":
            model = build(spec["arch"])
            b = make_batch(spec["stage"], spec["batch"], spec["crops"], model.visual.image_size[0], model.context_length)
            print(json.dumps(loss_drift(spec["arch"], spec["stage"], b, spec["device"], spec["precision"])), flush=True)
        else:
            print(json.dumps(_one(spec)), flush=True)
        return
    dev = args.device
    peaks = {"fp32": matmul_peak(torch.float32, device=dev), "bf16": matmul_peak(torch.bfloat16, device=dev)}
    emit({"bench": "train_throughput", "machine": machine(), "matmul_peak_gflops":
          {k: round(v / 1e9, 1) for k, v in peaks.items()}})

    def run(spec: Dict[str, Any]) -> Dict[str, Any]:
        out = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        return json.loads(out.stdout.strip().splitlines()[-1])

    for stage in [int(s) for s in args.stages.split(",")]:
        if args.precision != "fp32":
            emit(run(dict(path="drift", arch=args.arch, stage=stage, batch=int(args.batch.split(",")[0]),
                          crops=int(args.crops.split(",")[0]), device=dev, precision=args.precision)))
        for b in [int(x) for x in args.batch.split(",")]:
            for k in [int(x) for x in args.crops.split(",")]:
                base = dict(arch=args.arch, stage=stage, batch=b, crops=k, steps=args.steps, device=dev, peaks=peaks,
                            compile=False, grad_ckpt=False)
                ref = None
                if not args.no_reference:
                    ref = run(dict(base, path="reference", precision="fp16" if dev == "cuda" else "fp32"))
                    emit(ref)
                for prec in dict.fromkeys(["fp32", args.precision]):
                    r = run(dict(base, path="ours", precision=prec, compile=args.compile, grad_ckpt=args.grad_ckpt))
                    if ref is not None:
                        r["speedup_vs_reference"] = round(ref["step_s"] / r["step_s"], 3)
                    emit(r)


if __name__ == "__main__":
    main()
