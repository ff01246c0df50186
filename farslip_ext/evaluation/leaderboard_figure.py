"""The leaderboard figure: per task family, our number per (model, dataset) as bars and the paper's as marks."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Optional

logger = logging.getLogger(__name__)

__all__ = ["plot_leaderboard"]


def plot_leaderboard(board: Mapping[str, Any], path: Path) -> Optional[Path]:
    """Write ``path`` (PNG); ``None`` with a warning when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as e:  # the figure is optional; the markdown and JSON carry every number
        logger.warning("no leaderboard figure: matplotlib is not installed (%s); pip install matplotlib", e)
        return None
    from farslip_ext.io import atomic_path

    tasks = [(t, v) for t, v in board["tasks"].items() if v["rows"]]
    if not tasks:
        return None
    models = [m["name"] for m in board["models"]]
    fig, axes = plt.subplots(len(tasks), 1, figsize=(max(6.0, 1.2 * max(len(v["columns"]) for _, v in tasks) + 2) + 3.0,
                                                     3.2 * len(tasks)), squeeze=False)
    colours = plt.get_cmap("tab10")
    width = 0.8 / max(1, len(models))
    for ax, (task, t) in zip(axes[:, 0], tasks):
        cols = t["columns"]
        paper_shown = False
        for i, row in enumerate(t["rows"]):
            xs = [j - 0.4 + width * (i + 0.5) for j in range(len(cols))]
            ours = [row["values"].get(k, float("nan")) for k in cols]
            ax.bar(xs, ours, width=width * 0.9, color=colours(i % 10), label=row["model"])
            pub = [(x, row["published"][k]) for x, k in zip(xs, cols) if k in row["published"]]
            if pub:
                ax.scatter([p[0] for p in pub], [p[1] for p in pub], marker="_", s=220, color="black", zorder=3,
                           label=None if paper_shown else "paper")
                paper_shown = True
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels([c.replace("_", " ") for c in cols], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(t["metric"])
        ax.set_title(task)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[:, 0]:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
