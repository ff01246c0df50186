"""Fabricated releases of the zoo's baseline families in their real container formats, tiny stand-in
architectures, and a copy of ``clip_benchmark build``'s reading rule.

The containers are written out here from each project's own code and README (not from farslip_ext's
converter): RemoteCLIP and GeoRSCLIP bare open_clip state dicts, SkyCLIP an open_clip *training*
checkpoint (``epoch_20.pt``: ``state_dict`` with DDP ``module.`` keys and an optimizer) inside a zip,
LRSCLIP a bare OpenAI-layout state dict with the LongCLIP pair ``positional_embedding`` +
``positional_embedding_res`` and no masks, FarSLIP the reference trainer's dict with the masks and a
teacher copy.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from tests.helpers.checkpoints import KEEP, random_state_dict

#: a GELU twin of farslip-test-tiny (the GELU baselines' stand-in)
TINY_GELU = "farslip-test-tiny-gelu"


def register_tiny_gelu(folder: Path) -> str:
    """Register :data:`TINY_GELU` (the test-only config lives in ``folder``); conftest restores the tables."""
    from farslip_ext.catalogue import CATALOGUE, model_config_dir
    from farslip_ext.openclip_bridge import sync

    cfg = json.loads((model_config_dir() / "farslip-test-tiny.json").read_text())
    cfg["quick_gelu"] = False
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{TINY_GELU}.json").write_text(json.dumps(cfg))
    CATALOGUE.add_model_configs(folder / f"{TINY_GELU}.json")
    sync()
    return TINY_GELU


def real_entry(arch: str, tag: str) -> Dict[str, Any]:
    """The raw ``registry/pretrained.json`` entry (a copy)."""
    from farslip_ext.catalogue import load_pretrained_manifest

    return dict(load_pretrained_manifest()[arch][tag])


def register_standin(arch: str, tag: str, tiny_arch: str, as_tag: Optional[str] = None,
                     **changes: Any) -> Dict[str, Any]:
    """Register the real entry ``arch:tag`` (same source: repo, file, revision, URL, member) under a tiny
    architecture (as ``as_tag``, default ``tag``); ``changes`` replace fields (e.g. the sha256)."""
    from farslip_ext.catalogue import CATALOGUE
    from farslip_ext.openclip_bridge import sync

    d = dict(real_entry(arch, tag), **changes)
    CATALOGUE.add_pretrained({tiny_arch: {as_tag or tag: d}})
    sync()
    return d


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------- release formats
def remoteclip_file(arch: str, path: Path, seed: int) -> Dict[str, torch.Tensor]:
    """RemoteCLIP: ``torch.save(model.state_dict())`` of an open_clip model (README: strict load_state_dict)."""
    sd = random_state_dict(arch, seed=seed)
    torch.save(sd, path)
    return sd


georsclip_file = remoteclip_file  # GeoRSCLIP: also a bare open_clip state dict (inference.py loads it strictly)


def skyclip_zip(arch: str, zip_path: Path, member: str, seed: int) -> Dict[str, torch.Tensor]:
    """SkyCLIP: open_clip's training main.py saves {epoch, name, state_dict (DDP), optimizer}; zipped."""
    sd = random_state_dict(arch, seed=seed)
    ckpt = {"epoch": 20, "name": "SkyCLIP", "state_dict": {f"module.{k}": v for k, v in sd.items()},
            "optimizer": {"state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.zeros(3)}},
                          "param_groups": [{"lr": 1e-5, "params": [0]}]}}
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = zip_path.with_suffix(".pt.tmp")
    torch.save(ckpt, tmp)
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.write(tmp, member)
        zf.writestr(member.rsplit("/", 1)[0] + "/out.log", "training log\n")
    tmp.unlink()
    return sd


def long_tables(sd: Dict[str, torch.Tensor], seed: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(pe, pe_res, expected_single_table)`` of a 248-position LongCLIP text tower, row by row."""
    pe = sd["positional_embedding"]
    g = torch.Generator().manual_seed(seed)
    pe_res = torch.randn(pe.shape, generator=g) * 0.05
    expected = torch.stack([pe[i] if i < KEEP else pe_res[i] for i in range(pe.shape[0])])
    return pe, pe_res, expected


def lrsclip_file(arch: str, path: Path, seed: int) -> Dict[str, torch.Tensor]:
    """LRSCLIP: a bare state dict with positional_embedding + positional_embedding_res (its masks are plain
    attributes of model_longclip.py, so the file has none). Returns the state dict expected after loading."""
    sd = random_state_dict(arch, seed=seed)
    pe, pe_res, expected = long_tables(sd, seed + 7)
    torch.save(dict(sd, positional_embedding_res=pe_res), path)
    return dict(sd, positional_embedding=expected)


def farslip_training_file(arch: str, path: Path, seed: int, long_clip: bool) -> Dict[str, torch.Tensor]:
    """FarSLIP's trainer: {epoch, name, state_dict (DDP; LongCLIP pair + mask buffers), optimizer,
    state_dict_teacher, scaler}. Returns the state dict expected after loading."""
    sd = random_state_dict(arch, seed=seed)
    saved, want = dict(sd), dict(sd)
    if long_clip:
        pe, pe_res, expected = long_tables(sd, seed + 7)
        n = pe.shape[0]
        saved.update(positional_embedding_res=pe_res,
                     mask1=torch.tensor([[1.0] if i < KEEP else [0.0] for i in range(n)]),
                     mask2=torch.tensor([[0.0] if i < KEEP else [1.0] for i in range(n)]))
        want["positional_embedding"] = expected
    ckpt = {"epoch": 1, "name": "farslip", "state_dict": {f"module.{k}": v for k, v in saved.items()},
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-6, "params": [0]}]},
            "state_dict_teacher": {k: torch.zeros_like(v) for k, v in list(saved.items())[:3]},
            "scaler": {"scale": 65536.0}}
    torch.save(ckpt, path)
    return want


# ------------------------------------------------------------------------------------ CLIP_benchmark
def clip_benchmark_build(folder: Path, out_csv: Path) -> List[Dict[str, Any]]:
    """``clip_benchmark build FOLDER`` as CLIP_benchmark's cli.py ``main_build`` does it (commit 48de38c):
    every ``*.json`` directly in the folder is a result; its ``metrics`` are flattened into the row and
    ``model_fullname = model + ' ' + pretrained``. A JSON without ``metrics`` raises ``KeyError``."""
    rows, fieldnames = [], set()
    for f in [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".json")]:
        data = json.load(open(f))
        row = {}
        row.update(data["metrics"])
        row.update(data)
        del row["metrics"]
        row["model_fullname"] = row["model"] + " " + row["pretrained"]
        fieldnames.update(row.keys())
        rows.append(row)
    with open(out_csv, "w") as fh:
        w = csv.DictWriter(fh, fieldnames=fieldnames)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return rows
