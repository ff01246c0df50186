"""Zero-shot image-text retrieval (docs/reference/method.md §4.6, docs/reference/paper-results.md §1.4).

Unique images and unique captions are encoded separately; the ground truth is many-to-many (every
``(image, caption)`` row of the CSV). For each image (caption), all captions (images) are ranked by
cosine similarity; a query counts at ``R@k`` when any of its matches is among the first ``k``. Reported
per direction: ``R@1/5/10/100`` and the mean of ``R@1/5/10`` ("mean recall", the paper's number), and
their average over both directions. Ties keep index order (stable), so results are deterministic.

Metric names follow CLIP_benchmark: ``image_retrieval_*`` is text→image (T2I) and ``text_retrieval_*``
is image→text (I2T). Values are fractions in [0, 1].
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from farslip_ext.evaluation.csv_datasets import ImageTextRetrievalCsv, resolve_benchmark_datasets
from farslip_ext.precision import parse_precision

__all__ = [
    "RECALL_KS",
    "MEAN_RECALL_KS",
    "first_match_ranks",
    "recall_at_k",
    "retrieval_metrics",
    "encode_images",
    "encode_texts",
    "zeroshot_retrieval",
    "run_retrieval_benchmarks",
]

logger = logging.getLogger(__name__)

RECALL_KS: Tuple[int, ...] = (1, 5, 10, 100)
MEAN_RECALL_KS: Tuple[int, ...] = (1, 5, 10)


def _progress(flag: Optional[bool]) -> bool:
    """Bars only on a terminal: ``None`` follows stderr, ``True`` still needs a terminal, ``False`` never."""
    return sys.stderr.isatty() and flag is not False


def first_match_ranks(queries: torch.Tensor, keys: torch.Tensor, matches: Sequence[Sequence[int]],
                      chunk_size: int = 1024) -> torch.Tensor:
    """For each query row, the 0-based position of its first matching key when all keys are sorted by
    descending ``query · key`` (stable: equal scores keep index order). ``matches[q]`` lists the
    matching key indices of query ``q`` (at least one). Computed in chunks of queries."""
    nq, nk = queries.shape[0], keys.shape[0]
    if len(matches) != nq:
        raise ValueError(f"first_match_ranks: {nq} queries but {len(matches)} match lists")
    empty = [q for q, m in enumerate(matches) if len(m) == 0]
    if empty:
        raise ValueError(f"first_match_ranks: queries {empty[:5]} have no match; recall is undefined for them")
    q_idx = torch.tensor([q for q, m in enumerate(matches) for _ in m], dtype=torch.long, device=keys.device)
    k_idx = torch.tensor([k for m in matches for k in m], dtype=torch.long, device=keys.device)
    if k_idx.numel() and (int(k_idx.min()) < 0 or int(k_idx.max()) >= nk):
        raise ValueError(f"first_match_ranks: a match index is outside 0..{nk - 1}")
    arange = torch.arange(nk, device=keys.device)[None, :]
    out = torch.empty(nq, dtype=torch.long)
    for a in range(0, nq, chunk_size):
        b = min(a + chunk_size, nq)
        scores = queries[a:b].to(keys.device) @ keys.T
        mask = torch.zeros_like(scores, dtype=torch.bool)
        sel = (q_idx >= a) & (q_idx < b)
        mask[q_idx[sel] - a, k_idx[sel]] = True
        best = torch.where(mask, scores, torch.full_like(scores, float("-inf"))).amax(dim=1, keepdim=True)
        first = torch.where(mask & (scores == best), arange, torch.full_like(arange, nk)).amin(dim=1, keepdim=True)
        ahead = (scores > best) | ((scores == best) & (arange < first))
        out[a:b] = ahead.sum(dim=1).cpu()
    return out


def recall_at_k(ranks: torch.Tensor, ks: Sequence[int] = RECALL_KS) -> Dict[int, float]:
    """Fraction of queries whose first match ranks below ``k``, for each ``k``."""
    if ranks.numel() == 0:
        raise ValueError("recall_at_k: no queries")
    return {k: float((ranks < k).double().mean()) for k in ks}


def retrieval_metrics(image_emb: torch.Tensor, text_emb: torch.Tensor, image_to_texts: Sequence[Sequence[int]],
                      text_to_images: Sequence[Sequence[int]], ks: Sequence[int] = RECALL_KS,
                      chunk_size: int = 1024) -> Dict[str, float]:
    """Both directions from (normalised) embeddings and the many-to-many ground truth."""
    for k in MEAN_RECALL_KS:
        if k not in ks:
            raise ValueError(f"retrieval_metrics: ks={tuple(ks)} must include {MEAN_RECALL_KS} for the mean recall")
    out: Dict[str, float] = {}
    for prefix, q, keys, m in (("text_retrieval", image_emb, text_emb, image_to_texts),
                               ("image_retrieval", text_emb, image_emb, text_to_images)):
        r = recall_at_k(first_match_ranks(q, keys, m, chunk_size), ks)
        out.update({f"{prefix}_recall@{k}": v for k, v in r.items()})
        out[f"{prefix}_mean_recall"] = sum(r[k] for k in MEAN_RECALL_KS) / len(MEAN_RECALL_KS)
    out["mean_recall"] = (out["text_retrieval_mean_recall"] + out["image_retrieval_mean_recall"]) / 2
    return out


def _check_finite(x: torch.Tensor, what: str) -> torch.Tensor:
    if not torch.isfinite(x).all():
        raise RuntimeError(f"the model produced non-finite {what} embeddings (try --precision fp32)")
    return x


def encode_images(model: torch.nn.Module, dataset: torch.utils.data.Dataset, device: Union[str, torch.device],
                  precision: str = "fp32", batch_size: int = 128, workers: int = 0,
                  progress: Optional[bool] = None, desc: str = "images") -> torch.Tensor:
    """L2-normalised float32 image embeddings of every item of ``dataset`` (on ``device``)."""
    from tqdm import tqdm

    device = torch.device(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda")
    feats: List[torch.Tensor] = []
    with torch.no_grad():
        for images in tqdm(loader, desc=desc, unit="batch", disable=not _progress(progress)):
            with parse_precision(precision, device).autocast(device):
                f = model.encode_image(images.to(device, non_blocking=True))
            feats.append(F.normalize(_check_finite(f.float(), "image"), dim=-1))
    return torch.cat(feats)


def encode_texts(model: torch.nn.Module, tokenizer: Callable, texts: Sequence[str], device: Union[str, torch.device],
                 precision: str = "fp32", batch_size: int = 128, progress: Optional[bool] = None,
                 desc: str = "texts") -> torch.Tensor:
    """L2-normalised float32 text embeddings (on ``device``), in the order of ``texts``.

    Captions are tokenised once, sorted by length and encoded in chunks of ``batch_size``, each cut to its
    longest caption (:func:`farslip_ext.models.text.encode_texts_bucketed`: exact for causal text towers,
    the padded ``encode_text`` otherwise).
    """
    from farslip_ext.evaluation.zeroshot import text_progress
    from farslip_ext.models.text import encode_texts_bucketed

    device = torch.device(device)
    if not texts:
        raise ValueError("encode_texts: no texts")
    with torch.no_grad():
        tokens = tokenizer(list(texts)).to(device)
        with parse_precision(precision, device).autocast(device):
            f = encode_texts_bucketed(model, tokens, batch_size, progress=text_progress(progress, desc))
    return F.normalize(_check_finite(f.float(), "text"), dim=-1)


def zeroshot_retrieval(model: torch.nn.Module, tokenizer: Callable, preprocess: Optional[Callable],
                       dataset: ImageTextRetrievalCsv, *, device: Union[str, torch.device] = "cpu",
                       precision: str = "fp32", batch_size: int = 128, workers: int = 0,
                       progress: Optional[bool] = None) -> Dict[str, float]:
    """Retrieval metrics of ``model`` on one dataset (see the module docstring), plus counts
    ``n_images``, ``n_texts``, ``n_pairs``, ``n_skipped`` and ``skipped_<reason>``."""
    device = torch.device(device)
    logger.info("%s: %d unique images, %d unique captions, %d pairs", dataset.name, len(dataset.images),
                len(dataset.captions), len(dataset.pairs))
    img = encode_images(model, dataset.image_dataset(preprocess), device, precision, batch_size, workers, progress,
                        desc=f"{dataset.name} images")
    txt = encode_texts(model, tokenizer, dataset.captions, device, precision, batch_size, progress,
                       desc=f"{dataset.name} texts")
    out = retrieval_metrics(img, txt, dataset.image_to_texts, dataset.text_to_images)
    skipped = getattr(dataset, "skipped", {})
    out.update(n_images=len(dataset.images), n_texts=len(dataset.captions), n_pairs=len(dataset.pairs),
               n_skipped=int(sum(skipped.values())), **{f"skipped_{k}": int(v) for k, v in sorted(skipped.items())})
    return out


def run_retrieval_benchmarks(model: torch.nn.Module, tokenizer: Callable, preprocess: Optional[Callable],
                             datasets: Sequence[Union[str, ImageTextRetrievalCsv]],
                             data_root: Optional[Union[str, Path]] = None, *,
                             image_root: Optional[Union[str, Path]] = None, on_bad_row: str = "error",
                             device: Union[str, torch.device] = "cpu", precision: str = "fp32",
                             batch_size: int = 128, workers: int = 0,
                             progress: Optional[bool] = None) -> Dict[str, Dict[str, float]]:
    """Evaluate several datasets: names of :data:`RETRIEVAL_BENCHMARKS` (under ``data_root``) or ready
    :class:`ImageTextRetrievalCsv` objects. Returns ``{dataset: metrics}`` in the given order."""
    results: Dict[str, Dict[str, float]] = {}
    for d in resolve_benchmark_datasets(datasets, ImageTextRetrievalCsv, data_root, image_root, on_bad_row):
        results[d.name] = zeroshot_retrieval(model, tokenizer, preprocess, d, device=device, precision=precision,
                                             batch_size=batch_size, workers=workers, progress=progress)
        r = results[d.name]
        logger.info("%s: I2T mR %.2f%%, T2I mR %.2f%%", d.name, 100 * r["text_retrieval_mean_recall"],
                    100 * r["image_retrieval_mean_recall"])
    return results
