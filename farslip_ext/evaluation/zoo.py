"""The remote-sensing CLIP zoo: leaderboard aliases, model specs, and the paper row each model is compared with.

The aliases are data (the ``_zoo`` section of ``registry/pretrained.json``): each names an architecture
and a tag (a catalogue entry, or one of open_clip's own tags) and the row of each published table the
model reproduces. A **model spec** (``farslip benchmark --models``) is one of::

    remoteclip-vitb32                       a zoo alias
    farslip-vitb16:s2                       ARCH:TAG (any registered architecture and tag)
    farslip-vitb16:/ckpt/epoch_3.pt         ARCH:FILE (a checkpoint in any FarSLIP/OpenCLIP container)
    /ckpt/FarSLIP2_ViT-B-16.pt              FILE (architecture inferred from the tensors)
    hf-hub:org/repo, local-dir:folder       open_clip Hub folders
    ARCH                                    random weights (a baseline of the baselines)
    mine=farslip-vitb16:/ckpt/epoch_3.pt    any of these with a display name (LABEL=SPEC)
"""
from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from farslip_ext.catalogue import CATALOGUE, catalogue_dir
from farslip_ext.errors import ConfigError
from farslip_ext.published import TASK_TABLES, PaperRow, load_published_results

__all__ = ["TASK_FAMILIES", "ZooModel", "ModelSpec", "zoo", "zoo_model", "parse_model_spec", "paper_rows",
           "find_zoo_alias"]

#: the task families of the paper's three tables
TASK_FAMILIES = ("ovss", "zeroshot", "retrieval")
_SCHEMAS = ("hf-hub:", "local-dir:")
_LABEL = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.+-]*)=(.+)$")


@dataclass(frozen=True)
class ZooModel:
    """One model of the zoo (an alias) with the metadata a user needs to judge and cite it."""

    alias: str
    arch: str
    tag: str
    family: str
    backbone: str
    paper: Dict[str, Optional[str]]  # task family -> method name in that table (None: not in it)
    stock: bool  # one of open_clip's own tags (not a catalogue entry)
    quick_gelu: bool
    context_length: int
    license: str
    source: str
    location: str  # where the file comes from (hf://..., URL, "user-supplied file", open_clip)
    sha256: Optional[str]
    kind: str  # "stock" | "hf" | "url" | "file" | "manual"
    notes: str = ""


@lru_cache(maxsize=1)
def _zoo_table() -> Dict[str, Dict[str, Any]]:
    with open(catalogue_dir() / "pretrained.json", "r", encoding="utf-8") as f:
        raw = json.load(f).get("_zoo", {})
    return {k: v for k, v in raw.items() if not k.startswith("_")}


def _arch_config_context(arch: str) -> int:
    import open_clip

    cfg = CATALOGUE.model_config(arch) or open_clip.get_model_config(arch) or {}
    return int(cfg.get("text_cfg", {}).get("context_length", 77))


def _build(alias: str, d: Mapping[str, Any]) -> ZooModel:
    paper = {t: d.get("paper", {}).get(t) for t in TASK_FAMILIES}
    if "stock" in d:
        s = d["stock"]
        return ZooModel(alias, d["arch"], d["tag"], d["family"], d["backbone"], paper, True, bool(s["quick_gelu"]),
                        int(s["context_length"]), s["license"], s["source"], f"open_clip tag {d['arch']}:{d['tag']}",
                        s.get("url_sha256"), "stock", s.get("notes", ""))
    e = CATALOGUE.find(d["arch"], d["tag"])
    if e is None:
        raise ConfigError(f"zoo alias {alias!r} names {d['arch']}:{d['tag']}, which is not a registered tag; fix "
                          f"registry/pretrained.json")
    ctx = e.context_length or _arch_config_context(e.arch)
    return ZooModel(alias, e.arch, e.tag, d["family"], d["backbone"], paper, False, e.quick_gelu, int(ctx), e.license,
                    e.source, e.location, e.sha256, e.kind, e.notes)


def zoo() -> Dict[str, ZooModel]:
    """Every alias of the zoo, in the catalogue's order."""
    return {a: _build(a, d) for a, d in _zoo_table().items()}


def zoo_model(alias: str) -> ZooModel:
    """The zoo model of ``alias``; an unknown alias is a ``KeyError`` naming close ones."""
    table = _zoo_table()
    if alias not in table:
        close = difflib.get_close_matches(alias, list(table), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise KeyError(f"unknown zoo alias {alias!r}{hint}; aliases: {sorted(table)}")
    return _build(alias, table[alias])


def find_zoo_alias(arch: Optional[str], tag: Optional[str]) -> Optional[str]:
    """The alias whose arch and tag are these (tags compare case-insensitively), or ``None``."""
    if not arch or not tag:
        return None
    for alias, d in _zoo_table().items():
        if d["arch"] == arch and str(d["tag"]).lower() == str(tag).lower().replace("-", "_"):
            return alias
    return None


@dataclass(frozen=True)
class ModelSpec:
    """A parsed ``--models`` item: what :func:`farslip_ext.load` gets and how the leaderboard names it."""

    text: str  # as the user wrote it
    name: str  # display name (label, alias or the spec itself)
    model: str  # first argument of farslip_ext.load (architecture, file, hf-hub:/local-dir: name)
    pretrained: Optional[str]  # second argument (tag or file), or None
    alias: Optional[str] = None  # the zoo alias it is (given or recognised from arch + tag)
    row_override: Optional[Dict[str, Optional[PaperRow]]] = field(default=None, compare=False)

    @property
    def arch(self) -> Optional[str]:
        return None if self.model.startswith(_SCHEMAS) or Path(self.model).is_file() else self.model

    @property
    def is_file(self) -> bool:
        return bool(self.pretrained and Path(self.pretrained).is_file()) or Path(self.model).is_file()


def parse_model_spec(text: str) -> ModelSpec:
    """Parse one model spec (see the module docstring); an unknown one is a :class:`ConfigError` naming the forms."""
    import open_clip

    raw = text.strip()
    if not raw:
        raise ConfigError("empty model spec; write an alias (remoteclip-vitb32), ARCH:TAG, ARCH:FILE or a file")
    label = None
    m = _LABEL.match(raw)
    if m and not raw.startswith(_SCHEMAS) and not Path(raw).exists():
        label, raw = m.group(1), m.group(2).strip()
    table = _zoo_table()
    if raw in table:
        d = table[raw]
        return ModelSpec(text, label or raw, d["arch"], d["tag"], alias=raw)
    if raw.startswith(_SCHEMAS) or Path(raw).is_file() or raw in open_clip.list_models():
        return ModelSpec(text, label or raw, raw, None)  # an ARCH alone is randomly initialised
    if ":" in raw:
        arch, rest = raw.split(":", 1)
        if arch not in open_clip.list_models():
            close = difflib.get_close_matches(arch, open_clip.list_models(), n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            raise ConfigError(f"model spec {text!r}: unknown architecture {arch!r}{hint}. Write ARCH:TAG or ARCH:FILE "
                              f"with an open_clip/farslip_ext architecture, or a zoo alias ({', '.join(sorted(table))})")
        return ModelSpec(text, label or raw, arch, rest, alias=find_zoo_alias(arch, rest))
    close = difflib.get_close_matches(raw, list(table), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ConfigError(
        f"model spec {text!r} is neither a zoo alias, ARCH:TAG, ARCH:FILE, an existing checkpoint file nor "
        f"hf-hub:/local-dir:.{hint} Aliases: {', '.join(sorted(table))} (farslip benchmark --list-models).")


def _infer_rows(spec: ModelSpec) -> Dict[str, Optional[PaperRow]]:
    from farslip_ext.evaluation.report import infer_published_row

    row = infer_published_row(spec.model, spec.pretrained)
    if row is None:
        return {t: None for t in TASK_FAMILIES}
    backbone, method = row
    out: Dict[str, Optional[PaperRow]] = {}
    for task in TASK_FAMILIES:
        name = re.sub(r"^FarSLIP-s([12])$", r"FarSLIP\1", method) if task == "ovss" else method
        out[task] = PaperRow(TASK_TABLES[task], backbone, name)
    return out


def paper_rows(spec: ModelSpec) -> Dict[str, Optional[PaperRow]]:
    """The published row each task family compares ``spec`` with (``None`` where the table has no such row).

    A zoo alias names its rows; another spec is matched by name (``farslip-vitb16`` + ``s2`` or a file
    ``FarSLIP2_ViT-B-16.pt`` -> FarSLIP-s2 B/16; ``openai`` -> CLIP); ``row_override`` wins over both.
    """
    if spec.row_override is not None:
        rows = dict(spec.row_override)
    elif spec.alias is not None:
        z = _zoo_table()[spec.alias]
        rows = {t: (PaperRow(TASK_TABLES[t], z["backbone"], z["paper"][t]) if z["paper"].get(t) else None)
                for t in TASK_FAMILIES}
    else:
        rows = _infer_rows(spec)
    data = load_published_results()
    return {t: (r if r is not None and r.method in data[r.table].get(r.backbone, {}) else None) for t, r in rows.items()}


def list_zoo_markdown() -> str:
    """The zoo as a markdown table (``farslip benchmark --list-models``)."""
    lines = ["| alias | arch:tag | text context | QuickGELU | paper rows | licence | weights |",
             "|---|---|---|---|---|---|---|"]
    for a, m in zoo().items():
        rows = ", ".join(f"{t}: {m.paper[t]} {m.backbone}" for t in TASK_FAMILIES if m.paper[t]) or "–"
        lines.append(f"| `{a}` | `{m.arch}:{m.tag}` | {m.context_length} | {'yes' if m.quick_gelu else 'no'} | "
                     f"{rows} | {m.license} | {m.location} |")
    return "\n".join(lines) + "\n"

