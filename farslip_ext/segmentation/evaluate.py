"""Run the OVSS benchmarks with mmengine's ``Runner.test()`` and report them beside the published numbers
(issue #5; ovss-protocol.md §2.6, §4.1).

:func:`run_ovss` builds one config per dataset from ``configs/<dataset>.py`` and a preset
(:mod:`.presets`), runs ``Runner.from_cfg(cfg).test()`` (``IoUMetric``) for each and returns
``{dataset: mIoU %, ..., "Mean": mean}``. It also writes ``ovss_results.json`` and ``ovss_results.md``
(per-dataset mIoU beside the published FarSLIP table) into ``work_dir``.
"""
from __future__ import annotations

import inspect
import json
import logging
import math
import re
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from farslip_ext.segmentation.benchmarks import (
    BENCHMARK_ORDER,
    BENCHMARKS,
    Benchmark,
    find_dataset_root,
    get_benchmark,
    resolve_benchmarks,
)
from farslip_ext.segmentation.presets import DEFAULT_PRESET, PIPELINE_KEYS, preset_settings

__all__ = ["run_ovss", "build_ovss_config", "RUN_KEYS", "default_comparison", "parse_comparison",
           "format_markdown", "write_report"]

logger = logging.getLogger(__name__)

#: ``run_ovss`` keyword arguments that configure the run rather than ``FarSLIPSeg``.
RUN_KEYS = ("batch_size", "num_workers", "resize_long_side", "save_predictions", "log_level", "cfg_options",
            "compare", "write_report")


def _model_keys() -> List[str]:
    from farslip_ext.segmentation.segmentor import FarSLIPSeg

    params = inspect.signature(FarSLIPSeg.__init__).parameters
    return [k for k in params if k not in ("self", "data_preprocessor", "init_cfg", "model", "pretrained")]


def _split_overrides(overrides: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    model_keys = _model_keys()
    run, model = {}, {}
    for k, v in overrides.items():
        if k in RUN_KEYS or k in PIPELINE_KEYS:
            run[k] = v
        elif k in model_keys:
            model[k] = v
        else:
            import difflib

            close = difflib.get_close_matches(k, model_keys + list(RUN_KEYS), n=3)
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            raise TypeError(f"run_ovss got an unknown setting {k!r}{hint}. FarSLIPSeg settings: {model_keys}; "
                            f"run settings: {list(RUN_KEYS)}")
    return run, model


def build_ovss_config(dataset: str, model: str, pretrained: Optional[str] = None, data_root: Union[str, Path] = "data",
                      work_dir: Union[str, Path] = "work_dirs/ovss", preset: str = DEFAULT_PRESET, **overrides: Any):
    """The mmengine ``Config`` that :func:`run_ovss` runs for one dataset (preset, then ``overrides``)."""
    from mmengine.config import Config

    bench = get_benchmark(dataset)
    run, model_over = _split_overrides(overrides)
    settings = preset_settings(preset, bench.key)
    resize = run.pop("resize_long_side", settings.pop("resize_long_side"))
    settings.pop("resize_long_side", None)
    settings.update(model_over)
    cfg = Config.fromfile(str(bench.config_file))
    cfg.model.update(model=model, pretrained=pretrained, **settings)
    ds = cfg.test_dataloader.dataset
    ds.data_root = str(find_dataset_root(bench, data_root))
    for pipeline in (ds.pipeline, cfg.get("test_pipeline", [])):
        for t in pipeline:
            if t.get("type") == "Resize":
                if resize:
                    t["scale"] = (int(resize), int(resize))
                else:
                    raise ValueError("resize_long_side must be a positive number of pixels (the protocol uses 448)")
    if run.get("batch_size") is not None:
        cfg.test_dataloader.batch_size = int(run["batch_size"])
    if run.get("num_workers") is not None:
        cfg.test_dataloader.num_workers = int(run["num_workers"])
        cfg.test_dataloader.persistent_workers = int(run["num_workers"]) > 0
    wd = Path(work_dir) / bench.key
    cfg.work_dir = str(wd)
    cfg.experiment_name = f"ovss_{bench.key}_{time.strftime('%Y%m%d_%H%M%S')}_{uuid.uuid4().hex[:6]}"
    if run.get("save_predictions"):
        cfg.test_evaluator["output_dir"] = str(wd / "predictions")
    if run.get("log_level"):
        cfg.log_level = run["log_level"]
    if run.get("cfg_options"):
        cfg.merge_from_dict(dict(run["cfg_options"]))
    return cfg


def parse_comparison(items: Optional[Sequence[str]]) -> List[Tuple[str, str]]:
    """``["B/16:FarSLIP2", ...]`` → ``[("B/16", "FarSLIP2"), ...]`` checked against the published table."""
    from farslip_ext.published import load_published_results

    table = load_published_results()["ovss_miou"]
    out = []
    for item in items or []:
        if ":" not in item:
            raise ValueError(f"compare={item!r}: write BACKBONE:METHOD, e.g. 'B/16:FarSLIP2'")
        bb, method = (s.strip() for s in item.split(":", 1))
        if bb not in table or method not in table[bb]:
            known = [f"{b}:{m}" for b, ms in table.items() for m in ms]
            raise ValueError(f"compare={item!r} is not in the published OVSS table; choose from {known}")
        out.append((bb, method))
    return out


def default_comparison(model: str, pretrained: Optional[str]) -> List[Tuple[str, str]]:
    """Published rows to print beside a run: the matching FarSLIP row for ``farslip-vitb{16,32}`` +
    ``s1``/``s2`` (or a ``FarSLIP{1,2}_ViT-B-{16,32}.pt`` file), CLIP for ``openai``, else both FarSLIP rows
    of the backbone when it can be read from the names."""
    from farslip_ext.published import load_published_results

    table = load_published_results()["ovss_miou"]
    text = f"{model} {pretrained or ''}".lower()
    backbone = "B/16" if re.search(r"b-?16|vitb16", text) else "B/32" if re.search(r"b-?32|vitb32", text) else None
    p = str(pretrained or "").lower()
    method = None
    if p == "s1" or "farslip1" in text:
        method = "FarSLIP1"
    elif p == "s2" or "farslip2" in text:
        method = "FarSLIP2"
    elif p == "openai":
        method = "CLIP"
    if backbone is None:
        return []
    if method and method in table.get(backbone, {}):
        return [(backbone, method)]
    return [(backbone, m) for m in ("FarSLIP1", "FarSLIP2") if m in table.get(backbone, {})]


def _fmt(v: Optional[float]) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def format_markdown(results: Dict[str, float], rows: Sequence[Tuple[str, str]], label: str = "this run") -> str:
    """A markdown table: one line per dataset (+ Mean), our mIoU, each published row and the difference."""
    from farslip_ext.published import load_published_results

    table = load_published_results()["ovss_miou"]
    names = [n for n in (BENCHMARKS[k].name for k in BENCHMARK_ORDER) if n in results]
    full = len(names) == len(BENCHMARK_ORDER)
    head = ["dataset", label] + [f"{m} {b} (published)" for b, m in rows] + [f"Δ vs {m} {b}" for b, m in rows]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in names + ["Mean"]:
        ours = results.get(n)
        pubs = []
        for b, m in rows:
            ref = table[b][m]
            if n == "Mean":
                pub = ref["Mean"] if full else round(sum(ref[x] for x in names) / len(names), 2)
            else:
                pub = ref.get(n)
            pubs.append(pub)
        deltas = [None if (p is None or ours is None) else ours - p for p in pubs]
        shown = n if n != "Mean" or full else f"Mean ({len(names)} datasets)"
        lines.append("| " + " | ".join([shown, _fmt(ours)] + [_fmt(p) for p in pubs] +
                                        [("—" if d is None else f"{d:+.2f}") for d in deltas]) + " |")
    return "\n".join(lines) + "\n"


def write_report(results: Dict[str, float], work_dir: Union[str, Path], meta: Dict[str, Any],
                 rows: Sequence[Tuple[str, str]]) -> Tuple[Path, Path]:
    """Write ``ovss_results.json`` and ``ovss_results.md`` into ``work_dir``."""
    from farslip_ext.published import load_published_results

    wd = Path(work_dir)
    wd.mkdir(parents=True, exist_ok=True)
    table = load_published_results()["ovss_miou"]
    payload = dict(meta, miou=results, published={f"{b}:{m}": table[b][m] for b, m in rows})
    jp, mp = wd / "ovss_results.json", wd / "ovss_results.md"
    jp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    label = f"{meta.get('model')}" + (f" ({meta.get('pretrained')})" if meta.get("pretrained") else "")
    md = (f"# OVSS mIoU (%) — {label}, preset {meta.get('preset')}\n\n"
          + format_markdown(results, rows, label="this run")
          + "\nPublished: FarSLIP OVSS table (ovss-protocol.md §4.1).\n")
    mp.write_text(md, encoding="utf-8")
    return jp, mp


def run_ovss(model: str, pretrained: Optional[str] = None, datasets: Union[str, Sequence[str]] = "all",
             data_root: Union[str, Path] = "data", work_dir: Union[str, Path] = "work_dirs/ovss",
             preset: str = DEFAULT_PRESET, **overrides: Any) -> Dict[str, float]:
    """Evaluate ``model`` on OVSS benchmarks with mmseg's ``Runner.test()``.

    Args:
        model, pretrained: anything :class:`FarSLIPSeg` accepts (``farslip-vitb16`` + ``s2``, a checkpoint
            path, ``hf-hub:...``, ``ViT-B-16`` + ``openai``, ...).
        datasets: ``"all"`` (the eight, in table order), a name, a comma-separated string or a list.
        data_root: folder holding ``OpenEarthMap/``, ``LoveDA/``, ``potsdam/``, ... (ovss-protocol.md §1.8).
        work_dir: logs per dataset under ``work_dir/<dataset>``; the JSON/markdown report at the top.
        preset: ``farslip`` (default, the published protocol) or ``segearth``.
        **overrides: FarSLIPSeg settings (``cls_token_lambda``, ``prob_thd``, ``slide_crop``, ``device``,
            ``precision``, ...) and run settings: ``resize_long_side``, ``batch_size``, ``num_workers``,
            ``save_predictions`` (IoUMetric writes label PNGs, +1 for reduce_zero_label sets),
            ``log_level``, ``cfg_options`` (a dict merged into each config), ``compare``
            (``["B/16:FarSLIP2"]``), ``write_report`` (default True).

    Returns:
        ``{"OpenEarthMap": mIoU, ..., "Mean": mean over the datasets run}`` in percent.
    """
    from mmengine.runner import Runner

    import farslip_ext.segmentation.segmentor  # noqa: F401  (registers FarSLIPSeg; the package registers the rest)

    benches: List[Benchmark] = resolve_benchmarks(datasets)
    run, _ = _split_overrides(overrides)
    for b in benches:  # every folder first: fail before any weights load
        find_dataset_root(b, data_root)
    rows = parse_comparison(run["compare"]) if run.get("compare") else default_comparison(model, pretrained)
    passthrough = {k: v for k, v in overrides.items() if k not in ("compare", "write_report")}
    results: Dict[str, float] = {}
    metrics: Dict[str, Dict[str, float]] = {}
    timings: Dict[str, float] = {}
    t_all = time.time()
    for b in benches:
        cfg = build_ovss_config(b.key, model, pretrained, data_root, work_dir, preset, **passthrough)
        logger.info("OVSS %s: %s", b.name, cfg.test_dataloader.dataset.data_root)
        t0 = time.time()
        runner = Runner.from_cfg(cfg)
        m = runner.test()
        del runner
        timings[b.name] = round(time.time() - t0, 2)
        metrics[b.name] = {k: round(float(v), 2) for k, v in m.items()}
        results[b.name] = round(float(m["mIoU"]), 2)
        logger.info("OVSS %s: mIoU %.2f", b.name, results[b.name])
    results["Mean"] = round(sum(results[b.name] for b in benches) / len(benches), 2)
    if run.get("write_report", True):
        settings = preset_settings(preset)
        settings.update({k: v for k, v in passthrough.items() if k not in RUN_KEYS or k == "resize_long_side"})
        meta = dict(model=str(model), pretrained=pretrained, preset=preset, data_root=str(data_root),
                    datasets=[b.name for b in benches], settings=settings, metrics=metrics, seconds=timings,
                    total_seconds=round(time.time() - t_all, 2))
        jp, mp = write_report(results, work_dir, meta, rows)
        logger.info("OVSS report: %s, %s", jp, mp)
    return results
