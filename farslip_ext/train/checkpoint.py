"""Training checkpoints: open_clip-loadable, complete for exact resume, written atomically, always finite.

A checkpoint is one ``torch.save`` file that ``torch.load(weights_only=True)`` reads (no pickled code)::

    {"state_dict": <model in plain open_clip keys>,   # stock open_clip.create_model(arch, pretrained=path) loads it
     "task_state": <learnable components>,            # loss / head / teacher-module parameters (not open_clip's)
     "optimizer", "scheduler", "scaler", "task_extra", # training state (task_extra: the teacher copy)
     "rng": {...}, "step", "epoch", "batch_in_epoch",  # exact resume
     "world_size", "resume_changes",                   # the resume policy (docs/training.md)
     "config": <resolved config dict>, "arch": str}

Files go through :func:`farslip_ext.io.atomic_path` (a temporary file, then ``os.replace``): a kill
during a save never leaves a corrupt ``latest.pt``, and a full disk is an error that says "no space
left" with the path and removes the partial file. The trainer refuses to save a state holding NaN/inf
(:func:`nonfinite_tensors`), and :func:`load_training_checkpoint` checks every tensor it loads.
"""
from __future__ import annotations

import errno
import logging
import os
import pickle
import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch

from farslip_ext.convert import check_finite
from farslip_ext.errors import CheckpointFormatError, NonFiniteWeightsError
from farslip_ext.io import atomic_path

__all__ = ["capture_rng", "restore_rng", "atomic_save", "load_training_checkpoint", "find_resume",
           "nonfinite_tensors", "tensor_leaves"]

logger = logging.getLogger(__name__)

#: Parts of a checkpoint whose floating tensors must be finite (the RNG states are not numbers to check).
CHECKED_PARTS = ("state_dict", "task_state", "task_extra", "optimizer", "scaler")


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


def tensor_leaves(obj: Any, prefix: str = "") -> Dict[str, torch.Tensor]:
    """``{dotted path: tensor}`` of every tensor in nested dicts/lists (e.g. ``optimizer.state.3.exp_avg``)."""
    out: Dict[str, torch.Tensor] = {}
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(tensor_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(tensor_leaves(v, f"{prefix}.{i}" if prefix else str(i)))
    return out


def nonfinite_tensors(state: Dict[str, Any]) -> List[str]:
    """Paths of the floating tensors of ``state`` (its :data:`CHECKED_PARTS`) that hold NaN or inf."""
    leaves = {k: v for part in CHECKED_PARTS if part in state for k, v in tensor_leaves(state[part], part).items()
              if v.is_floating_point() or v.is_complex()}
    if not leaves:
        return []
    by_device: Dict[torch.device, List[str]] = {}
    for name, t in leaves.items():
        by_device.setdefault(t.device, []).append(name)
    bad = set()
    for names in by_device.values():  # one host sync per device
        flags = torch.stack([torch.isfinite(leaves[n]).all() for n in names]).tolist()
        bad.update(n for n, ok in zip(names, flags) if not ok)
    return [n for n in leaves if n in bad]


def atomic_save(obj: Dict[str, Any], path: Union[str, Path]) -> Path:
    """``torch.save`` through :func:`farslip_ext.io.atomic_path` (fsynced; ENOSPC names the path)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    return path


def load_training_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a training checkpoint (tensors only) and check that every tensor is finite (naming the file)."""
    path = Path(path)
    try:
        ck = torch.load(str(path), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError, OSError) as e:  # truncated, not torch, pickled code
        if isinstance(e, OSError) and e.errno != errno.EINVAL:
            raise  # a missing or unreadable file: the OS error names it (EINVAL: a truncated zip archive)
        raise CheckpointFormatError(f"cannot read the training checkpoint {path} ({type(e).__name__}: "
                                    f"{str(e).splitlines()[0] if str(e) else ''}); resume from another file with "
                                    f"train.resume=PATH or start over with train.resume=none") from None
    if not isinstance(ck, dict) or "state_dict" not in ck or "step" not in ck:
        keys = sorted(ck)[:8] if isinstance(ck, dict) else type(ck).__name__
        raise CheckpointFormatError(f"{path} is not a farslip training checkpoint (it holds {keys}, not state_dict, "
                                    f"optimizer, step ...); train.resume takes a latest.pt/final.pt/step_*.pt written "
                                    f"by farslip train. To start from weights, set model.pretrained instead")
    flat = {k: v for part in CHECKED_PARTS if part in ck for k, v in tensor_leaves(ck[part], part).items()}
    try:
        check_finite(flat, str(path))
    except NonFiniteWeightsError as e:
        raise NonFiniteWeightsError(f"{e} Resume from another file with train.resume=PATH (step_*.pt files are kept "
                                    f"with train.keep_step_checkpoints=True) or start over with train.resume=none") from None
    return ck


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
