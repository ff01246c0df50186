"""The demo's PNG figures (matplotlib, Agg backend): segmentation overlays with a legend, metric bars,
training losses. Figures only draw what is in the report and the evaluators' saved predictions."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

from farslip_ext.demo.data import OVSS_LEGEND

__all__ = ["PALETTE", "colorize", "write_figures", "overlay_figure", "metrics_figure", "training_figure"]

logger = logging.getLogger(__name__)

#: RGB colour of each OVSS label value (the demo's 9 classes); 255 (ignored) is drawn black.
PALETTE: Sequence[Sequence[int]] = ((234, 216, 166), (166, 120, 80), (150, 210, 100), (180, 180, 180), (80, 80, 84),
                                    (20, 100, 30), (40, 90, 210), (235, 200, 60), (205, 60, 50))
PHASE_TITLES = {"start": "start", "stage1": "after stage 1", "stage2": "after stage 2"}


def colorize(label: np.ndarray) -> np.ndarray:
    """``(H, W)`` label values -> ``(H, W, 3)`` uint8 colours."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(PALETTE)] = np.asarray(PALETTE, dtype=np.uint8)
    return lut[np.asarray(label, dtype=np.uint8)]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _legend(fig: Any, present: Sequence[int]) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=np.asarray(PALETTE[i]) / 255.0, edgecolor="k", label=OVSS_LEGEND[i]) for i in present]
    handles.append(Patch(facecolor="black", edgecolor="k", label="ignored (255)"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=8, frameon=False)


def overlay_figure(images: Sequence[Path], labels: Sequence[Path], predictions: Dict[str, Path], out: Path,
                   title: str) -> Path:
    """Rows of ``image | ground truth | prediction per phase`` (prediction PNGs written by IoUMetric)."""
    plt = _plt()
    phases = list(predictions)
    ncols = 2 + len(phases)
    rows = len(images)
    fig, axes = plt.subplots(rows, ncols, figsize=(2.3 * ncols, 2.3 * rows + 0.9), squeeze=False)
    present = set()
    for r, (img_p, lab_p) in enumerate(zip(images, labels)):
        img = np.asarray(Image.open(img_p).convert("RGB"))
        gt = np.asarray(Image.open(lab_p))
        present |= set(np.unique(gt[gt != 255]).tolist())
        panels = [(img, "image"), (colorize(gt), "ground truth")]
        for ph in phases:
            pred_path = predictions[ph] / (img_p.stem + ".png")
            pred = np.asarray(Image.open(pred_path))
            present |= set(np.unique(pred).tolist()) - {255}
            panels.append((colorize(pred), PHASE_TITLES.get(ph, ph)))
        for c, (arr, name) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(arr, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
    _legend(fig, sorted(int(i) for i in present if i < len(PALETTE)))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08 if rows > 1 else 0.14, 1, 0.96))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def metrics_figure(summary: List[Dict[str, Any]], phases: Sequence[str], out: Path) -> Path:
    """Grouped bars: each headline metric before and after each stage, values printed on the bars."""
    plt = _plt()
    n = len(summary)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.25 * n + 2), 4.2))
    width = 0.8 / len(phases)
    x = np.arange(n)
    colors = ("#9e9e9e", "#4f81bd", "#c0504d")
    for j, ph in enumerate(phases):
        vals = [row[ph] for row in summary]
        bars = ax.bar(x + (j - (len(phases) - 1) / 2) * width, vals, width, label=PHASE_TITLES.get(ph, ph),
                      color=colors[j % len(colors)])
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 0.8, f"{v:.1f}", ha="center", va="bottom",
                    fontsize=6, rotation=90)
    ax.set_xticks(x)
    ax.set_xticklabels([row["metric"].replace(" (%)", "") for row in summary], rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 118)
    ax.legend(fontsize=8, loc="upper right", ncol=len(phases))
    ax.set_title("Demo CLIP before and after each FarSLIP stage (real evaluators)", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def training_figure(stages: Dict[str, Dict[str, Any]], out: Path,
                    objectives: Optional[List[Dict[str, Any]]] = None) -> Path:
    """Loss terms per step of each stage (from the loop's ``metrics.csv``) and, as stars, the stage's
    held-out objective before and after it."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(stages), figsize=(4.2 * len(stages), 3.2), squeeze=False)
    for ax, (name, st) in zip(axes[0], stages.items()):
        log = st["log"]
        steps = [r["step"] for r in log]
        for key in sorted({k for r in log for k in r if k.endswith("_loss")} | {"loss"}):
            ax.plot(steps, [r.get(key, float("nan")) for r in log], marker=".", label=key)
        obj = next((o for o in objectives or [] if o.get("stage") == name), None)
        if obj is not None and steps:
            before = "start" if name == "stage1" else "stage1"
            ax.plot([0, steps[-1]], [obj[before], obj[name]], "k*--", markersize=9, label="held-out objective")
        ax.set_title(f"{name} ({st['recipe']} recipe)", fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _ovss_files(data_root: Path) -> List[Path]:
    return sorted((data_root / "OpenEarthMap" / "img_dir" / "val").glob("*.tif"))


def write_figures(report: Dict[str, Any], out_dir: Path, n_overlays: int = 4) -> List[Path]:
    """All figures of a demo report; returns their paths."""
    phases = list(report["phases"])
    written = [metrics_figure(report["summary"], phases, out_dir / "metrics.png")]
    if report["stages"]:
        written.append(training_figure(report["stages"], out_dir / "training.png", report.get("objectives")))
    sets = {"synthetic": Path(report["data"]["ovss_root"])}
    sets.update({k: Path(v) for k, v in report["data"]["extra_ovss"].items()})
    for name, root in sets.items():
        imgs = _ovss_files(root)[: n_overlays if name == "synthetic" else 1]
        if not imgs:
            continue
        labels = [root / "OpenEarthMap" / "ann_dir" / "val" / p.name for p in imgs]
        preds = {ph: Path(report["phases"][ph]["ovss"][name]["predictions"]) for ph in phases}
        miou = ", ".join(f"{PHASE_TITLES[ph]} {report['phases'][ph]['ovss'][name]['metrics']['mIoU']:.1f}"
                         for ph in phases)
        title = (f"OVSS on the {'synthetic scenes' if name == 'synthetic' else 'Landsat-7 scene (Raleigh, NC)'} — "
                 f"mIoU (%): {miou}")
        written.append(overlay_figure(imgs, labels, preds, out_dir / f"ovss_{name}.png", title))
    logger.info("figures: %s", ", ".join(p.name for p in written))
    return written
