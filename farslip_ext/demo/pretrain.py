"""Pretrain the demo CLIP (``farslip-demo-tiny``) from scratch, export it as fp16 safetensors.

``tools/pretrain_demo_clip.py`` is the command; this module holds the steps so tests can call them:

1. :func:`farslip_ext.demo.data.write_pretrain_pairs` writes seeded synthetic image-caption pairs
   (short captions, scene-label prompts, region captions, region crops with category prompts);
2. the project's training loop (:func:`farslip_ext.train.loop.train`) trains the model from random
   init with ``farslip_ext/demo/pretrain_config.py`` (global ITC, lr 5e-4, fp32, CPU);
3. :func:`export_weights` writes the final weights in open_clip keys as fp16 safetensors (< 5 MB);
4. the exported file is loaded back with ``farslip_ext.create_model`` and scored with the real
   zero-shot classification and retrieval evaluators on held-out synthetic scenes;
5. a JSON record (seed, command, data sizes, metrics, sha256) is written next to the weights.
"""
from __future__ import annotations

import json
import logging
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import torch

from farslip_ext.catalogue import CATALOGUE
from farslip_ext.demo.data import SEED_OFFSETS, write_pretrain_pairs
from farslip_ext.hub import packaged_path
from farslip_ext.io import sha256_file

__all__ = ["ARCH", "PRETRAIN_CONFIG", "DEMO_WEIGHTS", "DEMO_RECORD", "FULL", "QUICK", "pretrain_demo_clip",
           "export_weights", "evaluate_weights"]

logger = logging.getLogger(__name__)

ARCH = "farslip-demo-tiny"
PRETRAIN_CONFIG = Path(__file__).resolve().parent / "pretrain_config.py"
#: The shipped weights: the catalogue's ``farslip-demo-tiny:demo`` entry (one place names the file).
DEMO_WEIGHTS = packaged_path(CATALOGUE.entry(ARCH, "demo"))
DEMO_RECORD = DEMO_WEIGHTS.with_suffix(".json")

#: Settings of the shipped file, and of ``--quick`` (a smoke run: tiny data, a few steps).
FULL: Dict[str, int] = dict(scenes=4000, steps=600, batch_size=64, warmup=40, eval_per_class=10, eval_retrieval=100)
QUICK: Dict[str, int] = dict(scenes=24, steps=3, batch_size=8, warmup=1, eval_per_class=1, eval_retrieval=8)


def export_weights(checkpoint: Union[str, Path], out: Union[str, Path]) -> Path:
    """Write the model of a training checkpoint (open_clip keys) as fp16 safetensors.

    The header carries only ``{"format": "pt"}``: safetensors writes metadata keys in hash order, so
    more than one key would make the bytes (and the sha256) differ between identical runs. The
    provenance lives in the JSON record next to the file.
    """
    from safetensors.torch import save_file

    ck = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
    sd = ck["state_dict"] if "state_dict" in ck else ck
    half = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous().clone()
            for k, v in sorted(sd.items())}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    save_file(half, str(tmp), metadata={"format": "pt"})
    tmp.chmod(0o644)  # safetensors creates the file owner-only
    tmp.replace(out)
    return out


def evaluate_weights(weights: Union[str, Path], data_dir: Union[str, Path], seed: int, per_class: int,
                     n_retrieval: int) -> Dict[str, Dict[str, float]]:
    """Zero-shot classification and retrieval of ``weights`` on held-out synthetic scenes (real evaluators)."""
    from farslip_ext.data import synthetic as syn
    from farslip_ext.evaluation import (ImageTextRetrievalCsv, SceneClassificationCsv,
                                        run_retrieval_benchmarks, run_zeroshot_benchmarks)
    from farslip_ext.loading import load

    data_dir = Path(data_dir)
    base = seed + SEED_OFFSETS["pretrain_eval"]
    csv_path, names = syn.write_classification_csv(data_dir / "cls", n_per_class=per_class, seed=base, size=128)
    ret_csv = syn.write_skyscript_csv(data_dir / "retrieval", n=n_retrieval, seed=base + 1, size=128)
    lm = load(ARCH, str(weights), device="cpu", precision="fp32")
    cls = run_zeroshot_benchmarks(lm.model, lm.tokenizer, lm.preprocess,
                                  [SceneClassificationCsv(csv_path, names, name="heldout_cls")],
                                  device=lm.device, precision="fp32", progress=False)
    ret = run_retrieval_benchmarks(lm.model, lm.tokenizer, lm.preprocess,
                                   [ImageTextRetrievalCsv(ret_csv, caption_key="title", name="heldout_retrieval")],
                                   device=lm.device, precision="fp32", progress=False)
    return {"zeroshot": cls["heldout_cls"], "retrieval": ret["heldout_retrieval"]}


def pretrain_demo_clip(out: Union[str, Path] = DEMO_WEIGHTS, work_dir: Union[str, Path] = "outputs/pretrain_demo_clip",
                       seed: int = 0, quick: bool = False, scenes: Optional[int] = None, steps: Optional[int] = None,
                       batch_size: Optional[int] = None, lr: Optional[float] = None, threads: Optional[int] = 1,
                       progress: bool = True, command: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Generate the pairs, train from scratch with the real loop, export, evaluate, write the record.

    Returns the record that is also written to ``out`` with the suffix ``.json``.
    """
    prev_threads = torch.get_num_threads()
    try:
        return _pretrain(out, work_dir, seed, quick, scenes, steps, batch_size, lr, threads, progress, command)
    finally:
        torch.set_num_threads(prev_threads)


def _pretrain(out: Union[str, Path], work_dir: Union[str, Path], seed: int, quick: bool, scenes: Optional[int],
              steps: Optional[int], batch_size: Optional[int], lr: Optional[float], threads: Optional[int],
              progress: bool, command: Optional[Sequence[str]]) -> Dict[str, Any]:
    import open_clip

    from farslip_ext.train.config import load_config
    from farslip_ext.train.loop import train

    t0 = time.time()
    plan = dict(QUICK if quick else FULL)
    for k, v in (("scenes", scenes), ("steps", steps), ("batch_size", batch_size)):
        if v is not None:
            plan[k] = int(v)
    if threads:
        torch.set_num_threads(int(threads))
    out = Path(out)
    work = Path(work_dir)
    for sub in ("pairs", "train", "heldout"):
        if (work / sub).exists():
            shutil.rmtree(work / sub)  # a fresh run: no stale images or resumable checkpoints
    csv_path, counts = write_pretrain_pairs(work / "pairs", plan["scenes"], seed + SEED_OFFSETS["pretrain"])
    options: Dict[str, Any] = {
        "data.train.path": str(csv_path),
        "data.train.image_root": str(work / "pairs"),
        "data.batch_size": plan["batch_size"],
        "schedule.max_steps": plan["steps"],
        "schedule.warmup_steps": plan["warmup"],
        "train.work_dir": str(work / "train"),
        "train.seed": int(seed),
        "train.progress": bool(progress),
        "train.log_every": max(1, min(20, plan["steps"])),
    }
    if lr is not None:
        options["optim.lr"] = float(lr)
    cfg = load_config(PRETRAIN_CONFIG, options)
    logger.info("pretraining %s from scratch: %d steps of %d pairs (%d rows)", ARCH, plan["steps"], plan["batch_size"],
                counts["rows"])
    t_train = time.time()
    result = train(cfg)
    train_s = time.time() - t_train
    final = work / "train" / "checkpoints" / "final.pt"
    export_weights(final, out)
    metrics = evaluate_weights(out, work / "heldout", seed, plan["eval_per_class"], plan["eval_retrieval"])
    record: Dict[str, Any] = {
        "arch": ARCH,
        "file": out.name,
        "sha256": sha256_file(out),
        "bytes": out.stat().st_size,
        "dtype": "float16",
        "seed": int(seed),
        "quick": bool(quick),
        "command": " ".join(command) if command else f"python tools/pretrain_demo_clip.py --seed {seed}"
                   + (" --quick" if quick else ""),
        "config": "farslip_ext/demo/pretrain_config.py",
        "optim": {"lr": float(cfg.optim.lr), "weight_decay": float(cfg.optim.weight_decay)},
        "schedule": {"steps": int(result["step"]), "batch_size": plan["batch_size"], "warmup_steps": plan["warmup"]},
        "data": {**counts, "image_size": 128, "seed": seed + SEED_OFFSETS["pretrain"],
                 "heldout": {"classification_images": plan["eval_per_class"] * 10,
                             "retrieval_images": plan["eval_retrieval"], "seed": seed + SEED_OFFSETS["pretrain_eval"]}},
        "final_train_loss": result["last"].get("loss"),
        "final_logit_scale": result["last"].get("logit_scale"),
        "metrics": metrics,
        "train_seconds": round(train_s, 1),
        "total_seconds": round(time.time() - t0, 1),
        "threads": torch.get_num_threads(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "open_clip": open_clip.__version__},
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %s (%d bytes, sha256 %s) and %s", out, record["bytes"], record["sha256"],
                out.with_suffix(".json"))
    return record


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line of ``tools/pretrain_demo_clip.py``."""
    import argparse

    p = argparse.ArgumentParser(prog="pretrain_demo_clip.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(DEMO_WEIGHTS), help="weights file to write (default: the shipped asset)")
    p.add_argument("--work-dir", default="outputs/pretrain_demo_clip", help="pairs, checkpoints and logs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny data, a few steps (not the shipped file)")
    p.add_argument("--scenes", type=int, default=None, help=f"synthetic scenes (default {FULL['scenes']})")
    p.add_argument("--steps", type=int, default=None, help=f"optimizer steps (default {FULL['steps']})")
    p.add_argument("--batch-size", type=int, default=None, help=f"default {FULL['batch_size']}")
    p.add_argument("--lr", type=float, default=None, help="default: the config's 5e-4")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the same bytes on every run of one machine)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cmd = ["python", "tools/pretrain_demo_clip.py"] + list(sys.argv[1:] if argv is None else argv)
    rec = pretrain_demo_clip(args.out, args.work_dir, seed=args.seed, quick=args.quick, scenes=args.scenes,
                             steps=args.steps, batch_size=args.batch_size, lr=args.lr, threads=args.threads,
                             progress=not args.no_progress, command=cmd)
    print(json.dumps({k: rec[k] for k in ("file", "bytes", "sha256", "metrics", "total_seconds")}, indent=2))
    return 0
