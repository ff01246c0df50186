"""Run OVSS configs with mmengine's ``Runner.test()`` and report them beside the published numbers.

A shipped benchmark is a shipped config (:mod:`farslip_ext.ovss.benchmarks`); :func:`run_ovss` runs some
of them with a preset, :func:`run_config` runs any user config. Both

* check every dataset folder before any weights load,
* load the CLIP once and share it between the configs of the run (each gets its own text embeddings),
* build the runner quietly (mmengine's config/hook dump only with ``log_level='INFO'``; its console
  output on stderr), with the consistency hook and a progress bar over the images,
* and write ``ovss_results.json`` / ``ovss_results.md`` into ``work_dir`` (:mod:`farslip_ext.ovss.report`).
"""
from __future__ import annotations

import copy
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from farslip_ext.loading import LoadedModel
from farslip_ext.ovss.benchmarks import (Benchmark, benchmark_from_config, complete_config, find_dataset_root,
                                         get_benchmark, merge_dicts, read_config, resolve_benchmarks)
from farslip_ext.ovss.presets import DEFAULT_PRESET, apply_preset, pipeline_long_side
from farslip_ext.ovss.report import default_comparison, format_markdown, parse_comparison, write_report
from farslip_ext.ovss.settings import SegSettings, unknown_setting

__all__ = ["run_ovss", "run_config", "build_ovss_config", "build_runner", "RUN_KEYS", "default_num_workers",
           "default_comparison", "parse_comparison", "format_markdown", "write_report"]

logger = logging.getLogger(__name__)

#: Keyword arguments of :func:`run_ovss` / :func:`run_config` that configure the run rather than the segmentor.
RUN_KEYS = ("resize_long_side", "batch_size", "num_workers", "save_predictions", "log_level", "cfg_options", "compare",
            "write_report", "progress")
#: Model keys besides the settings that a run may set.
MODEL_KEYS = ("class_names",)
_RUNNER_KEYS = ("test_dataloader", "test_cfg", "test_evaluator", "default_hooks", "custom_hooks", "load_from",
                "resume", "launcher", "env_cfg", "log_processor", "log_level", "visualizer", "default_scope",
                "randomness", "experiment_name")


def default_num_workers() -> int:
    """Data-loader workers that fit this machine: 0 on up to 2 usable cores (the workers would compete with
    the model for them), else half the cores, at most 4 (the references' value)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return 0 if cpus <= 2 else min(4, cpus // 2)


def _split_overrides(overrides: Mapping[str, Any], what: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    run, model = {}, {}
    for k, v in overrides.items():
        if k in RUN_KEYS:
            run[k] = v
        elif k in SegSettings.names() or k in MODEL_KEYS:
            model[k] = v
        else:
            raise unknown_setting(k, what, extra=list(RUN_KEYS) + list(MODEL_KEYS))
    return run, model


def _clip_spec(model: Any, pretrained: Optional[str]) -> Any:
    """The run's CLIP: a LoadedModel, a full spec dict, ``dict(pretrained=...)`` (only the weights of the
    configs' CLIP change) or None (the configs' own)."""
    if isinstance(model, (LoadedModel, Mapping)):
        return model
    if model is None:
        return None if pretrained is None else dict(pretrained=pretrained)
    return dict(model=str(model), pretrained=pretrained)


def _finish_config(cfg: Dict[str, Any], name: str, work_dir: Union[str, Path], run: Mapping[str, Any],
                   model_over: Mapping[str, Any], clip: Any) -> Dict[str, Any]:
    """Apply the run's settings to one config dict (shared by benchmarks and user configs)."""
    if isinstance(clip, Mapping):
        spec = dict(clip) if "model" in clip else dict(_config_clip(cfg["model"]), **clip)
        for k in _CLIP_KEYS:
            cfg["model"].pop(k, None)
        cfg["model"]["clip"] = spec
    cfg["model"].update(model_over)
    resize = run.get("resize_long_side")
    if resize is not None:
        if int(resize) < 1:
            raise ValueError("resize_long_side must be a positive number of pixels (the protocol uses 448)")
        for pipeline in (cfg["test_dataloader"]["dataset"].get("pipeline") or [], cfg.get("test_pipeline") or []):
            for t in pipeline:
                if t.get("type") == "Resize":
                    t["scale"] = (int(resize), int(resize))
    dl = cfg["test_dataloader"]
    if run.get("batch_size") is not None:
        dl["batch_size"] = int(run["batch_size"])
    fit = default_num_workers()
    workers = int(run["num_workers"]) if run.get("num_workers") is not None else min(int(dl.get("num_workers", 0)), fit)
    if run.get("num_workers") is None and workers < int(dl.get("num_workers", 0)):
        logger.info("%s: %d data-loader workers (the config asks for %d; this machine fits %d)", name, workers,
                    dl.get("num_workers"), fit)
    dl["num_workers"] = workers
    dl["persistent_workers"] = workers > 0
    wd = Path(work_dir) / name
    cfg["work_dir"] = str(wd)
    cfg["experiment_name"] = f"ovss_{name}_{time.strftime('%Y%m%d_%H%M%S')}_{uuid.uuid4().hex[:6]}"
    if run.get("save_predictions"):
        cfg["test_evaluator"] = dict(cfg["test_evaluator"], output_dir=str(wd / "predictions"))
    cfg["log_level"] = run.get("log_level") or "WARNING"
    hooks = list(cfg.get("custom_hooks") or [])
    if not any(h.get("type") == "OVSSCheckHook" for h in hooks):
        hooks.append(dict(type="OVSSCheckHook"))
    hooks.append(dict(type="OVSSProgressHook", desc=name, enabled=run.get("progress")))
    cfg["custom_hooks"] = hooks
    if run.get("cfg_options"):
        from mmengine.config import Config

        c = Config(cfg)
        c.merge_from_dict(dict(run["cfg_options"]))
        cfg = c.to_dict()
    return cfg


def build_ovss_config(dataset: str, model: Any = None, pretrained: Optional[str] = None,
                      data_root: Union[str, Path] = "data", work_dir: Union[str, Path] = "work_dirs/ovss",
                      preset: str = DEFAULT_PRESET, **overrides: Any):
    """The mmengine ``Config`` that :func:`run_ovss` runs for one benchmark (its config file, the preset,
    then ``overrides``); ``model`` None keeps the config's CLIP."""
    from mmengine.config import Config

    bench = get_benchmark(dataset)
    run, model_over = _split_overrides(overrides, "run_ovss")
    cfg = apply_preset(complete_config(read_config(bench.config_file)), preset, bench.key)
    cfg["test_dataloader"]["dataset"]["data_root"] = str(find_dataset_root(bench, data_root))
    return Config(_finish_config(cfg, bench.key, work_dir, run, model_over, _clip_spec(model, pretrained)),
                  filename=str(bench.config_file))


def build_runner(cfg, model: Any = None):
    """``Runner.from_cfg(cfg)``, or a test runner around an already built ``model`` (no config copy of it)."""
    from mmengine.runner import Runner

    from farslip_ext.segmentation.openmmlab import quiet_runner_build, tame_runner_logger

    import contextlib
    import sys

    # mmengine's logger writes to the stdout it finds when the runner is built: make that stderr, so
    # stdout carries only the results (the dump of -v included)
    with quiet_runner_build(), contextlib.redirect_stdout(sys.stderr):
        if model is None:
            runner = Runner.from_cfg(cfg)
        else:
            kwargs = {k: copy.deepcopy(cfg[k]) for k in _RUNNER_KEYS if k in cfg}
            kwargs.setdefault("default_scope", "mmengine")
            runner = Runner(model=model, work_dir=cfg["work_dir"], cfg=cfg, **kwargs)
    tame_runner_logger(runner)
    return runner


_CLIP_KEYS = ("clip", "model", "pretrained", "model_kwargs", "cache_dir")


def _config_clip(model_cfg: Mapping[str, Any]) -> Any:
    """The CLIP spec of a ``FarSLIPSeg`` model dict (``clip``, or the older ``model``/``pretrained`` keys)."""
    from farslip_ext.ovss.settings import default_clip

    m = dict(model_cfg.to_dict() if hasattr(model_cfg, "to_dict") else model_cfg)
    if m.get("clip") is not None:
        clip = m["clip"]
        return dict(clip) if isinstance(clip, Mapping) else dict(model=str(clip))
    if m.get("model") is not None:
        spec = dict(model=str(m["model"]), pretrained=m.get("pretrained"))
    else:
        spec = dict(default_clip(), **({"pretrained": m["pretrained"]} if m.get("pretrained") else {}))
    spec.update(dict(m.get("model_kwargs") or {}))
    if m.get("cache_dir"):
        spec["cache_dir"] = m["cache_dir"]
    return spec


def _build_segmentor(cfg, clip: LoadedModel):
    from farslip_ext.segmentation.segmentor import FarSLIPSeg

    if cfg["model"].get("type") != "FarSLIPSeg":
        raise ValueError(f"model.type={cfg['model'].get('type')!r}: farslip ovss runs FarSLIPSeg configs")
    args = {k: v for k, v in cfg["model"].to_dict().items() if k != "type" and k not in _CLIP_KEYS}
    return FarSLIPSeg(clip=clip, **args)


def _load_shared(cfg, cache: Dict[str, LoadedModel], given: Any) -> LoadedModel:
    """The run's CLIP: ``given`` when it is a LoadedModel, else loaded once per distinct spec."""
    from farslip_ext.ovss.predictor import load_clip_model, resolve_precision

    if isinstance(given, LoadedModel):
        return given
    spec = _config_clip(cfg["model"])
    model_cfg = {k: v for k, v in cfg["model"].items() if k in SegSettings.names()}
    settings = SegSettings.from_overrides(model_cfg, what="the config's model")
    dev, prec = resolve_precision(settings)
    key = repr((spec, str(dev), prec.name))
    if key not in cache:
        cache[key] = load_clip_model(spec, prec, dev)
    return cache[key]


def _describe(clip: Any, cfg) -> Tuple[str, Optional[str]]:
    """``(model, pretrained)`` for the report: the given CLIP, else the config's."""
    from farslip_ext.ovss.predictor import clip_weights

    if isinstance(clip, LoadedModel):
        return clip.source, None
    return clip_weights(_config_clip(cfg["model"]))  # the config as finished: the run's CLIP merged in


def _run_jobs(jobs: List[Tuple[str, Any]], clip: Any, work_dir: Union[str, Path], preset: Optional[str],
              run: Mapping[str, Any], data_root: Optional[Union[str, Path]]) -> Dict[str, float]:
    results: Dict[str, float] = {}
    metrics: Dict[str, Dict[str, float]] = {}
    timings: Dict[str, float] = {}
    settings_seen: Dict[str, Any] = {}
    configs: Dict[str, str] = {}
    shared: Dict[str, LoadedModel] = {}
    model_desc, pretrained = _describe(clip, jobs[0][1])
    t_all = time.time()
    for name, cfg in jobs:
        t0 = time.time()
        lm = _load_shared(cfg, shared, clip)
        seg = _build_segmentor(cfg, lm)
        if not settings_seen:
            settings_seen = dict(seg.settings.as_dict(), resize_long_side=pipeline_long_side(cfg.to_dict()))
        for k in _CLIP_KEYS:  # what the runner's config dump records: the CLIP that ran
            cfg["model"].pop(k, None)
        cfg["model"]["clip"] = dict(model=lm.source)
        runner = build_runner(cfg, seg)
        logger.info("OVSS %s: %s (%d classes)", name, cfg["test_dataloader"]["dataset"].get("data_root"), seg.num_classes)
        m = runner.test()
        del runner, seg
        timings[name] = round(time.time() - t0, 2)
        metrics[name] = {k: round(float(v), 2) for k, v in m.items()}
        results[name] = round(float(m["mIoU"]), 2)
        configs[name] = str(cfg.filename or "")
        logger.info("OVSS %s: mIoU %.2f", name, results[name])
    results["Mean"] = round(sum(results[n] for n, _ in jobs) / len(jobs), 2)
    if run.get("write_report", True):
        rows = parse_comparison(run["compare"]) if run.get("compare") else default_comparison(model_desc, pretrained)
        meta = dict(model=str(model_desc), pretrained=pretrained, preset=preset,
                    data_root=None if data_root is None else str(data_root), datasets=[n for n, _ in jobs],
                    configs=configs, settings=settings_seen, metrics=metrics, seconds=timings,
                    total_seconds=round(time.time() - t_all, 2))
        jp, mp = write_report(results, work_dir, meta, rows)
        logger.info("OVSS report: %s, %s", jp, mp)
    return results


def run_ovss(model: Any = None, pretrained: Optional[str] = None, datasets: Union[str, Sequence[str]] = "all",
             data_root: Union[str, Path] = "data", work_dir: Union[str, Path] = "work_dirs/ovss",
             preset: str = DEFAULT_PRESET, **overrides: Any) -> Dict[str, float]:
    """Evaluate a CLIP on OVSS benchmarks with mmseg's ``Runner.test()``.

    Args:
        model, pretrained: the CLIP: a :class:`~farslip_ext.LoadedModel` (used as is), or anything
            :func:`farslip_ext.load` accepts (``farslip-vitb16`` + ``s2``, a checkpoint path, ``hf-hub:...``,
            ``ViT-B-16`` + ``openai``; ``pretrained='random'`` for random weights on purpose); None: the
            configs' own (``farslip-vitb16`` with ``s2``).
        datasets: ``"all"`` (every registered benchmark), ``"paper"`` (the eight of the FarSLIP table), a
            key, a comma-separated string or a list.
        data_root: folder holding ``OpenEarthMap/``, ``LoveDA/``, ``potsdam/``, ...
        work_dir: logs per dataset under ``work_dir/<dataset>``; the JSON/markdown report at the top.
        preset: ``farslip`` (default, the published protocol), ``segearth`` or a plugin's.
        **overrides: segmentor settings (:class:`~farslip_ext.ovss.SegSettings`: ``cls_token_lambda``,
            ``slide_crop``, ``device``, ``precision``, ...), ``class_names``, and run settings:
            ``resize_long_side`` (the pipeline's), ``batch_size``, ``num_workers`` (default: what fits the
            machine), ``save_predictions`` (IoUMetric writes label PNGs, +1 for reduce_zero_label sets),
            ``log_level`` (default WARNING; INFO shows mmengine's dump), ``cfg_options`` (a dict merged into
            each config), ``compare`` (``["B/16:FarSLIP2"]``), ``write_report`` (default True), ``progress``.

    Returns:
        ``{"OpenEarthMap": mIoU, ..., "Mean": mean over the datasets run}`` in percent.
    """
    from farslip_ext.segmentation import datasets as _d, hooks as _h, segmentor as _s, transforms as _t  # noqa: F401

    benches: List[Benchmark] = resolve_benchmarks(datasets)
    run, model_over = _split_overrides(overrides, "run_ovss")
    for b in benches:  # every folder first: fail before any weights load
        find_dataset_root(b, data_root)
    clip = _clip_spec(model, pretrained)
    jobs = [(b.name, build_ovss_config(b.key, None if isinstance(clip, LoadedModel) else clip, None, data_root,
                                       work_dir, preset, **run, **model_over)) for b in benches]
    return _run_jobs(jobs, clip, work_dir, preset, run, data_root)


def run_config(config: Union[str, Path, Mapping[str, Any]], model: Any = None, pretrained: Optional[str] = None,
               data_root: Optional[Union[str, Path]] = None, work_dir: Union[str, Path] = "work_dirs/ovss",
               preset: Optional[str] = None, **overrides: Any) -> Dict[str, float]:
    """Run one config (a user's, or any benchmark file) like :func:`run_ovss` runs the shipped ones.

    A config whose ``model`` has no ``type`` is completed from the base config. ``data_root``: the dataset
    folder's parent when the config has a ``benchmark`` dict (its ``roots`` are searched), else the
    dataset's ``data_root`` itself; None keeps the config's. ``preset``: laid over the config when given.
    ``model``/``pretrained`` replace the config's CLIP when given. Other arguments as :func:`run_ovss`.
    The report names the dataset after ``benchmark.name`` (else the file name)."""
    from mmengine.config import Config

    from farslip_ext.segmentation import datasets as _d, hooks as _h, segmentor as _s, transforms as _t  # noqa: F401

    run, model_over = _split_overrides(overrides, "run_config")
    path = Path(config) if isinstance(config, (str, Path)) else None
    raw = read_config(path) if path is not None else dict(config)
    if run.get("cfg_options"):  # the user's options shape the config before anything reads it
        c = Config(raw)
        c.merge_from_dict(dict(run["cfg_options"]))
        raw = c.to_dict()
        run = {k: v for k, v in run.items() if k != "cfg_options"}
    cfg = complete_config(raw)
    bench = benchmark_from_config(path or Path("config.py"), cfg) if cfg.get("benchmark") else None
    name = bench.name if bench is not None else (path.stem if path is not None else "config")
    folder = path.stem if path is not None else "config"
    if preset is not None:
        cfg = apply_preset(cfg, preset) if bench is None else merge_dicts(
            cfg, {"model": {**_preset_overlay(preset), **dict(bench.presets.get(preset, {}))}})
    ds = cfg["test_dataloader"]["dataset"]
    if data_root is not None:
        ds["data_root"] = str(find_dataset_root(bench, data_root)) if bench is not None else str(data_root)
    if not Path(str(ds.get("data_root", ""))).is_dir():
        raise FileNotFoundError(f"{name}: the dataset folder {ds.get('data_root')!r} does not exist; set "
                                f"test_dataloader.dataset.data_root in {path or 'the config'} or pass --data-root")
    clip = _clip_spec(model, pretrained)
    finished = _finish_config(cfg, folder, work_dir, run, model_over, None if isinstance(clip, LoadedModel) else clip)
    job = Config(finished, filename=str(path) if path is not None else None)
    return _run_jobs([(name, job)], clip, work_dir, preset, run, data_root)


def _preset_overlay(preset: str) -> Dict[str, Any]:
    from farslip_ext.ovss.presets import get_preset

    return dict(get_preset(preset).model)
