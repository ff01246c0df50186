"""Fabricate checkpoints in the official FarSLIP containers, and hand-made Hugging Face caches.

Everything here is independent of farslip_ext's conversion code: the LongCLIP split and the
expected folded table are written out row by row.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, Tuple

import open_clip
import torch

KEEP = 20  # LongCLIP keeps the first 20 positions of the original table


def random_state_dict(arch: str, seed: int = 0, context_length: int | None = None) -> Dict[str, torch.Tensor]:
    """Seeded random weights for ``arch`` (every tensor, incl. norms and biases, randomised)."""
    kwargs = {"force_context_length": context_length} if context_length else {}
    torch.manual_seed(seed)
    model = open_clip.create_model(arch, **kwargs)
    g = torch.Generator().manual_seed(seed + 1)
    return {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in model.state_dict().items()}


def to_long_clip_two_table(sd: Dict[str, torch.Tensor], seed: int = 3) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
    """Turn a 248-context state dict into the reference fork's two-table form.

    Returns ``(two_table_sd, expected_single_table)``; the expected table is assembled row by row:
    rows < 20 from ``positional_embedding``, rows >= 20 from ``positional_embedding_res``.
    """
    pe = sd["positional_embedding"]
    n, w = pe.shape
    g = torch.Generator().manual_seed(seed)
    pe_res = torch.randn(n, w, generator=g) * 0.05
    out = dict(sd)
    out["positional_embedding_res"] = pe_res
    out["mask1"] = torch.tensor([[1.0] if i < KEEP else [0.0] for i in range(n)])
    out["mask2"] = torch.tensor([[0.0] if i < KEEP else [1.0] for i in range(n)])
    expected = torch.empty(n, w)
    for i in range(n):
        expected[i] = pe[i] if i < KEEP else pe_res[i]
    return out, expected


def save_container(sd: Dict[str, torch.Tensor], path: Path, container: str) -> Path:
    """Save ``sd`` as one of: bare, state_dict, module, state_dict_module, fp16, training."""
    if container == "bare":
        obj = sd
    elif container == "state_dict":
        obj = {"state_dict": sd}
    elif container == "module":
        obj = {f"module.{k}": v for k, v in sd.items()}
    elif container == "state_dict_module":
        obj = {"state_dict": {f"module.{k}": v for k, v in sd.items()}}
    elif container == "fp16":
        obj = {k: v.half() for k, v in sd.items()}
    elif container == "training":  # what the reference trainer writes under DDP
        obj = {"epoch": 1, "name": "run", "state_dict": {f"module.{k}": v for k, v in sd.items()},
               "optimizer": {"state": {}, "param_groups": [{"lr": 1e-6, "params": [0]}]}}
    else:
        raise ValueError(container)
    torch.save(obj, path)
    return path


def make_hub_cache(cache: Path, repo_id: str, files: Dict[str, Path], revision_hex: str | None = None) -> Path:
    """Lay out ``models--<org>--<repo>/snapshots/<hex>/<files>`` plus ``refs/main`` by hand."""
    org, name = repo_id.split("/")
    repo = cache / f"models--{org}--{name}"
    rev = revision_hex or hashlib.sha1(repo_id.encode()).hexdigest()
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True, exist_ok=True)
    for fname, src in files.items():
        dst = snap / fname
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():
            dst.unlink()
        dst.hardlink_to(src) if src.stat().st_dev == snap.stat().st_dev else dst.write_bytes(src.read_bytes())
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(rev)
    return snap
