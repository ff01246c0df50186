"""The catalogue: every registered architecture (OpenCLIP model config) and pretrained-weights entry.

One object, :data:`CATALOGUE`, filled by the plugins (the built-in plugin reads the package's
``registry/`` folder; third-party plugins add theirs through the same hooks) and read by the open_clip
bridge, the converter, the hub and the loader. It holds data only: pushing it into open_clip is
:mod:`farslip_ext.openclip_bridge`'s job.

In a source checkout the declarative files live in the top-level ``registry/`` folder; installed, they
are the package ``farslip_ext._registry_data`` (mapped with ``package_dir`` in setup.cfg).
"""
from __future__ import annotations

import copy
import difflib
import importlib.util
import json
import threading
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from farslip_ext.errors import FarSLIPError

__all__ = [
    "catalogue_dir",
    "model_config_dir",
    "package_dir",
    "load_pretrained_manifest",
    "PretrainedEntry",
    "Catalogue",
    "CATALOGUE",
    "CatalogueError",
]

_MODEL_CFG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")


class CatalogueError(FarSLIPError, ValueError):
    """A model config or pretrained entry is malformed, or clashes with another one."""


def package_dir() -> Path:
    """The installed ``farslip_ext`` folder (for files shipped inside the package, e.g. ``assets/``)."""
    return Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def catalogue_dir() -> Path:
    """Folder holding ``pretrained.json``, ``model_configs/``, ``classnames/``, ``published_results.json``."""
    candidates = [package_dir() / "_registry_data"]  # regular install
    try:  # editable install: setuptools maps the package onto <repo>/registry
        spec = importlib.util.find_spec("farslip_ext._registry_data")
        if spec is not None and spec.submodule_search_locations:
            candidates += [Path(p) for p in spec.submodule_search_locations]
    except (ImportError, ValueError):
        pass
    candidates.append(package_dir().parent / "registry")  # source checkout without an install
    for path in candidates:
        if (path / "pretrained.json").is_file():
            return path
    raise FileNotFoundError("farslip_ext's catalogue (pretrained.json, model_configs/) was not found; reinstall the "
                            "package with `pip install -e .` from the repository root.")


def model_config_dir() -> Path:
    return catalogue_dir() / "model_configs"


@dataclass(frozen=True)
class PretrainedEntry:
    """One released weights file: where it lives, how to read it and how it was trained.

    Exactly one source: ``hf_hub_id`` + ``hf_hub_filename`` (Hugging Face Hub), ``url`` (optionally
    with ``archive_member``, a file inside a ``.zip``), ``file`` (shipped inside the package, relative
    to ``farslip_ext/``), or ``manual`` (instructions for a file the user must obtain themselves, e.g.
    behind a login; the user passes it as ``pretrained=<file>``).
    """

    arch: str
    tag: str
    hf_hub_id: Optional[str] = None
    hf_hub_filename: Optional[str] = None
    revision: str = "main"
    url: Optional[str] = None
    archive_member: Optional[str] = None
    file: Optional[str] = None
    manual: Optional[str] = None
    sha256: Optional[str] = None
    convert: bool = True  # False: the file is already an open_clip state dict (packaged weights)
    quick_gelu: bool = True
    context_length: Optional[int] = None  # the file's text context when known (else the tensors decide)
    long_clip: Optional[bool] = None
    license: str = "unknown"
    source: str = ""
    paper: str = ""
    stage: Optional[int] = None
    notes: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``"hf"``, ``"url"``, ``"file"`` or ``"manual"``."""
        if self.hf_hub_id:
            return "hf"
        if self.url:
            return "url"
        if self.file:
            return "file"
        return "manual"

    @property
    def filename(self) -> str:
        """The released file's name (for messages and cache names)."""
        if self.kind == "hf":
            return str(self.hf_hub_filename)
        if self.kind == "url":
            return Path(self.archive_member or self.url.split("?")[0]).name
        if self.kind == "file":
            return Path(self.file).name
        return f"{self.arch}-{self.tag}.pt"

    @property
    def location(self) -> str:
        if self.kind == "hf":
            return f"hf://{self.hf_hub_id}/{self.hf_hub_filename}@{self.revision}"
        if self.kind == "url":
            return self.url + (f"!{self.archive_member}" if self.archive_member else "")
        if self.kind == "file":
            return f"farslip_ext/{self.file}"
        return "user-supplied file"

    @classmethod
    def from_dict(cls, arch: str, tag: str, d: Mapping[str, Any]) -> "PretrainedEntry":
        d = dict(d)
        sources = [k for k in ("hf_hub_id", "url", "file", "manual") if d.get(k)]
        if len(sources) != 1:
            raise CatalogueError(f"pretrained entry {arch}:{tag} must name exactly one source (hf_hub_id + "
                                 f"hf_hub_filename, url, file or manual); it has {sources or 'none'}")
        if d.get("hf_hub_id") and not d.get("hf_hub_filename"):
            raise CatalogueError(f"pretrained entry {arch}:{tag} has hf_hub_id but no hf_hub_filename")
        if d.get("archive_member") and not d.get("url"):
            raise CatalogueError(f"pretrained entry {arch}:{tag}: archive_member needs a url")
        known = {f.name for f in fields(cls)} - {"arch", "tag", "extra"}
        return cls(arch=arch, tag=tag, **{k: v for k, v in d.items() if k in known},
                   extra={k: v for k, v in d.items() if k not in known})


def load_pretrained_manifest(path: Optional[Path] = None) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """``{arch: {tag: entry-dict}}`` from ``pretrained.json`` (validated; keys starting with ``_`` are notes)."""
    path = path or catalogue_dir() / "pretrained.json"
    with open(path, "r", encoding="utf-8") as f:
        data = {a: {t: d for t, d in tags.items() if not t.startswith("_")}
                for a, tags in json.load(f).items() if not a.startswith("_")}
    for arch, tags in data.items():
        for tag, d in tags.items():
            PretrainedEntry.from_dict(arch, tag, d)  # validate
    return data


def _read_model_configs(path: Path) -> Dict[str, Tuple[Path, Dict[str, Any]]]:
    files = [path] if path.is_file() else sorted(path.glob("*.json"))
    if not files:
        raise CatalogueError(f"model config path {path} holds no *.json files")
    out = {}
    for f in files:
        with open(f, "r", encoding="utf-8") as fh:
            cfg = json.load(fh)
        missing = [k for k in _MODEL_CFG_KEYS if k not in cfg]
        if missing:
            raise CatalogueError(f"model config {f} lacks {missing} (needs {list(_MODEL_CFG_KEYS)}; open_clip would "
                                 f"skip it silently)")
        out[f.stem] = (f, cfg)
    return out


class Catalogue:
    """Registered model configs and pretrained entries (thread-safe, idempotent additions)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._paths: List[Path] = []
        self._configs: Dict[str, Tuple[Path, Dict[str, Any]]] = {}
        self._entries: Dict[str, Dict[str, PretrainedEntry]] = {}

    # ---- filling -------------------------------------------------------------------------------
    def add_model_configs(self, path: Any) -> List[str]:
        """Add a model-config JSON file or folder; returns the architecture names it provides.

        Adding the same path twice is a no-op; a name that another path already defines differently is
        an error (open_clip would let the later one win silently).
        """
        path = Path(path).resolve()
        with self._lock:
            found = _read_model_configs(path)
            if path in self._paths:
                return list(found)
            for name, (f, cfg) in found.items():
                old = self._configs.get(name)
                if old is not None and old[1] != cfg:
                    raise CatalogueError(f"model config {name!r} from {f} differs from the one already registered "
                                         f"from {old[0]}; rename one of them (prefix it with your project name)")
            self._paths.append(path)
            self._configs.update(found)
            return list(found)

    def add_pretrained(self, table: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> List[PretrainedEntry]:
        """Add ``{arch: {tag: entry-dict}}``; re-adding an identical entry is a no-op, a different one an error."""
        from farslip_ext.compat import normalize_tag

        added = []
        with self._lock:
            for arch, tags in table.items():
                for tag, d in tags.items():
                    tag = normalize_tag(tag)
                    entry = PretrainedEntry.from_dict(arch, tag, d)
                    known = self._entries.setdefault(arch, {})
                    if tag in known and known[tag] != entry:
                        raise CatalogueError(f"pretrained tag {arch}:{tag} is registered twice with different entries")
                    known[tag] = entry
                    added.append(entry)
        return added

    # ---- reading -------------------------------------------------------------------------------
    def config_paths(self) -> List[Path]:
        return list(self._paths)

    def arch_names(self) -> List[str]:
        """Architectures added through the catalogue (farslip_ext's and its plugins')."""
        return list(self._configs)

    def model_config(self, arch: str) -> Optional[Dict[str, Any]]:
        item = self._configs.get(arch)
        return copy.deepcopy(item[1]) if item else None

    def entries(self) -> Dict[str, Dict[str, PretrainedEntry]]:
        """``{arch: {tag: PretrainedEntry}}`` (a copy)."""
        return {a: dict(t) for a, t in self._entries.items()}

    def find(self, arch: str, tag: str) -> Optional[PretrainedEntry]:
        from farslip_ext.compat import normalize_tag

        return self._entries.get(arch, {}).get(normalize_tag(tag))

    def entry(self, arch: str, tag: str) -> PretrainedEntry:
        """The entry for ``arch``/``tag``; an unknown one is a ``KeyError`` naming what exists."""
        found = self.find(arch, tag)
        if found is not None:
            return found
        if arch not in self._entries:
            close = difflib.get_close_matches(arch, list(self._entries), n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise KeyError(f"no pretrained weights are registered for architecture {arch!r}.{hint} Architectures "
                           f"with weights: {sorted(self._entries)}")
        raise KeyError(f"unknown pretrained tag {tag!r} for {arch!r}; available tags: {sorted(self._entries[arch])}")

    def list_pretrained(self) -> List[Tuple[str, str]]:
        return [(a, t) for a, tags in self._entries.items() for t in tags]

    # ---- tests ---------------------------------------------------------------------------------
    def snapshot(self) -> Tuple[Any, ...]:
        with self._lock:
            return list(self._paths), dict(self._configs), {a: dict(t) for a, t in self._entries.items()}

    def restore(self, snap: Tuple[Any, ...]) -> None:
        with self._lock:
            self._paths[:] = snap[0]
            self._configs = dict(snap[1])
            self._entries = {a: dict(t) for a, t in snap[2].items()}


#: The process-wide catalogue.
CATALOGUE = Catalogue()
