"""``farslip benchmark``: every (model, dataset) cell of the paper's three task families, resumable, one leaderboard.

A **cell** is one model on one dataset of one task family, evaluated with that family's published
protocol:

* ``zeroshot``: the 8 SkyScript scene sets and splits, FarSLIP's two satellite prompts, logit scale 100
  (:mod:`.zeroshot`); the number is top-1;
* ``retrieval``: RSICD, RSITMD, UCM-captions with the ``"a satellite image. "`` prefix, many-to-many
  ground truth (:mod:`.retrieval`); the numbers are the mean of R@1/5/10 per direction;
* ``ovss``: the 8 segmentation sets through ``farslip_ext.segmentation.run_ovss`` with the ``farslip``
  preset (the RS-OVSS protocol); the number is mIoU.

The text context of every model follows its weights (77, or 248 for LongCLIP towers). Each model is
loaded once (:func:`farslip_ext.load`) and shared by its cells.

Every finished cell is written at once as a CLIP_benchmark record in the output folder
(``{dataset}_{pretrained}_{model}_en_{task}.json``). A rerun reuses a record whose ``cell_key`` (model
identity, task, dataset, protocol, precision) matches, so an interrupted run resumes where it stopped and
gives the same leaderboard. Cells whose data or weights are missing are skipped with the reason listed
(``on_missing="error"`` raises instead). The leaderboard (markdown, JSON, figure) goes into ``report/``,
beside the records rather than among them, so ``clip_benchmark build OUT`` reads exactly the records.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypedDict, Union

from farslip_ext.errors import ConfigError, FarSLIPError, WeightsNotAvailableError
from farslip_ext.evaluation.csv_datasets import PUBLISHED_CLASSIFICATION, PUBLISHED_RETRIEVAL
from farslip_ext.evaluation.report import (
    REPORT_DIR,
    TASK_CLASSIFICATION,
    TASK_OVSS,
    TASK_RETRIEVAL,
    Deviation,
    clip_benchmark_record,
    result_filename,
)
from farslip_ext.evaluation.zoo import TASK_FAMILIES, ModelSpec, paper_rows
from farslip_ext.published import PaperRow, published_row, rows_without_weights

__all__ = ["TASK_ALIASES", "OVSS_DATASETS", "DEFAULT_DATASETS", "BenchmarkConfig", "Cell", "CellResult",
           "BenchmarkRun", "parse_tasks", "run_benchmark", "load_run_ovss", "cell_values", "MissingInput"]

logger = logging.getLogger(__name__)

TASK_ALIASES = {"cls": "zeroshot", "classification": "zeroshot", "zsc": "zeroshot", "ret": "retrieval",
                "seg": "ovss", "segmentation": "ovss"}
#: the OVSS table's datasets, in its column order
OVSS_DATASETS: Tuple[str, ...] = ("OpenEarthMap", "LoveDA", "Potsdam", "Vaihingen", "UDD5", "VDD", "UAVid", "iSAID")
DEFAULT_DATASETS: Dict[str, Tuple[str, ...]] = {"zeroshot": PUBLISHED_CLASSIFICATION,
                                                "retrieval": PUBLISHED_RETRIEVAL, "ovss": OVSS_DATASETS}
RECORD_TASK = {"zeroshot": TASK_CLASSIFICATION, "retrieval": TASK_RETRIEVAL, "ovss": TASK_OVSS}
#: the published tables' mean column, per task family (retrieval has none)
MEAN_KEY = {"zeroshot": "mean", "ovss": "Mean", "retrieval": None}
LEADERBOARD = "leaderboard"


class MissingInput(FarSLIPError, RuntimeError):
    """A cell's data, weights or optional package is missing (the cell is skipped, or this is raised)."""


def parse_tasks(spec: Union[str, Sequence[str]]) -> List[str]:
    """``"ovss,zeroshot,retrieval"`` (or ``cls``/``ret``) -> task families, in the given order."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    out: List[str] = []
    for it in items:
        t = TASK_ALIASES.get(it.lower(), it.lower())
        if t not in TASK_FAMILIES:
            raise ConfigError(f"unknown task {it!r}; choose from {list(TASK_FAMILIES)} (or cls, ret)")
        if t not in out:
            out.append(t)
    if not out:
        raise ConfigError(f"--tasks {spec!r} names no task; choose from {list(TASK_FAMILIES)}")
    return out


@dataclass
class BenchmarkConfig:
    """What ``run_benchmark`` evaluates and how (defaults: the published protocols)."""

    models: Sequence[ModelSpec]
    tasks: Sequence[str]
    output_dir: Union[str, Path]
    data_root: Optional[Union[str, Path]] = None  # SkyScript benchmark folder (zeroshot, retrieval)
    image_root: Optional[Union[str, Path]] = None
    ovss_data_root: Optional[Union[str, Path]] = None
    datasets: Dict[str, Sequence[str]] = field(default_factory=dict)  # task -> names (default: the paper's)
    templates: str = "farslip"
    ovss_preset: str = "farslip"
    ovss_overrides: Dict[str, Any] = field(default_factory=dict)
    device: Optional[str] = "auto"
    precision: str = "amp"
    batch_size: int = 128
    workers: int = 4
    on_bad_row: str = "error"
    on_missing: str = "skip"  # "skip": list the cell with its reason; "error": raise
    resume: bool = True
    progress: Optional[bool] = None
    figure: bool = True
    tolerance: Optional[Dict[str, float]] = None  # task -> allowed |ours - paper| (pp); None: no check


@dataclass(frozen=True)
class Cell:
    """One model on one dataset of one task family."""

    model: ModelSpec
    task: str
    dataset: str


class CellResult(TypedDict):
    """One cell of the leaderboard (values in percent, keyed as in the published table)."""

    model: str
    task: str
    dataset: str
    status: str  # "ok" | "skipped"
    values: Dict[str, float]
    reason: Optional[str]
    file: Optional[str]


@dataclass
class BenchmarkRun:
    """What :func:`run_benchmark` did: the leaderboard, its files, and how many cells ran or were reused."""

    leaderboard: Dict[str, Any]
    files: List[Path]
    computed: int
    reused: int
    skipped: int
    deviations: List[Deviation]

    @property
    def ok(self) -> bool:
        """Every compared number within tolerance (True when no tolerance was asked for)."""
        return all(d.ok for d in self.deviations)


# ----------------------------------------------------------------------------------------- identities
def _file_identity(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def model_identity(spec: ModelSpec) -> str:
    """What the weights are, without loading them (a changed file gives a new identity)."""
    from farslip_ext.catalogue import CATALOGUE

    if spec.model.startswith("local-dir:"):
        folder = Path(spec.model[len("local-dir:"):])
        files = sorted(folder.glob("open_clip_*")) if folder.is_dir() else []
        return "local-dir:" + ";".join(_file_identity(f) for f in files)
    if spec.model.startswith("hf-hub:"):
        return spec.model
    if Path(spec.model).is_file():
        return _file_identity(Path(spec.model))
    if spec.pretrained and Path(spec.pretrained).is_file():
        return f"{spec.model}:{_file_identity(Path(spec.pretrained))}"
    entry = CATALOGUE.find(spec.model, spec.pretrained) if spec.pretrained else None
    if entry is not None:
        return f"{spec.model}:{entry.tag}@{entry.location}#{entry.sha256 or ''}"
    return f"{spec.model}:{spec.pretrained or ''}"


def _protocol(cfg: BenchmarkConfig, task: str) -> Dict[str, Any]:
    if task == "zeroshot":
        return {"templates": cfg.templates, "precision": cfg.precision}
    if task == "retrieval":
        return {"caption_prefix": "dataset default", "precision": cfg.precision}
    return {"preset": cfg.ovss_preset, "overrides": {k: cfg.ovss_overrides[k] for k in sorted(cfg.ovss_overrides)},
            "precision": cfg.precision}


def cell_key(cfg: BenchmarkConfig, cell: Cell) -> str:
    blob = json.dumps({"model": model_identity(cell.model), "task": cell.task, "dataset": cell.dataset,
                       "protocol": _protocol(cfg, cell.task)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _record_names(spec: ModelSpec) -> Tuple[str, str]:
    """``(model, pretrained)`` fields of a cell's record, known before the model is loaded."""
    if Path(spec.model).is_file():
        return "auto", spec.model  # architecture inferred from the tensors (the record names it)
    return spec.model, spec.pretrained or ""


def record_path(cfg: BenchmarkConfig, cell: Cell) -> Path:
    model, pretrained = _record_names(cell.model)
    stub = {"dataset": cell.dataset, "model": model, "pretrained": pretrained, "language": "en",
            "task": RECORD_TASK[cell.task]}
    return Path(cfg.output_dir) / result_filename(stub)


# -------------------------------------------------------------------------------------------- values
def _pct(x: float) -> float:
    return round(100.0 * float(x), 6)


def cell_values(task: str, dataset: str, metrics: Mapping[str, Any]) -> Dict[str, float]:
    """The published-table numbers (percent) of one cell from its record's metrics (fractions)."""
    if task == "zeroshot":
        return {dataset: _pct(metrics["acc1"])}
    if task == "retrieval":
        return {f"{dataset}_i2t": _pct(metrics["text_retrieval_mean_recall"]),
                f"{dataset}_t2i": _pct(metrics["image_retrieval_mean_recall"])}
    return {dataset: _pct(metrics["miou"])}


# ------------------------------------------------------------------------------------------- running
def load_run_ovss() -> Callable[..., Dict[str, float]]:
    """``farslip_ext.segmentation.run_ovss`` (imported only when OVSS cells run)."""
    try:
        from farslip_ext.segmentation import run_ovss
    except ImportError as e:
        raise MissingInput(f"segmentation is not available ({type(e).__name__}: {e}); install the segmentation "
                           f"extra (pip install 'farslip-ext[seg]'), or run without OVSS (--tasks cls,ret / "
                           f"--tasks zeroshot,retrieval)") from e
    return run_ovss


def _first_line(e: BaseException) -> str:
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(text.split()) or type(e).__name__


def _weights_missing(e: BaseException) -> bool:
    try:
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
        hub = (HfHubHTTPError, LocalEntryNotFoundError)
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        hub = ()
    chain, cur = [], e
    while cur is not None and len(chain) < 8:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    return any(isinstance(c, (WeightsNotAvailableError, FileNotFoundError) + hub) for c in chain)


class _Runner:
    def __init__(self, cfg: BenchmarkConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self._datasets: Dict[Tuple[str, str], Any] = {}
        self._data_errors: Dict[Tuple[str, str], str] = {}
        self._run_ovss: Optional[Callable[..., Dict[str, float]]] = None
        self._ovss_error: Optional[str] = None

    # ---- inputs -----------------------------------------------------------------------------------
    def _missing(self, reason: str) -> str:
        if self.cfg.on_missing == "error":
            raise MissingInput(reason)
        return reason

    def dataset(self, task: str, name: str) -> Any:
        """The CSV dataset of a zeroshot/retrieval cell (read once, shared by every model)."""
        from farslip_ext.evaluation.csv_datasets import ImageTextRetrievalCsv, SceneClassificationCsv

        key = (task, name)
        if key in self._data_errors:
            raise MissingInput(self._data_errors[key])
        if key not in self._datasets:
            if not self.cfg.data_root:
                reason = f"no data root given for {task} (--data-root: the SkyScript benchmark folder)"
                self._data_errors[key] = reason
                raise MissingInput(self._missing(reason))
            cls = SceneClassificationCsv if task == "zeroshot" else ImageTextRetrievalCsv
            try:
                self._datasets[key] = cls.from_benchmark(name, self.cfg.data_root, image_root=self.cfg.image_root,
                                                         on_bad_row=self.cfg.on_bad_row)
            except FileNotFoundError as e:  # the CSV / class list is not there
                reason = f"data missing: {_first_line(e)}"
                self._data_errors[key] = reason
                raise MissingInput(self._missing(reason)) from e
        return self._datasets[key]

    def run_ovss(self) -> Callable[..., Dict[str, float]]:
        if self._ovss_error is not None:
            raise MissingInput(self._ovss_error)
        if self._run_ovss is None:
            try:
                self._run_ovss = load_run_ovss()
            except MissingInput as e:
                self._ovss_error = str(e)
                raise MissingInput(self._missing(str(e))) from e
        return self._run_ovss

    # ---- one cell ---------------------------------------------------------------------------------
    def evaluate(self, lm: Any, cell: Cell) -> Dict[str, Any]:
        """Metrics (fractions) of one cell."""
        cfg = self.cfg
        if cell.task == "zeroshot":
            from farslip_ext.evaluation.zeroshot import zeroshot_classification

            return zeroshot_classification(lm.model, lm.tokenizer, lm.preprocess, self.dataset("zeroshot", cell.dataset),
                                           cfg.templates, device=lm.device, precision=lm.precision,
                                           batch_size=cfg.batch_size, workers=cfg.workers, progress=cfg.progress)
        if cell.task == "retrieval":
            from farslip_ext.evaluation.retrieval import zeroshot_retrieval

            return zeroshot_retrieval(lm.model, lm.tokenizer, lm.preprocess, self.dataset("retrieval", cell.dataset),
                                      device=lm.device, precision=lm.precision, batch_size=cfg.batch_size,
                                      workers=cfg.workers, progress=cfg.progress)
        run_ovss = self.run_ovss()
        if not cfg.ovss_data_root:
            raise MissingInput(self._missing("no OVSS data root given (--ovss-data-root)"))
        work = self.out / "work" / "ovss" / record_path(cfg, cell).stem
        try:
            res = run_ovss(lm, None, [cell.dataset], data_root=str(cfg.ovss_data_root), work_dir=str(work),
                           preset=cfg.ovss_preset, **cfg.ovss_overrides)
        except WeightsNotAvailableError:
            raise
        except FileNotFoundError as e:  # DatasetNotFoundError: the folder or its layout is not there
            raise MissingInput(self._missing(f"data missing: {_first_line(e)}")) from e
        value = _pick(res, cell.dataset)
        return {"miou": round(float(value) / 100.0, 8)}


def _norm(k: str) -> str:
    return "".join(ch for ch in k.lower() if ch.isalnum())


def _pick(result: Mapping[str, Any], dataset: str) -> float:
    """``run_ovss``'s number for ``dataset`` (keys matched up to case and punctuation)."""
    for k, v in result.items():
        if _norm(k) == _norm(dataset):
            return float(v)
    raise RuntimeError(f"run_ovss returned no number for {dataset!r} (it returned {sorted(result)})")


def _plan(cfg: BenchmarkConfig) -> List[Cell]:
    cells: List[Cell] = []
    for spec in cfg.models:
        for task in cfg.tasks:
            for ds in cfg.datasets.get(task) or DEFAULT_DATASETS[task]:
                cells.append(Cell(spec, task, ds))
    seen: Dict[Path, Cell] = {}
    for c in cells:
        p = record_path(cfg, c)
        if p in seen and seen[p].model != c.model:
            raise ConfigError(f"models {seen[p].model.text!r} and {c.model.text!r} would write the same result file "
                              f"{p.name}; give the checkpoints different file names (the record is named after "
                              f"architecture and file name, as CLIP_benchmark names it)")
        seen[p] = c
    names = [s.name for s in cfg.models]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"models {dup} are given twice; name them apart with LABEL=SPEC")
    return cells


def _reusable(cfg: BenchmarkConfig, cell: Cell) -> Optional[Dict[str, Any]]:
    p = record_path(cfg, cell)
    if not (cfg.resume and p.is_file()):
        return None
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        logger.warning("%s is unreadable (%s); evaluating the cell again", p, e)
        return None
    if rec.get("cell_key") != cell_key(cfg, cell) or "metrics" not in rec:
        logger.info("%s was made by another model file or protocol; evaluating the cell again", p.name)
        return None
    return rec


def _load_model(cfg: BenchmarkConfig, spec: ModelSpec) -> Any:
    import farslip_ext
    from farslip_ext.openclip_bridge import arch_context_length

    lm = farslip_ext.load(spec.model, spec.pretrained, device=cfg.device, precision=cfg.precision)
    arch = lm.arch
    if not arch.startswith(("hf-hub:", "local-dir:")) and lm.context_length is not None:
        declared = arch_context_length(arch)
        if declared != lm.context_length:
            logger.warning("%s: the weights have a %d-token text tower; %s declares %d tokens, so the model was "
                           "built with %d (as the file says) and its tokenizer matches", spec.name,
                           lm.context_length, arch, declared, lm.context_length)
    return lm


def run_benchmark(cfg: BenchmarkConfig) -> BenchmarkRun:
    """Evaluate every cell (reusing finished ones), write the records and the leaderboard."""
    if cfg.on_missing not in ("skip", "error"):
        raise ConfigError(f"on_missing={cfg.on_missing!r}; choose 'skip' or 'error'")
    if not cfg.models:
        raise ConfigError("no models to evaluate; pass --models (farslip benchmark --list-models shows the zoo)")
    cfg.tasks = parse_tasks(cfg.tasks)
    cells = _plan(cfg)
    runner = _Runner(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: Dict[Cell, CellResult] = {}
    contexts: Dict[str, Optional[int]] = {}
    computed = reused = 0
    if cfg.on_missing == "error" and "ovss" in cfg.tasks:
        runner.run_ovss()  # fail before the long runs
    for spec in cfg.models:
        mine = [c for c in cells if c.model == spec]
        pending: List[Cell] = []
        for c in mine:
            rec = _reusable(cfg, c)
            if rec is not None:
                results[c] = _ok(c, rec, record_path(cfg, c))
                contexts.setdefault(spec.name, rec.get("context_length"))
                reused += 1
            else:
                pending.append(c)
        runnable: List[Cell] = []
        for c in pending:  # data first: a model is not loaded for cells that cannot run
            try:
                if c.task in ("zeroshot", "retrieval"):
                    runner.dataset(c.task, c.dataset)
                runnable.append(c)
            except MissingInput as e:
                if cfg.on_missing == "error":
                    raise
                results[c] = _skipped(c, str(e))
        if not runnable:
            continue
        try:
            lm = _load_model(cfg, spec)
        except Exception as e:  # noqa: BLE001 - only missing weights are a skip; the rest propagates
            if not _weights_missing(e):
                raise
            reason = f"weights missing: {_first_line(e)}"
            if cfg.on_missing == "error":
                raise MissingInput(reason) from e
            for c in runnable:
                results[c] = _skipped(c, reason)
            continue
        contexts[spec.name] = lm.context_length
        for c in runnable:
            t0 = time.time()
            try:
                metrics = runner.evaluate(lm, c)
            except MissingInput as e:
                if cfg.on_missing == "error":
                    raise
                results[c] = _skipped(c, str(e))
                continue
            model_field, pretrained_field = _record_names(spec)
            rec = clip_benchmark_record(
                c.dataset, lm.arch if model_field == "auto" else model_field, pretrained_field, RECORD_TASK[c.task],
                metrics, model_name=spec.name, model_spec=spec.text, context_length=lm.context_length,
                protocol=_protocol(cfg, c.task), cell_key=cell_key(cfg, c), seconds=round(time.time() - t0, 2))
            path = _write_record(rec, record_path(cfg, c))
            results[c] = _ok(c, rec, path)
            computed += 1
            logger.info("%s / %s / %s: %s", spec.name, c.task, c.dataset, results[c]["values"])
        del lm
        _free_memory()
    board = build_leaderboard(cfg, [results[c] for c in cells], contexts)
    devs = _deviations(cfg, board)
    if devs:
        board["deviations"] = [d.as_dict() for d in devs]
        board["ok"] = all(d.ok for d in devs)
    files = write_leaderboard(board, out / REPORT_DIR, figure=cfg.figure)
    n_skip = sum(r["status"] == "skipped" for r in results.values())
    if n_skip:
        logger.warning("%d of %d cells skipped; the reasons are in %s", n_skip, len(cells), files[0])
    return BenchmarkRun(board, files, computed, reused, n_skip, devs)


def _write_record(rec: Dict[str, Any], path: Path) -> Path:
    from farslip_ext.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(rec, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _ok(c: Cell, rec: Mapping[str, Any], path: Path) -> CellResult:
    return CellResult(model=c.model.name, task=c.task, dataset=c.dataset, status="ok",
                      values=cell_values(c.task, c.dataset, rec["metrics"]), reason=None, file=path.name)


def _skipped(c: Cell, reason: str) -> CellResult:
    return CellResult(model=c.model.name, task=c.task, dataset=c.dataset, status="skipped", values={},
                      reason=reason, file=None)


# ---------------------------------------------------------------------------------------- leaderboard
def _mean(xs: Sequence[float]) -> Optional[float]:
    return round(sum(xs) / len(xs), 6) if xs else None


def _delta(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else round(a - b, 6)


def build_leaderboard(cfg: BenchmarkConfig, cells: Sequence[CellResult],
                      contexts: Mapping[str, Optional[int]]) -> Dict[str, Any]:
    """The leaderboard as a JSON-able dict: per task a row per model with its numbers, the published ones
    and the deltas (percent), every cell with its status, and the skipped cells with their reasons."""
    models = []
    rows_of: Dict[str, Dict[str, Optional[PaperRow]]] = {}
    for spec in cfg.models:
        rows_of[spec.name] = paper_rows(spec)
        models.append({"name": spec.name, "spec": spec.text, "alias": spec.alias, "model": spec.model,
                       "pretrained": spec.pretrained, "context_length": contexts.get(spec.name),
                       "paper_rows": {t: (r.label if r else None) for t, r in rows_of[spec.name].items()
                                      if t in cfg.tasks}})
    tasks: Dict[str, Any] = {}
    for task in cfg.tasks:
        names = list(cfg.datasets.get(task) or DEFAULT_DATASETS[task])
        columns = [f"{d}_{x}" for d in names for x in ("i2t", "t2i")] if task == "retrieval" else names
        rows = []
        for spec in cfg.models:
            mine = [c for c in cells if c["model"] == spec.name and c["task"] == task]
            values: Dict[str, float] = {}
            for c in mine:
                values.update(c["values"])
            row = rows_of[spec.name].get(task)
            pub = published_row(row) if row else {}
            published = {k: pub[k] for k in columns if k in pub}
            entry: Dict[str, Any] = {
                "model": spec.name, "paper_row": row.label if row else None, "values": values,
                "published": published, "delta": {k: _delta(values.get(k), published.get(k)) for k in columns
                                                  if k in values and k in published}}
            mean_key = MEAN_KEY[task]
            if mean_key is not None:  # ours: when every requested dataset ran; the paper's: when all of its ran
                full = all(k in values for k in columns)
                entry["mean"] = _mean([values[k] for k in columns]) if full else None
                paper_set = set(columns) == set(DEFAULT_DATASETS[task])
                entry["published_mean"] = pub.get(mean_key) if paper_set else None
                entry["delta_mean"] = _delta(entry["mean"], entry["published_mean"])
            rows.append(entry)
        tasks[task] = {"datasets": names, "columns": columns, "rows": rows,
                       "metric": {"zeroshot": "top-1 %", "retrieval": "mean recall of R@1/5/10 %",
                                  "ovss": "mIoU %"}[task]}
    return {
        "models": models,
        "tasks": tasks,
        "cells": [dict(c) for c in cells],
        "skipped": [{"model": c["model"], "task": c["task"], "dataset": c["dataset"], "reason": c["reason"]}
                    for c in cells if c["status"] == "skipped"],
        "protocol": {t: _protocol(cfg, t) for t in cfg.tasks},
        "rows_without_weights": rows_without_weights(),
    }


def _deviations(cfg: BenchmarkConfig, board: Mapping[str, Any]) -> List[Deviation]:
    """Every published number of every model's row against ours, when a tolerance was asked for."""
    if not cfg.tolerance:
        return []
    devs: List[Deviation] = []
    for task, t in board["tasks"].items():
        tol = cfg.tolerance.get(task)
        if tol is None:
            continue
        for row in t["rows"]:
            for k in t["columns"]:
                if k in row["published"]:
                    devs.append(Deviation(task, k if len(cfg.models) == 1 else f"{row['model']}:{k}",
                                          row["values"].get(k), row["published"][k], tol))
            mk = MEAN_KEY[task]
            if mk is not None and row.get("published_mean") is not None:
                devs.append(Deviation(task, mk if len(cfg.models) == 1 else f"{row['model']}:{mk}", row["mean"],
                                      row["published_mean"], tol))
    return devs


def _f(x: Optional[float]) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _d(x: Optional[float]) -> str:
    return "–" if x is None else f"{x:+.2f}"


def _col_label(task: str, key: str) -> str:
    if task == "retrieval":
        d, x = key.rsplit("_", 1)
        return f"{d} {x.upper()}"
    return key


def leaderboard_markdown(board: Mapping[str, Any]) -> str:
    """The leaderboard as markdown: per task our numbers, the paper's and the deltas; then skipped cells."""
    lines = ["# Leaderboard", "", "Our numbers beside the published ones (FarSLIP, arXiv 2511.14901); Δ = ours − paper, "
             "in percentage points. Text context per model: the one its weights were trained with.", ""]
    lines += ["| model | spec | text context | compared with |", "|---|---|---|---|"]
    for m in board["models"]:
        rows = ", ".join(f"{t}: {r}" for t, r in m["paper_rows"].items() if r) or "–"
        lines.append(f"| {m['name']} | `{m['spec']}` | {m['context_length'] or '–'} | {rows} |")
    skipped = {(s["model"], s["task"], s["dataset"]) for s in board["skipped"]}
    for task, t in board["tasks"].items():
        cols = t["columns"]
        has_mean = MEAN_KEY[task] is not None
        head = ["model"] + [_col_label(task, k) for k in cols] + (["Mean"] if has_mean else [])
        lines += ["", f"## {task} ({t['metric']})", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in t["rows"]:
            def cell(k: str) -> str:
                ds = k.rsplit("_", 1)[0] if task == "retrieval" else k
                return "skipped" if (row["model"], task, ds) in skipped else _f(row["values"].get(k))

            ours = [cell(k) for k in cols] + ([_f(row.get("mean"))] if has_mean else [])
            lines.append(f"| **{row['model']}** | " + " | ".join(ours) + " |")
            if row["paper_row"]:
                pub = [_f(row["published"].get(k)) for k in cols] + ([_f(row.get("published_mean"))] if has_mean else [])
                dl = [_d(row["delta"].get(k)) for k in cols] + ([_d(row.get("delta_mean"))] if has_mean else [])
                lines.append(f"| ↳ paper: {row['paper_row']} | " + " | ".join(pub) + " |")
                lines.append("| ↳ Δ | " + " | ".join(dl) + " |")
        if has_mean:
            lines += ["", "Mean: over the datasets above when every one of them ran; the paper's mean is shown only "
                          "when all of its datasets ran."]
    if board["skipped"]:
        lines += ["", "## Skipped cells", "", "| model | task | dataset | reason |", "|---|---|---|---|"]
        for s in board["skipped"]:
            lines.append(f"| {s['model']} | {s['task']} | {s['dataset']} | {s['reason']} |")
    if board.get("deviations"):
        bad = [d for d in board["deviations"] if not d["ok"]]
        lines += ["", f"## Tolerance check: {len(board['deviations']) - len(bad)}/{len(board['deviations'])} numbers "
                      "within tolerance", ""]
        if bad:
            lines += ["| task | number | ours | paper | Δ | tolerance |", "|---|---|---|---|---|---|"]
            for d in bad:
                lines.append(f"| {d['task']} | {d['key']} | {_f(d['ours'])} | {_f(d['published'])} | "
                             f"{'missing' if d['ours'] is None else _d(d['deviation'])} | ±{d['tolerance']:g} |")
    if board.get("rows_without_weights"):
        lines += ["", "Published rows no public OpenCLIP weights reproduce: " + "; ".join(
            f"{k} ({v})" for k, v in board["rows_without_weights"].items()) + "."]
    return "\n".join(lines) + "\n"


def write_leaderboard(board: Mapping[str, Any], folder: Path, figure: bool = True) -> List[Path]:
    """``leaderboard.md``, ``leaderboard.json`` and (with matplotlib) ``leaderboard.png`` in ``folder``."""
    from farslip_ext.io import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    md, js = folder / f"{LEADERBOARD}.md", folder / f"{LEADERBOARD}.json"
    with atomic_path(md) as tmp:
        tmp.write_text(leaderboard_markdown(board), encoding="utf-8")
    with atomic_path(js) as tmp:
        tmp.write_text(json.dumps(board, indent=2, default=str) + "\n", encoding="utf-8")
    files = [md, js]
    if figure:
        from farslip_ext.evaluation.leaderboard_figure import plot_leaderboard

        png = plot_leaderboard(board, folder / f"{LEADERBOARD}.png")
        if png is not None:
            files.append(png)
    return files
