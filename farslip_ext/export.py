"""Export any model as an open_clip Hub folder that *stock* open_clip loads without farslip_ext.

The folder holds ``open_clip_config.json`` (``model_cfg`` + ``preprocess_cfg``), the weights as
``open_clip_model.safetensors`` and a ``README.md`` model card (licence, source, preprocessing).
Load it with ``open_clip.create_model_and_transforms("local-dir:<folder>")``, or upload the folder to a
Hub repo and use ``hf-hub:<org>/<repo>``.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict, Optional, Union

import open_clip
import torch

from farslip_ext.convert import check_finite
from farslip_ext.io import atomic_path, check_destination

__all__ = ["export_hub_folder", "usage_lines"]


def _preprocess_cfg(model: torch.nn.Module) -> Dict[str, Any]:
    visual = model.visual
    pp = dict(getattr(visual, "preprocess_cfg", {}) or {})
    out = {
        "mean": list(getattr(visual, "image_mean", None) or pp.get("mean") or open_clip.OPENAI_DATASET_MEAN),
        "std": list(getattr(visual, "image_std", None) or pp.get("std") or open_clip.OPENAI_DATASET_STD),
        "interpolation": pp.get("interpolation", "bicubic"),
        "resize_mode": pp.get("resize_mode", "shortest"),
    }
    if "size" in pp:
        out["size"] = pp["size"]
    return out


def _model_cfg_for(model: torch.nn.Module, arch: Optional[str], model_cfg: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    if model_cfg is None:
        if arch is None:
            raise ValueError("export_hub_folder needs the architecture name (arch=...) or its model_cfg dict")
        model_cfg = open_clip.get_model_config(arch)
        if model_cfg is None:
            raise ValueError(f"unknown architecture {arch!r}; known: see open_clip.list_models()")
    cfg = copy.deepcopy(model_cfg)
    # The built model is the truth for the text context (a LongCLIP file may differ from the arch default).
    ctx = getattr(model, "context_length", None)
    if ctx is not None:
        cfg.setdefault("text_cfg", {})["context_length"] = int(ctx)
    return cfg


def usage_lines(repo_id: Optional[str], folder: str, context_length: int = 77) -> str:
    """The model card's usage block: ``hf-hub:<repo_id>``, or the local folder plus the Hub form to fill in."""
    load = ("model, _, preprocess = open_clip.create_model_and_transforms('{0}')\n"
            "tokenizer = open_clip.get_tokenizer('{0}')")
    note = f"# the tokenizer pads to {context_length} tokens, the text context these weights were trained with\n"
    if repo_id:
        body = load.format(f"hf-hub:{repo_id}")
    else:
        body = (f"# from this folder\n{load.format(f'local-dir:{folder}')}\n"
                f"# after uploading the folder to the Hugging Face Hub as ORG/NAME\n{load.format('hf-hub:ORG/NAME')}")
    return f"```python\nimport open_clip\n{note}{body}\n```\n"


def export_hub_folder(
    model: torch.nn.Module,
    out_dir: Union[str, Path],
    arch: Optional[str] = None,
    model_cfg: Optional[Dict[str, Any]] = None,
    *,
    license: str = "mit",
    source: str = "",
    description: str = "",
    tags: tuple = ("clip", "remote-sensing", "farslip"),
    repo_id: Optional[str] = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as an open_clip Hub folder and return its path.

    A folder that already holds files is refused unless ``overwrite``; every file is written
    atomically and readable by everyone (0644). ``repo_id`` (``org/name``) is the Hub repository the
    model card's usage lines name (default: the folder, as ``local-dir:``). Weights with NaN/inf
    values are refused.
    """
    from open_clip.push_to_hf_hub import generate_readme
    from safetensors.torch import save_file

    out = check_destination(out_dir, overwrite=overwrite, what="export folder")
    out.mkdir(parents=True, exist_ok=True)
    cfg = _model_cfg_for(model, arch, model_cfg)
    pp = _preprocess_cfg(model)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    check_finite(sd, f"the model exported to {out}")
    with atomic_path(out / "open_clip_config.json") as tmp:
        tmp.write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": pp}, indent=2), encoding="utf-8")
    with atomic_path(out / "open_clip_model.safetensors") as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt"})
    name = arch or out.name
    ctx = cfg["text_cfg"].get("context_length", 77)
    card = {
        "tags": list(tags),
        "license": license,
        "description": description or f"{name} exported by farslip_ext for stock open_clip.",
        "details": {
            "Architecture": name,
            "Source": source or "unspecified",
            "License": license,
            "Text context length": ctx,
            "QuickGELU": bool(cfg.get("quick_gelu", False)),
            "Preprocessing": pp,
        },
        "usage": usage_lines(repo_id, out.name, ctx),
    }
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text(generate_readme(card, name), encoding="utf-8")
    return out
