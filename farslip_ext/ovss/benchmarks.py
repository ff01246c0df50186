"""OVSS benchmarks are mmseg config files; this module reads their facts without importing mmseg.

A benchmark is a ``<key>.py`` config in a folder returned by the ``farslip_ovss_config_paths`` plugin hook
(the package's ``farslip_ext/segmentation/configs`` first, then each plugin's). Besides the usual mmseg
keys it carries a ``benchmark`` dict::

    benchmark = dict(
        name='LoveDA',                      # display name; joins the published table by this name
        roots=['LoveDA', 'loveDA'],         # folders under a data root (the first is canonical)
        raw_label_values=list(range(8)),    # values a label file may hold (before reduce_zero_label)
        official_release='Val/{Rural,Urban}/...',   # what the converter reads (for error messages)
        prepare='farslip ovss-convert loveda <official-release-folder> --data-root <data-root>',
        notes='0 = no-data (ignored through reduce_zero_label)',
        presets=dict(segearth=dict(prob_thd=0.3, bg_idx=0)),   # per-dataset settings of a preset
    )

and the dataset (``test_dataloader.dataset``: type, data_prefix, img_suffix, seg_map_suffix,
reduce_zero_label), the batch size and the class-name file (``model.class_names``). Adding a benchmark
is adding such a file and its class-name file; nothing else changes.
"""
from __future__ import annotations

import difflib
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple, Union

from farslip_ext.errors import ConfigError, DataError

__all__ = ["Benchmark", "DatasetNotFoundError", "benchmark_dirs", "list_benchmarks", "get_benchmark",
           "resolve_benchmarks", "find_dataset_root", "read_config", "complete_config", "merge_dicts",
           "benchmark_from_config", "paper_order"]

logger = logging.getLogger(__name__)


class DatasetNotFoundError(DataError, FileNotFoundError):
    """A benchmark's folder (or its image/label folders) is missing under the data root."""


@dataclass(frozen=True)
class Benchmark:
    """The facts of one benchmark config (see the module doc)."""

    key: str
    name: str
    config_file: Path
    dataset_type: str
    roots: Tuple[str, ...]
    img_dir: str
    ann_dir: str
    img_suffix: str
    seg_map_suffix: str
    reduce_zero_label: bool
    classname_file: Any
    raw_label_values: FrozenSet[int]
    batch_size: int
    official_release: str = ""
    notes: str = ""
    prepare: str = ""
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of classes of its class-name file."""
        from farslip_ext.ovss.classnames import load_class_names

        return load_class_names(self.classname_file).num_classes

    def converter_command(self) -> str:
        """How the evaluated layout is made (``benchmark.prepare`` of the config)."""
        return f"`{self.prepare}`" if self.prepare else f"the dataset's own preparation steps (see {self.config_file})"


def benchmark_dirs() -> List[Path]:
    """Config folders, built-in first (``farslip_ovss_config_paths``)."""
    from farslip_ext.plugins import hook_paths

    return hook_paths("farslip_ovss_config_paths")


@functools.lru_cache(maxsize=256)
def _read(path: str, mtime: float) -> Dict[str, Any]:
    from mmengine.config import Config

    return Config.fromfile(path, import_custom_modules=False).to_dict()


def read_config(path: Union[str, Path]) -> Dict[str, Any]:
    """A config file as a plain dict (``_base_`` resolved, ``custom_imports`` not imported: no mmseg); a
    fresh copy on every call."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} not found")
    import copy

    try:
        return copy.deepcopy(_read(str(p.resolve()), p.stat().st_mtime))  # callers may edit their copy
    except (SyntaxError, ValueError, KeyError, TypeError, NameError, ImportError) as e:
        raise ConfigError(f"cannot read config {p}: {type(e).__name__}: {e}") from e


def merge_dicts(base: Mapping[str, Any], over: Mapping[str, Any]) -> Dict[str, Any]:
    """``over`` merged into a copy of ``base``, dicts recursively (lists and other values are replaced)."""
    import copy

    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge_dicts(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def complete_config(cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """A config whose ``model`` has no ``type`` (a short plugin or user config) merged over the base config;
    a complete mmseg config (``model.type`` set, e.g. through ``_base_``) unchanged."""
    model = cfg.get("model")
    if isinstance(model, Mapping) and model.get("type"):
        return dict(cfg)
    from farslip_ext.ovss.settings import base_config

    return merge_dicts(base_config(), cfg)


def _need(cfg: Mapping[str, Any], dotted: str, path: Path) -> Any:
    cur: Any = cfg
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur or cur[part] is None:
            raise ConfigError(f"benchmark config {path} has no {dotted}; a benchmark config sets benchmark=dict(name, "
                              f"roots, raw_label_values, ...), model.class_names and test_dataloader.dataset "
                              f"(type, data_prefix, img_suffix, seg_map_suffix)")
        cur = cur[part]
    return cur


def benchmark_from_config(path: Union[str, Path], cfg: Optional[Mapping[str, Any]] = None) -> Benchmark:
    """The :class:`Benchmark` of a config file (its ``benchmark`` dict and dataset)."""
    path = Path(path)
    cfg = complete_config(read_config(path) if cfg is None else cfg)
    b = _need(cfg, "benchmark", path)
    ds = _need(cfg, "test_dataloader.dataset", path)
    prefix = _need(cfg, "test_dataloader.dataset.data_prefix", path)
    roots = b.get("roots") or [Path(str(ds.get("data_root") or path.stem)).name]
    return Benchmark(
        key=path.stem, name=str(b.get("name") or path.stem), config_file=path, dataset_type=str(_need(ds, "type", path)),
        roots=tuple(str(r) for r in roots), img_dir=str(prefix.get("img_path", "")),
        ann_dir=str(prefix.get("seg_map_path", "")), img_suffix=str(_need(ds, "img_suffix", path)),
        seg_map_suffix=str(_need(ds, "seg_map_suffix", path)),
        reduce_zero_label=bool(ds.get("reduce_zero_label", False)),
        classname_file=_need(cfg, "model.class_names", path),
        raw_label_values=frozenset(int(v) for v in _need(b, "raw_label_values", path)),
        batch_size=int(cfg["test_dataloader"].get("batch_size", 1)),
        official_release=str(b.get("official_release", "")), notes=str(b.get("notes", "")),
        prepare=str(b.get("prepare", "")),
        presets={str(k): dict(v) for k, v in (b.get("presets") or {}).items()},
    )


def _config_files() -> List[Path]:
    files: List[Path] = []
    for d in benchmark_dirs():
        if d.is_dir():
            files.extend(sorted(p for p in d.glob("*.py") if not p.name.startswith("_")))
    return files


@functools.lru_cache(maxsize=8)
def _scan(stamp: Tuple[Tuple[str, float], ...]) -> Tuple[Benchmark, ...]:
    found: Dict[str, Benchmark] = {}
    for path_s, _ in stamp:
        b = benchmark_from_config(path_s)
        if b.key in found:
            raise ConfigError(f"two OVSS benchmark configs are called {b.key!r}: {found[b.key].config_file} and "
                              f"{b.config_file}; benchmark keys (file stems) must be unique across plugins")
        found[b.key] = b
    order = paper_order()
    ranked = sorted(enumerate(found.values()),
                    key=lambda ib: (order.index(ib[1].name) if ib[1].name in order else len(order), ib[0]))
    return tuple(b for _, b in ranked)


def paper_order() -> List[str]:
    """Dataset names of the published OVSS table, in its column order."""
    from farslip_ext.published import load_published_results

    table = load_published_results()["ovss_miou"]
    first = next(iter(next(iter(table.values())).values()))
    return [k for k in first if k != "Mean"]


def list_benchmarks() -> List[Benchmark]:
    """Every registered benchmark: those of the published table in its column order, then the others
    (plugin order, then file name)."""
    stamp = tuple((str(p), p.stat().st_mtime) for p in _config_files())
    return list(_scan(stamp))


def _aliases(benches: Sequence[Benchmark]) -> Dict[str, str]:
    out = {b.name.lower(): b.key for b in benches}
    extra = {"oem": "openearthmap", "udd": "udd5", "isprs": "vaihingen"}
    out.update({k: v for k, v in extra.items() if any(b.key == v for b in benches)})
    return out


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called ``name`` (key like ``loveda`` or display name like ``LoveDA``; case-insensitive)."""
    benches = list_benchmarks()
    by_key = {b.key.lower(): b for b in benches}
    aliases = _aliases(benches)
    key = aliases.get(str(name).lower(), str(name).lower())
    if key not in by_key:
        close = difflib.get_close_matches(str(name).lower(), list(by_key) + list(aliases), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise KeyError(f"unknown OVSS dataset {name!r}{hint}; choose from {[b.key for b in benches]}, 'paper' (the "
                       f"published table) or 'all', or run your own config with --config")
    return by_key[key]


def resolve_benchmarks(datasets: Union[None, str, Sequence[str]]) -> List[Benchmark]:
    """``"all"``/None -> every benchmark; ``"paper"`` -> those of the published table; a comma-separated
    string or a list -> those, in that order."""
    benches = list_benchmarks()
    paper = [b for b in benches if b.name in paper_order()]
    if datasets is None or (isinstance(datasets, str) and datasets.strip().lower() in ("all", "")):
        return benches
    items = [s.strip() for s in datasets.split(",")] if isinstance(datasets, str) else list(datasets)
    out: List[Benchmark] = []
    for item in items:
        if not item:
            continue
        low = str(item).lower()
        group = benches if low == "all" else paper if low == "paper" else [get_benchmark(item)]
        out.extend(b for b in group if b not in out)
    if not out:
        raise ValueError(f"no OVSS dataset selected from {datasets!r}; choose from {[b.key for b in benches]}, "
                         f"'paper' or 'all'")
    return out


def find_dataset_root(bench: Benchmark, data_root: Union[str, Path]) -> Path:
    """The benchmark's folder under ``data_root`` (first existing spelling of ``bench.roots``).

    Raises :class:`DatasetNotFoundError` naming every path tried, the expected layout and the converter.
    """
    data_root = Path(data_root)
    tried: List[Path] = []
    where = f" (official release: {bench.official_release})" if bench.official_release else ""
    for rel in bench.roots:
        root = data_root / rel
        tried.append(root)
        if root.is_dir():
            missing = [root / d for d in (bench.img_dir, bench.ann_dir) if not (root / d).is_dir()]
            if missing:
                raise DatasetNotFoundError(
                    f"{bench.name}: {root} exists but lacks {', '.join(str(m) for m in missing)}. Expected "
                    f"{root}/{bench.img_dir}/*{bench.img_suffix} and {root}/{bench.ann_dir}/*{bench.seg_map_suffix}. "
                    f"Create it with {bench.converter_command()}{where}.")
            return root
    raise DatasetNotFoundError(
        f"{bench.name}: dataset folder not found; tried {', '.join(str(t) for t in tried)}. Expected "
        f"<data-root>/{bench.roots[0]}/{bench.img_dir}/*{bench.img_suffix} and "
        f"<data-root>/{bench.roots[0]}/{bench.ann_dir}/*{bench.seg_map_suffix}. Pass the right --data-root, or "
        f"create the folder with {bench.converter_command()}{where}.")
