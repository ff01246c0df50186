"""Zero-shot scene classification (docs/reference/method.md §4.6, docs/reference/paper-results.md §1.3).

Classifier: for each class, every prompt of the template set is encoded, the normalised text
embeddings are averaged over the templates and renormalised (``open_clip.build_zero_shot_classifier``).
Logits are ``100 · normalize(encode_image(x)) · W``; top-1/top-5 accuracy per dataset, and the mean over
datasets. Ranks use a stable descending order: a class tied with the true class counts as ahead of it
only when its index is lower (deterministic, where ``topk`` is not).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from farslip_ext.evaluation.csv_datasets import SceneClassificationCsv, resolve_benchmark_datasets
from farslip_ext.precision import parse_precision
from farslip_ext.evaluation.templates import PromptTemplates, build_templates

__all__ = [
    "TOPK",
    "class_ranks",
    "classification_metrics",
    "build_classifier",
    "zeroshot_classification",
    "run_zeroshot_benchmarks",
    "mean_over_datasets",
]

logger = logging.getLogger(__name__)

TOPK: Tuple[int, ...] = (1, 5)
LOGIT_SCALE = 100.0  # fixed, as the reference (ranking is invariant to it)


def _progress(flag: Optional[bool]) -> bool:
    """Bars only on a terminal: ``None`` follows stderr, ``True`` still needs a terminal, ``False`` never."""
    return sys.stderr.isatty() and flag is not False


def class_ranks(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row's true class among ``logits`` (stable descending order)."""
    if logits.ndim != 2 or targets.ndim != 1 or logits.shape[0] != targets.shape[0]:
        raise ValueError(f"class_ranks: logits {tuple(logits.shape)} and targets {tuple(targets.shape)} do not match")
    targets = targets.to(logits.device).long()
    true = logits.gather(1, targets[:, None])
    idx = torch.arange(logits.shape[1], device=logits.device)[None, :]
    ahead = (logits > true) | ((logits == true) & (idx < targets[:, None]))
    return ahead.sum(dim=1)


def classification_metrics(ranks: torch.Tensor, targets: torch.Tensor, num_classes: int,
                           topk: Sequence[int] = TOPK) -> Dict[str, float]:
    """``acc{k}`` (fraction of samples whose true class ranks below ``k``) and ``mean_per_class_recall``
    (top-1 recall averaged over the classes present). ``k`` larger than the class count counts every sample."""
    if ranks.numel() == 0:
        raise ValueError("classification_metrics: no samples; an empty dataset has no accuracy")
    ranks, targets = ranks.cpu(), targets.cpu().long()
    out: Dict[str, float] = {f"acc{k}": float((ranks < k).double().mean()) for k in topk}
    correct = (ranks == 0).double()
    per_class = []
    for c in range(num_classes):
        m = targets == c
        if m.any():
            per_class.append(float(correct[m].mean()))
    out["mean_per_class_recall"] = sum(per_class) / len(per_class)
    return out


def build_classifier(model: torch.nn.Module, tokenizer: Callable, classnames: Sequence[str],
                     templates: Sequence[Callable[[str], str]], device: Union[str, torch.device] = "cpu",
                     autocast: Optional[ContextManager] = None, batch_size: int = 256,
                     progress: Optional[bool] = None, desc: str = "class prompts") -> torch.Tensor:
    """Zero-shot weights ``(embed_dim, n_classes)``, float32: per class the mean of the normalised
    template embeddings, renormalised (what ``open_clip.build_zero_shot_classifier`` computes).

    Every prompt is tokenised once and encoded with :func:`farslip_ext.models.text.encode_texts_bucketed`:
    prompts sorted by length and each chunk cut to its longest real prompt (exact for causal text towers,
    the padded ``encode_text`` otherwise), so a 248-token LongCLIP tower costs what its prompts need.
    """
    from farslip_ext.models.text import encode_texts_bucketed

    if not classnames:
        raise ValueError("build_classifier: no class names")
    if not templates:
        raise ValueError("build_classifier: no prompt templates")
    prompts = [t(c) for c in classnames for t in templates]  # class-major, as open_clip
    device = torch.device(device)
    with torch.no_grad(), (autocast or parse_precision("fp32", device).autocast(device)):
        tokens = tokenizer(prompts).to(device)
        feats = encode_texts_bucketed(model, tokens, batch_size, progress=text_progress(progress, desc))
    feats = F.normalize(_finite(feats.float(), "text"), dim=-1).reshape(len(classnames), len(templates), -1)
    w = F.normalize(feats.mean(dim=1), dim=-1)
    return w.T.contiguous()


def text_progress(flag: Optional[bool], desc: str) -> Callable[..., Iterable]:
    """A tqdm bar over text chunks (shown only when enabled and stderr is a terminal)."""
    from functools import partial

    from tqdm import tqdm

    return partial(tqdm, desc=desc, unit="chunk", leave=False, disable=not _progress(flag))


def _finite(x: torch.Tensor, what: str) -> torch.Tensor:
    if not torch.isfinite(x).all():
        raise RuntimeError(f"the model produced non-finite {what} embeddings (try --precision fp32)")
    return x


class _Transformed(Dataset):
    def __init__(self, ds: Dataset, transform: Optional[Callable]) -> None:
        self.ds, self.transform = ds, transform

    def __len__(self) -> int:
        return len(self.ds)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Any:
        img, target = self.ds[i]
        return (self.transform(img) if self.transform is not None else img), target


def zeroshot_classification(model: torch.nn.Module, tokenizer: Callable, preprocess: Optional[Callable],
                            dataset: SceneClassificationCsv, templates: Union[None, str, PromptTemplates] = None,
                            *, device: Union[str, torch.device] = "cpu", precision: str = "fp32",
                            batch_size: int = 128, workers: int = 0,
                            progress: Optional[bool] = None) -> Dict[str, float]:
    """Top-1/top-5 accuracy (fractions) of ``model`` on one dataset, plus counts.

    ``preprocess`` is applied to the dataset's PIL images unless the dataset has its own transform.
    Returns ``acc1``, ``acc5``, ``mean_per_class_recall``, ``n_samples``, ``n_classes``, ``n_skipped``
    and ``skipped_<reason>`` for each reason rows were skipped.
    """
    tset = build_templates(templates)
    device = torch.device(device)
    name = getattr(dataset, "name", "dataset")
    classnames = dataset.classnames
    logger.info("%s: %d images, %d classes, %d templates", name, len(dataset), len(classnames),
                len(tset.for_dataset(name)))
    weights = build_classifier(model, tokenizer, classnames, tset.for_dataset(name), device=device,
                               autocast=parse_precision(precision, device).autocast(device), progress=progress,
                               desc=f"{name} class prompts")
    ds = dataset if getattr(dataset, "transform", None) is not None else _Transformed(dataset, preprocess)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda")
    from tqdm import tqdm

    ranks: List[torch.Tensor] = []
    targets: List[torch.Tensor] = []
    with torch.no_grad():
        for images, target in tqdm(loader, desc=f"zeroshot {name}", unit="batch", disable=not _progress(progress)):
            images = images.to(device, non_blocking=True)
            with parse_precision(precision, device).autocast(device):
                feats = model.encode_image(images)
            _finite(feats, f"{name}: image")
            logits = LOGIT_SCALE * F.normalize(feats.float(), dim=-1) @ weights
            ranks.append(class_ranks(logits, target.to(device)).cpu())
            targets.append(target.cpu())
    r, t = torch.cat(ranks), torch.cat(targets)
    out = classification_metrics(r, t, len(classnames))
    skipped = getattr(dataset, "skipped", {})
    out.update(n_samples=int(r.numel()), n_classes=len(classnames), n_skipped=int(sum(skipped.values())),
               **{f"skipped_{k}": int(v) for k, v in sorted(skipped.items())})
    return out


def mean_over_datasets(results: Mapping[str, Mapping[str, float]],
                       keys: Iterable[str] = ("acc1", "acc5")) -> Dict[str, float]:
    """Unweighted mean of each metric over the datasets (the paper's "Mean" column)."""
    if not results:
        raise ValueError("mean_over_datasets: no results")
    return {k: sum(float(r[k]) for r in results.values()) / len(results) for k in keys}


def run_zeroshot_benchmarks(model: torch.nn.Module, tokenizer: Callable, preprocess: Optional[Callable],
                            datasets: Sequence[Union[str, SceneClassificationCsv]],
                            data_root: Optional[Union[str, Path]] = None, *,
                            image_root: Optional[Union[str, Path]] = None,
                            templates: Union[None, str, Mapping[str, Any], PromptTemplates] = None,
                            on_bad_row: str = "error", device: Union[str, torch.device] = "cpu",
                            precision: str = "fp32", batch_size: int = 128, workers: int = 0,
                            progress: Optional[bool] = None) -> Dict[str, Dict[str, float]]:
    """Evaluate several datasets: names of :data:`CLASSIFICATION_BENCHMARKS` (under ``data_root``) or
    ready :class:`SceneClassificationCsv` objects. Returns ``{dataset: metrics}`` in the given order."""
    tset = build_templates(templates)
    results: Dict[str, Dict[str, float]] = {}
    for d in resolve_benchmark_datasets(datasets, SceneClassificationCsv, data_root, image_root, on_bad_row):
        results[d.name] = zeroshot_classification(model, tokenizer, preprocess, d, tset, device=device,
                                                  precision=precision, batch_size=batch_size, workers=workers,
                                                  progress=progress)
        logger.info("%s: top-1 %.2f%%, top-5 %.2f%%", d.name, 100 * results[d.name]["acc1"],
                    100 * results[d.name]["acc5"])
    return results
