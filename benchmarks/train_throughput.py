"""Training throughput: our FarSLIP step vs a reference-style step, side by side in one run.

    .venv/bin/python benchmarks/train_throughput.py --arch farslip-test-tiny --stages 1,2 --batch 8
    .venv/bin/python benchmarks/train_throughput.py --arch ViT-B-16-quickgelu --batch 2 --steps 2   # CPU: slow
    .venv/bin/python benchmarks/train_throughput.py --arch farslip-vitb16 --stages 2 --batch 2 --steps 2 \
        --precision fp32 --no-reference --trim-compare --caption-tokens 60 --prompt-tokens 8   # trimming alone

Paths (each one full training step: forward, backward, optimizer step):

* ``reference``: how the official code executes (docs/reference/method.md §1.2, §2.4, §7.18): separate encoder
  calls for the global images and for the crops, dense maps computed for every image even when no loss
  uses them (stage 2), a per-parameter ("for") AdamW, fp16 autocast with a GradScaler on GPU (fp32 on
  CPU, where fp16 autocast is not a reference configuration);
* ``ours``: :class:`farslip_ext.train.task.FarSLIPTask` (one batched encoder call, only declared features),
  fused AdamW, bf16 autocast (``--precision``), optional ``--compile`` / ``--grad-ckpt``;
* with ``--trim-compare``, a ``trim_compare`` record: ours with ``trim_text=False`` (every text padded to
  the context) and with ``trim_text=True``, in one process on one model and optimizer, steps interleaved
  (padded, trimmed, then trimmed, padded, ... so that a drift of the shared machine hits both), with the
  median of each and ``speedup`` = the median over rounds of padded / trimmed in the same round. Texts
  fill the whole context unless ``--caption-tokens`` / ``--prompt-tokens`` give them a real length.

Prints JSON lines: step time (median), samples/s, peak memory, model FLOPs per sample (analytic: every
image once through its tower and every text once at its real length, x3 for forward + backward; ``counted`` is torch's
FlopCounterMode, which misses fused attention kernels), achieved model FLOP/s and model FLOP utilisation
(``mfu``: against the best fp32 or bf16 matmul rate measured in the same run), peak memory and
``speedup_vs_reference``. Times are never asserted anywhere.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import clip_image_flops, clip_text_flops, count_flops, emit, machine, matmul_peak, median_time  # noqa: E402,E501

import open_clip  # noqa: E402

import farslip_ext  # noqa: E402,F401
from farslip_ext.models.dense import dense_forward  # noqa: E402
from farslip_ext.registry import LOSSES, TASKS  # noqa: E402
from farslip_ext.train.optim import build_optimizer  # noqa: E402


def make_batch(stage: int, b: int, k: int, size: int, ctx: int, seed: int = 0, caption_tokens: int = 0,
               prompt_tokens: int = 0) -> Dict[str, torch.Tensor]:
    """Random images and tokens. Texts fill the whole context (EOT last) unless ``caption_tokens`` /
    ``prompt_tokens`` give a real length (SOT + words + EOT, then zero padding, as the tokenizer writes)."""
    g = torch.Generator().manual_seed(seed)

    def tok(length: int, *shape: int) -> torch.Tensor:
        t = torch.randint(1, 49000, (*shape, ctx), generator=g)
        n = min(length, ctx) if length > 0 else ctx
        t[..., n - 1] = 49407  # an EOT token for argmax pooling
        t[..., n:] = 0
        return t

    batch = {"global_image": torch.randn(b, 3, size, size, generator=g), "global_text": tok(caption_tokens, b)}
    boxes = torch.tensor([0.1, 0.1, 0.6, 0.7, 1.0]).repeat(b, k, 1)
    if stage == 1:
        batch["subset_images"] = torch.randn(b, k, 3, size, size, generator=g)
        batch["subset_boxes"] = boxes
    else:
        batch["local_images"] = torch.randn(b, k, 3, size, size, generator=g)
        batch["local_texts"] = tok(prompt_tokens, b, k)
        batch["local_categories"] = torch.randint(0, 5, (b, k), generator=g)
        batch["boxes"] = boxes
    return batch


def task_config(stage: int, trim_text: bool = True) -> Dict[str, Any]:
    if stage == 1:
        return dict(type="FarSLIPTask", trim_text=trim_text,
                    losses=dict(global_itc=dict(type="GlobalITCLoss"),
                                distill=dict(type="PatchDistillLoss", align="roi2pooled")))
    return dict(type="FarSLIPTask", region_head=dict(type="CropClsHead"), trim_text=trim_text,
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


def _real_length(tokens: torch.Tensor) -> int:
    """The longest real row (through the EOT token, the highest id): the columns a caption needs."""
    return int(tokens.reshape(-1, tokens.shape[-1]).argmax(dim=-1).max()) + 1


def step_model_flops(model: torch.nn.Module, batch: Dict[str, torch.Tensor], stage: int) -> float:
    """Model FLOPs of one step: the necessary work (every image once, every text once at its real
    length), forward + backward = 3x forward."""
    b = batch["global_image"].shape[0]
    crops = int((batch["subset_boxes" if stage == 1 else "boxes"][..., 4] > 0.5).sum())
    text_flops = b * clip_text_flops(model, _real_length(batch["global_text"]))
    if stage == 2:
        text_flops += crops * clip_text_flops(model, _real_length(batch["local_texts"]))
    return 3 * ((b + crops) * clip_image_flops(model) + text_flops)


def train_step(fwd, opt, batch: Dict[str, torch.Tensor], device: str, dtype: Optional[torch.dtype],
               scaler: Optional[torch.amp.GradScaler] = None) -> torch.Tensor:
    """One step: ``fwd(batch)`` under autocast (``dtype=None``: none), the sum of the ``*_loss`` terms,
    backward and optimizer step (through ``scaler`` when given). Returns the detached total."""
    with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
        losses = fwd(batch)
    total = sum(v for k, v in losses.items() if k.endswith("_loss"))
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        total.backward()
        opt.step()
    else:
        scaler.scale(total).backward()
        scaler.step(opt)
        scaler.update()
    return total.detach()


def build(arch: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return open_clip.create_model(arch)


def run_path(name: str, arch: str, stage: int, batch: Dict[str, torch.Tensor], device: str, precision: str,
             steps: int, compile_: bool, grad_ckpt: bool, peaks: Dict[str, float],
             trim_text: bool = True) -> Dict[str, Any]:
    model = build(arch).to(device).train()
    if grad_ckpt:
        model.set_grad_checkpointing(True)
    batch = {k: v.to(device) for k, v in batch.items()}
    if name == "reference":
        fwd = ReferenceStyleStep(model, stage).losses
        opt = build_optimizer(model, lr=1e-6, weight_decay=1.0, impl="for")
    else:
        task = TASKS.build(task_config(stage, trim_text), default_args=dict(model=model))
        fwd = (lambda b: task(b)[0])
        if compile_:
            fwd = torch.compile(fwd)
        opt = build_optimizer(model, lr=1e-6, weight_decay=1.0, impl="fused")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    scaler = torch.amp.GradScaler(device, enabled=dtype == torch.float16)

    def step() -> float:
        return float(train_step(fwd, opt, batch, device, dtype, scaler))

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = median_time(step, repeats=steps, warmup=1)
    mem = (torch.cuda.max_memory_allocated() if device == "cuda"
           else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024)
    counted = count_flops(step)
    b = batch["global_image"].shape[0]
    model_flops = step_model_flops(model, batch, stage)
    peak = peaks["bf16" if dtype == torch.bfloat16 else "fp32"]
    return {"path": name, "arch": arch, "stage": stage, "precision": precision, "batch": b,
            "step_s": round(t, 4), "samples_per_s": round(b / t, 2), "peak_mem_mb": round(mem / 2 ** 20, 1),
            "model_gflops_per_sample": round(model_flops / b / 1e9, 2),
            "counted_gflops_per_sample": round(counted / b / 1e9, 2),
            "achieved_model_gflops": round(model_flops / t / 1e9, 1),
            "mfu": round(model_flops / t / peak, 3), "compile": compile_, "grad_ckpt": grad_ckpt,
            "trim_text": trim_text}


def trim_compare(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Padded vs trimmed text in the same step, interleaved on one model (see the module docstring)."""
    import statistics
    import time

    dev, stage, rounds = spec["device"], spec["stage"], spec["steps"]
    model = build(spec["arch"]).to(dev).train()
    size, ctx = model.visual.image_size[0], model.context_length
    batch = make_batch(stage, spec["batch"], spec["crops"], size, ctx, caption_tokens=spec.get("caption_tokens", 0),
                       prompt_tokens=spec.get("prompt_tokens", 0))
    batch = {k: v.to(dev) for k, v in batch.items()}
    tasks = {trim: TASKS.build(task_config(stage, trim), default_args=dict(model=model)) for trim in (False, True)}
    opt = build_optimizer(model, lr=1e-6, weight_decay=1.0, impl="fused")
    dtype = {"fp32": None, "bf16": torch.bfloat16}[spec["precision"]]

    def step(trim: bool) -> float:
        t0 = time.perf_counter()
        train_step(lambda b: tasks[trim](b)[0], opt, batch, dev, dtype)
        if dev == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    step(False), step(True)  # warm-up
    times: Dict[bool, list] = {False: [], True: []}
    for r in range(rounds):
        for trim in ((False, True) if r % 2 == 0 else (True, False)):
            times[trim].append(step(trim))
    ratios = [p / t for p, t in zip(times[False], times[True])]
    return {"case": "trim_compare", "arch": spec["arch"], "stage": stage, "precision": spec["precision"],
            "batch": spec["batch"], "crops": spec["crops"], "caption_tokens": _real_length(batch["global_text"]),
            "prompt_tokens": _real_length(batch["local_texts"]) if stage == 2 else None, "context": ctx,
            "padded_step_s": round(statistics.median(times[False]), 3),
            "trimmed_step_s": round(statistics.median(times[True]), 3),
            "all_padded_s": [round(t, 3) for t in times[False]], "all_trimmed_s": [round(t, 3) for t in times[True]],
            "speedup": round(statistics.median(ratios), 3)}


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
    batch = make_batch(spec["stage"], spec["batch"], spec["crops"], size, ctx,
                       caption_tokens=spec.get("caption_tokens", 0), prompt_tokens=spec.get("prompt_tokens", 0))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = run_path(spec["path"], spec["arch"], spec["stage"], batch, dev, spec["precision"], spec["steps"],
                 spec["compile"], spec["grad_ckpt"], peaks, trim_text=spec.get("trim_text", True))
    r["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    r["rss_before_steps_mb"] = round(rss_before / 1024, 1)
    r.update(crops=spec["crops"], caption_tokens=spec.get("caption_tokens", 0) or ctx,
             prompt_tokens=spec.get("prompt_tokens", 0) or ctx)
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
    p.add_argument("--caption-tokens", type=int, default=0,
                   help="real length of the captions (SOT..EOT); 0: the whole context (default)")
    p.add_argument("--prompt-tokens", type=int, default=0,
                   help="real length of the stage-2 region prompts; 0: the whole context (default)")
    p.add_argument("--trim-compare", action="store_true",
                   help="instead of the paths: ours with padded vs trimmed text, interleaved (--steps rounds)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one path in this process
    args = p.parse_args()
    if args.one:
        spec = json.loads(args.one)
        if spec.get("path") == "trim_compare":
            print(json.dumps(trim_compare(spec)), flush=True)
            return
        if spec.get("path") == "drift":
            model = build(spec["arch"])
            b = make_batch(spec["stage"], spec["batch"], spec["crops"], model.visual.image_size[0], model.context_length,
                           caption_tokens=spec.get("caption_tokens", 0), prompt_tokens=spec.get("prompt_tokens", 0))
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
                          crops=int(args.crops.split(",")[0]), device=dev, precision=args.precision,
                          caption_tokens=args.caption_tokens, prompt_tokens=args.prompt_tokens)))
        for b in [int(x) for x in args.batch.split(",")]:
            for k in [int(x) for x in args.crops.split(",")]:
                base = dict(arch=args.arch, stage=stage, batch=b, crops=k, steps=args.steps, device=dev, peaks=peaks,
                            compile=False, grad_ckpt=False, caption_tokens=args.caption_tokens,
                            prompt_tokens=args.prompt_tokens)
                ref = None
                if not args.no_reference:
                    ref = run(dict(base, path="reference", precision="fp16" if dev == "cuda" else "fp32"))
                    emit(ref)
                for prec in dict.fromkeys(["fp32", args.precision]):
                    if args.trim_compare:
                        emit(run(dict(base, path="trim_compare", precision=prec)))
                        continue
                    r = run(dict(base, path="ours", precision=prec, compile=args.compile, grad_ckpt=args.grad_ckpt))
                    if ref is not None:
                        r["speedup_vs_reference"] = round(ref["step_s"] / r["step_s"], 3)
                    emit(r)


if __name__ == "__main__":
    main()
