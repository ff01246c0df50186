"""Training checkpoints: open_clip-loadable, complete for exact resume, written atomically.

A checkpoint is one ``torch.save`` file that ``torch.load(weights_only=True)`` reads (no pickled code)::

    {"state_dict": <model in plain open_clip keys>,   # stock open_clip.create_model(arch, pretrained=path) loads it
     "task_state": <learnable components>,            # loss / head / teacher-module parameters (not open_clip's)
     "optimizer", "scheduler", "scaler", "task_extra", # training state (task_extra: the teacher copy)
     "rng": {...}, "step", "epoch", "batch_in_epoch",  # exact resume
     "config": <resolved config dict>, "arch": str}

Files are written to ``<name>.partial`` then renamed (``os.replace`` is atomic on POSIX), so a kill
during a save never leaves a corrupt ``latest.pt``.
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch

__all__ = ["capture_rng", "restore_rng", "atomic_save", "load_training_checkpoint", "find_resume"]

logger = logging.getLogger(__name__)


def capture_rng() -> Dict[str, Any]:
    """RNG states of torch (CPU and CUDA), numpy and python, as weights_only-loadable objects."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]) if isinstance(py, (list, tuple)) else py)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj: Dict[str, Any], path: Union[str, Path]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_training_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    return torch.load(str(path), map_location="cpu", weights_only=True)


def find_resume(work_dir: Union[str, Path], resume: Optional[str]) -> Optional[Path]:
    """``resume``: None/"none" (start fresh), "auto" (``<work_dir>/checkpoints/latest.pt`` if present) or a path."""
    if resume in (None, "", "none", False):
        return None
    if resume == "auto":
        p = Path(work_dir) / "checkpoints" / "latest.pt"
        return p if p.is_file() else None
    p = Path(resume)
    if not p.is_file():
        raise FileNotFoundError(f"resume checkpoint not found: {p}; pass resume='auto', 'none' or an existing file")
    return p
