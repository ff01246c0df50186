"""The bridge to OpenCLIP's public extension points (open_clip_torch 3.x).

* Model configs go in with ``open_clip.add_model_config`` (idempotent here: a path is added once, and
  a name that would shadow a different existing config is an error instead of open_clip's silent
  override).
* Pretrained tags: open_clip has no public "add tag" API, so :func:`_install_tags` is the single,
  version-guarded place that writes ``open_clip.pretrained._PRETRAINED``. Each entry is a
  :class:`_FarSLIPTagCfg`, whose ``file`` is resolved lazily (download with huggingface_hub, verify,
  convert, cache) the first time open_clip asks for it. Nothing touches the network at import.
"""
from __future__ import annotations

import contextlib
import json
import logging
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import open_clip
import torch

from farslip_ext.catalogue import PretrainedEntry

__all__ = [
    "setup",
    "farslip_model_names",
    "registered_pretrained",
    "create_model",
    "create_model_and_transforms",
    "get_tokenizer",
    "ContextLengthMismatch",
]

logger = logging.getLogger(__name__)

_LOCK = threading.RLock()
_ADDED_PATHS: List[Path] = []
_MODEL_NAMES: List[str] = []
_PRETRAINED: Dict[str, Dict[str, PretrainedEntry]] = {}
_SUPPORTED_OPENCLIP_MAJOR = (3,)


class ContextLengthMismatch(ValueError):
    """The released file's text context length differs from the architecture's."""


def _openclip_version_ok() -> bool:
    try:
        major = int(open_clip.__version__.split(".")[0])
    except (AttributeError, ValueError):
        return False
    return major in _SUPPORTED_OPENCLIP_MAJOR


def _config_names(path: Path) -> Dict[str, Path]:
    files = [path] if path.is_file() else sorted(path.glob("*.json"))
    out = {}
    for f in files:
        with open(f, "r", encoding="utf-8") as fh:
            cfg = json.load(fh)
        if not all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
            raise ValueError(f"model config {f} lacks one of 'embed_dim', 'vision_cfg', 'text_cfg' "
                             f"(open_clip would skip it silently)")
        out[f.stem] = f
    return out


def add_model_config_path(path: Union[str, Path]) -> List[str]:
    """Add a model-config file or folder to open_clip once; returns the model names it provides."""
    path = Path(path).resolve()
    with _LOCK:
        names = _config_names(path)
        if path in _ADDED_PATHS:
            return list(names)
        existing = set(open_clip.list_models())
        for name, f in names.items():
            if name in existing:
                with open(f, "r", encoding="utf-8") as fh:
                    ours = json.load(fh)
                if open_clip.get_model_config(name) != ours:
                    raise ValueError(
                        f"model config {name!r} from {f} would silently replace a different config already known "
                        f"to open_clip; rename the file (prefix it with your project name)"
                    )
        open_clip.add_model_config(path)
        _ADDED_PATHS.append(path)
        _MODEL_NAMES.extend(n for n in names if n not in _MODEL_NAMES)
        missing = [n for n in names if n not in open_clip.list_models()]
        if missing:  # pragma: no cover - guards against open_clip changing its scan rules
            raise RuntimeError(f"open_clip did not register {missing} from {path}")
        return list(names)


def farslip_model_names() -> List[str]:
    """Model names added by farslip_ext and its plugins."""
    return list(_MODEL_NAMES)


def registered_pretrained() -> Dict[str, Dict[str, PretrainedEntry]]:
    return {a: dict(t) for a, t in _PRETRAINED.items()}


class _FarSLIPTagCfg(dict):
    """An open_clip pretrained-cfg dict whose ``'file'`` is produced on first access.

    open_clip's ``download_pretrained`` returns ``cfg['file']`` when ``'file' in cfg``; we answer with
    the converted safetensors path (download with huggingface_hub, sha256 check, LongCLIP fold).
    """

    def __init__(self, entry: PretrainedEntry) -> None:
        super().__init__(
            hf_hub=f"{entry.hf_hub_id}/{entry.hf_hub_filename}",
            url="",
            mean=open_clip.OPENAI_DATASET_MEAN,
            std=open_clip.OPENAI_DATASET_STD,
            interpolation="bicubic",
            resize_mode="shortest",
            quick_gelu=entry.quick_gelu,
            license=entry.license,
        )
        self.entry = entry

    def __contains__(self, key: object) -> bool:
        return key == "file" or super().__contains__(key)

    def __getitem__(self, key: str) -> Any:
        if key == "file" and not super().__contains__("file"):
            return str(resolve_tag_file(self.entry, check_context=True)[0])
        return super().__getitem__(key)

    def __deepcopy__(self, memo: dict) -> "_FarSLIPTagCfg":
        return _FarSLIPTagCfg(self.entry)


def _arch_context_length(arch: str) -> int:
    cfg = open_clip.get_model_config(arch) or {}
    return int(cfg.get("text_cfg", {}).get("context_length", 77))


def resolve_tag_file(entry: PretrainedEntry, cache_dir: Optional[Union[str, Path]] = None,
                     check_context: bool = False) -> "tuple[Path, dict]":
    """Converted weights for a tag; with ``check_context`` the text context must equal the arch's."""
    from farslip_ext.hub import fetch_converted

    path, info = fetch_converted(entry, cache_dir=cache_dir)
    ctx = info.get("context_length")
    if check_context and ctx is not None and ctx != _arch_context_length(entry.arch):
        raise ContextLengthMismatch(
            f"{entry.hf_hub_filename} was trained with a {ctx}-token text tower, but {entry.arch} is configured for "
            f"{_arch_context_length(entry.arch)} tokens. Build it with "
            f"farslip_ext.create_model({entry.arch!r}, pretrained={entry.tag!r}) (which follows the file), or "
            f"open_clip.create_model({entry.arch!r}, pretrained={entry.tag!r}, force_context_length={ctx}) and "
            f"open_clip.get_tokenizer({entry.arch!r}, context_length={ctx})."
        )
    return path, info


def _install_tags(table: Dict[str, Dict[str, Dict[str, Any]]]) -> None:
    if not _openclip_version_ok():
        raise RuntimeError(
            f"farslip_ext registers pretrained tags for open_clip_torch 3.x; found {open_clip.__version__}. "
            f"Install open_clip_torch>=3.3,<4."
        )
    from open_clip import pretrained as oc_pretrained

    with _LOCK:
        for arch, tags in table.items():
            for tag, d in tags.items():
                entry = PretrainedEntry.from_dict(arch, tag, d)
                clean = tag.lower().replace("-", "_")
                known = _PRETRAINED.setdefault(arch, {})
                if clean in known and known[clean] != entry:
                    raise ValueError(f"pretrained tag {arch}:{clean} is registered twice with different entries")
                known[clean] = entry
                oc_pretrained._PRETRAINED.setdefault(arch, {})[clean] = _FarSLIPTagCfg(entry)


#: Weights shipped inside the package (no download): ``{arch: {tag: path relative to farslip_ext/}}``.
#: Registered as plain open_clip tags whose ``file`` is the packaged path, so
#: ``open_clip.create_model("farslip-demo-tiny", pretrained="demo")`` loads them with open_clip's own
#: strict loader (and ``farslip_ext.create_model`` passes the tag through to it).
PACKAGED_WEIGHTS: Dict[str, Dict[str, str]] = {"farslip-demo-tiny": {"demo": "assets/demo_clip.safetensors"}}


def _install_packaged_tags() -> None:
    from open_clip import pretrained as oc_pretrained

    root = Path(__file__).resolve().parent
    for arch, tags in PACKAGED_WEIGHTS.items():
        for tag, rel in tags.items():
            oc_pretrained._PRETRAINED.setdefault(arch, {})[tag] = dict(
                file=str(root / rel), url="", hf_hub="", mean=open_clip.OPENAI_DATASET_MEAN,
                std=open_clip.OPENAI_DATASET_STD, interpolation="bicubic", resize_mode="shortest", quick_gelu=True,
                license="mit")


def apply_plugin_catalogues(pm: Any) -> None:
    """Add the model configs and pretrained tags of every plugin in ``pm`` (idempotent)."""
    for paths in pm.hook.farslip_model_config_paths():
        for p in paths or []:
            add_model_config_path(p)
    for table in pm.hook.farslip_pretrained_cfgs():
        if table:
            _install_tags(table)


_SETUP_DONE = False


def setup(load_plugins: bool = False) -> None:
    """Register farslip_ext's model configs and pretrained tags with open_clip (idempotent).

    Runs at ``import farslip_ext`` with the built-in plugin only; ``load_plugins=True`` also loads the
    third-party entry points (otherwise they load on first use of a registry).
    """
    global _SETUP_DONE
    with _LOCK:
        if not _SETUP_DONE:
            from farslip_ext.plugins import builtin

            for p in builtin.farslip_model_config_paths():
                add_model_config_path(p)
            _install_tags(builtin.farslip_pretrained_cfgs())
            _install_packaged_tags()
            _SETUP_DONE = True
        if load_plugins:
            from farslip_ext.plugins import ensure_components_registered

            ensure_components_registered()


def _weights_source(arch: str, pretrained: Optional[str], cache_dir: Optional[Union[str, Path]]):
    """Returns (state_dict or None, context_length or None, passthrough_pretrained)."""
    from farslip_ext.convert import convert_state_dict, load_checkpoint_file

    if not pretrained:
        return None, None, None
    tags = _PRETRAINED.get(arch, {})
    clean = pretrained.lower().replace("-", "_")
    if clean in tags:
        path, info = resolve_tag_file(tags[clean], cache_dir=cache_dir)
        conv = convert_state_dict(load_checkpoint_file(path), arch=arch)
        return conv.state_dict, conv.context_length, None
    if Path(pretrained).is_file():
        conv = convert_state_dict(load_checkpoint_file(pretrained), arch=arch)
        for n in conv.notes:
            logger.info("%s: %s", pretrained, n)
        return conv.state_dict, conv.context_length, None
    return None, None, pretrained


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Model initialized randomly" not in record.getMessage()


@contextlib.contextmanager
def _quiet_random_init_warning():
    """open_clip logs 'No pretrained weights loaded ... initialized randomly' for a model we fill next."""
    flt = _DropRandomInitWarning()
    root = logging.getLogger()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def create_model(model_name: str, pretrained: Optional[str] = None, *, cache_dir: Optional[Union[str, Path]] = None,
                 **kwargs: Any) -> torch.nn.Module:
    """``open_clip.create_model`` that also understands every FarSLIP checkpoint container.

    For a farslip architecture with a tag or a checkpoint path, the weights are converted, the text
    context length is taken from the file's tensors, and they are loaded with ``strict=True``. Anything
    else (``hf-hub:``, ``local-dir:``, stock names and tags) goes straight to open_clip.
    """
    if model_name.startswith(("hf-hub:", "local-dir:")) or model_name not in open_clip.list_models():
        return open_clip.create_model(model_name, pretrained=pretrained, cache_dir=cache_dir, **kwargs)
    sd, ctx, passthrough = _weights_source(model_name, pretrained, cache_dir)
    if sd is None:
        return open_clip.create_model(model_name, pretrained=passthrough, cache_dir=cache_dir, **kwargs)
    if ctx is not None and ctx != _arch_context_length(model_name):
        kwargs.setdefault("force_context_length", ctx)
    with _quiet_random_init_warning():  # the weights are loaded right below
        model = open_clip.create_model(model_name, pretrained=None, **kwargs)
    # strict=True: any missing or unexpected key raises, naming the keys.
    model.load_state_dict(sd, strict=True)
    from farslip_ext.models.quickgelu import warn_if_not_quick_gelu

    warn_if_not_quick_gelu(model, f"{model_name}, pretrained={pretrained}")
    return model


def create_model_and_transforms(model_name: str, pretrained: Optional[str] = None, **kwargs: Any):
    """Like ``open_clip.create_model_and_transforms`` with :func:`create_model`'s weight handling."""
    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    model = create_model(model_name, pretrained=pretrained, **kwargs)
    pp = PreprocessCfg(**merge_preprocess_dict(PreprocessCfg(), getattr(model.visual, "preprocess_cfg", {})))
    return model, image_transform_v2(pp, is_train=True), image_transform_v2(pp, is_train=False)


def get_tokenizer(model_or_name: Union[str, torch.nn.Module], model_name: Optional[str] = None, **kwargs: Any):
    """A tokenizer whose context length matches a built model (or open_clip's, for a name)."""
    if isinstance(model_or_name, str):
        return open_clip.get_tokenizer(model_or_name, **kwargs)
    ctx = getattr(model_or_name, "context_length", None)
    return open_clip.get_tokenizer(model_name or "", context_length=ctx, **kwargs)
