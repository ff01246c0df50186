"""The declarative catalogue shipped with the package: OpenCLIP model configs and the pretrained manifest.

In the source tree the catalogue lives in the top-level ``registry/`` folder (data only, no Python);
installed, it is the package ``farslip_ext._registry_data`` (mapped with ``package_dir`` in setup.cfg).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
import importlib.util
from pathlib import Path
from typing import Any, Dict, Optional

__all__ = ["catalogue_dir", "model_config_dir", "load_pretrained_manifest", "PretrainedEntry", "pretrained_entry"]

_REQUIRED_KEYS = ("hf_hub_id", "hf_hub_filename")


@lru_cache(maxsize=1)
def catalogue_dir() -> Path:
    """Folder holding ``pretrained.json`` and ``model_configs/``."""
    candidates = [Path(__file__).resolve().parent / "_registry_data"]  # regular install
    try:  # editable install: setuptools maps the package onto <repo>/registry
        spec = importlib.util.find_spec("farslip_ext._registry_data")
        if spec is not None and spec.submodule_search_locations:
            candidates += [Path(p) for p in spec.submodule_search_locations]
    except (ImportError, ValueError):
        pass
    for path in candidates:
        if (path / "pretrained.json").is_file():
            return path
    # Source checkout without an install: <repo>/registry next to the package.
    path = Path(__file__).resolve().parent.parent / "registry"
    if (path / "pretrained.json").is_file():
        return path
    raise FileNotFoundError(
        "farslip_ext's catalogue (pretrained.json, model_configs/) was not found; "
        "reinstall the package with `pip install -e .` from the repository root."
    )


def model_config_dir() -> Path:
    return catalogue_dir() / "model_configs"


@dataclass(frozen=True)
class PretrainedEntry:
    """One released checkpoint: where it lives on the Hub and how it was trained."""

    arch: str
    tag: str
    hf_hub_id: str
    hf_hub_filename: str
    revision: str = "main"
    sha256: Optional[str] = None
    quick_gelu: bool = True
    long_clip: Optional[bool] = None  # None: the checkpoint's tensors decide
    license: str = "mit"
    source: str = ""
    paper: str = ""
    stage: Optional[int] = None
    notes: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, arch: str, tag: str, d: Dict[str, Any]) -> "PretrainedEntry":
        missing = [k for k in _REQUIRED_KEYS if not d.get(k)]
        if missing:
            raise ValueError(f"pretrained entry {arch}:{tag} lacks {missing}; every entry needs {list(_REQUIRED_KEYS)}")
        known = {f for f in cls.__dataclass_fields__ if f not in ("arch", "tag", "extra")}
        return cls(arch=arch, tag=tag, **{k: v for k, v in d.items() if k in known},
                   extra={k: v for k, v in d.items() if k not in known})


def load_pretrained_manifest(path: Optional[Path] = None) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """``{arch: {tag: entry-dict}}`` from ``pretrained.json`` (validated)."""
    path = path or catalogue_dir() / "pretrained.json"
    with open(path, "r", encoding="utf-8") as f:
        data = json.load(f)
    for arch, tags in data.items():
        for tag, d in tags.items():
            PretrainedEntry.from_dict(arch, tag, d)  # validate
    return data


def pretrained_entry(arch: str, tag: str) -> PretrainedEntry:
    """The manifest entry for ``arch``/``tag`` (from every loaded plugin), with a helpful error."""
    from farslip_ext._openclip import registered_pretrained

    table = registered_pretrained()
    if arch not in table:
        raise KeyError(f"no FarSLIP pretrained weights are registered for architecture {arch!r}; "
                       f"architectures with weights: {sorted(table)}")
    tags = table[arch]
    if tag not in tags:
        raise KeyError(f"unknown pretrained tag {tag!r} for {arch!r}; available tags: {sorted(tags)}")
    return tags[tag]


def load_published_results() -> Dict[str, Any]:
    """The paper's published tables (``registry/published_results.json``):
    ``{"ovss_miou" | "zeroshot_top1" | "retrieval_mean_recall": {backbone: {method: {dataset: value}}}}``.
    Backbones are ``"B/16"``/``"B/32"``; FarSLIP rows are ``FarSLIP1``/``FarSLIP2`` (OVSS) and
    ``FarSLIP-s1``/``FarSLIP-s2`` (classification, retrieval), as printed in the paper."""
    with open(catalogue_dir() / "published_results.json", "r", encoding="utf-8") as f:
        return json.load(f)
