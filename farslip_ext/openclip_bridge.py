"""The bridge from the catalogue into OpenCLIP (open_clip_torch 3.x).

:func:`sync` pushes :data:`~farslip_ext.catalogue.CATALOGUE` into open_clip, idempotently:

* model configs with the public ``open_clip.add_model_config`` (a name that would shadow a different
  config open_clip already knows is an error instead of open_clip's silent override);
* pretrained tags through :func:`farslip_ext.compat.install_pretrained_tag`. A tag whose file needs
  conversion carries a resolver key; when stock ``open_clip.create_model(arch, pretrained=tag,
  cache_dir=...)`` loads it, :func:`_resolve` downloads (into ``cache_dir``), verifies and converts the
  file once (:func:`farslip_ext.hub.fetch_converted`), checks the text context against the built
  model, and hands open_clip the converted safetensors file. Errors keep their farslip_ext types.

Nothing touches the network here; files are fetched only when a model is built with the tag.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Dict, List

import open_clip
import torch

from farslip_ext import compat
from farslip_ext.catalogue import CATALOGUE, Catalogue, CatalogueError, PretrainedEntry
from farslip_ext.errors import ContextLengthMismatch

__all__ = ["sync", "arch_context_length", "tag_cfg"]

_LOCK = threading.RLock()
_ADDED: List[Path] = []


def arch_context_length(arch: str) -> int:
    """The text context length of a registered architecture (77 when it does not say)."""
    cfg = CATALOGUE.model_config(arch) or open_clip.get_model_config(arch) or {}
    return int(cfg.get("text_cfg", {}).get("context_length", 77))


def _add_config_path(path: Path) -> None:
    if path in _ADDED:
        return
    files = [path] if path.is_file() else sorted(path.glob("*.json"))
    for f in files:
        name = f.stem
        theirs = open_clip.get_model_config(name)
        if theirs is not None and name not in _owned_names() and theirs != json.loads(f.read_text()):
            raise CatalogueError(f"model config {name!r} from {f} would silently replace a different config already "
                                 f"known to open_clip; rename the file (prefix it with your project name)")
    open_clip.add_model_config(path)
    missing = [f.stem for f in files if f.stem not in open_clip.list_models()]
    if missing:  # pragma: no cover - guards against open_clip changing its scan rules
        raise compat._fail("open_clip", f"add_model_config({path}) did not register {missing}")
    _ADDED.append(path)


def _owned_names() -> List[str]:
    return [f.stem for p in _ADDED for f in ([p] if p.is_file() else p.glob("*.json"))]


def tag_cfg(entry: PretrainedEntry) -> Dict[str, Any]:
    """The open_clip pretrained cfg of a catalogue entry."""
    cfg: Dict[str, Any] = dict(
        url="", hf_hub="", mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD,
        interpolation="bicubic", resize_mode="shortest", quick_gelu=entry.quick_gelu, license=entry.license,
    )
    if entry.kind == "file" and not entry.convert:
        from farslip_ext.hub import packaged_path

        cfg["file"] = str(packaged_path(entry))  # shipped inside the package: no download, no conversion
    else:
        cfg[compat.RESOLVER_KEY] = f"{entry.arch}:{entry.tag}"
    return cfg


def _resolve(ref: compat.WeightsRef, model: torch.nn.Module) -> str:
    """Called by stock ``open_clip.create_model`` right before it loads a tag's weights into ``model``."""
    from farslip_ext.hub import fetch_converted

    arch, tag = ref.key.split(":", 1)
    entry = CATALOGUE.entry(arch, tag)
    path, info = fetch_converted(entry, cache_dir=ref.cache_dir)
    ctx = info.get("context_length")
    built = getattr(model, "context_length", None)
    if ctx is not None and built is not None and int(ctx) != int(built):
        raise ContextLengthMismatch(
            f"{entry.filename} was trained with a {ctx}-token text tower, but {arch} is built with {built} tokens. "
            f"Build it with farslip_ext.load({arch!r}, pretrained={tag!r}) (which follows the file), or "
            f"open_clip.create_model({arch!r}, pretrained={tag!r}, force_context_length={ctx}) with "
            f"open_clip.get_tokenizer({arch!r}, context_length={ctx}).")
    return str(path)


def sync(catalogue: Catalogue = CATALOGUE) -> None:
    """Make open_clip know every architecture and tag of ``catalogue`` (idempotent)."""
    with _LOCK:
        for path in catalogue.config_paths():
            _add_config_path(path)
        for arch, tags in catalogue.entries().items():
            for tag, entry in tags.items():
                compat.install_pretrained_tag(arch, tag, tag_cfg(entry))
        compat.install_weight_resolver(_resolve)
