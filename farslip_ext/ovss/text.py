"""Text embeddings of the class names, computed once and cached (docs/reference/ovss-evaluation.md#12-text-side-and-templates).

Per name: fill every prompt template, encode, L2-normalise each prompt, average, L2-normalise. The
prompts are encoded with :func:`farslip_ext.models.text.encode_texts_bucketed` (sorted by length and
trimmed to the tokens the pooled feature can see: exact for open_clip's causal towers, many times
faster than padding every prompt to the full 77/248-token context), with the package's progress
policy (a tqdm bar on a terminal, periodic log lines otherwise). The ``(Q, D)`` float32 result is cached

* in memory, per process, and
* on disk under ``$FARSLIP_CACHE/text_embeddings`` (default ``~/.cache/farslip_ext/text_embeddings``),

keyed by a fingerprint of the text-side weights (every tensor outside ``visual.``), the tokenizer
(class and context length), the names and the filled templates.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import weakref
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from farslip_ext.compat import tensor_version
from farslip_ext.io import cache_root

__all__ = ["text_cache_dir", "text_fingerprint", "compute_text_embeddings", "TextEmbeddingCache", "clear_memory_cache",
           "template_strings", "resolve_templates"]

logger = logging.getLogger(__name__)

Template = Union[str, Callable[[str], str]]

_MEMORY: Dict[str, torch.Tensor] = {}
_LOCK = threading.Lock()
_FINGERPRINTS: "weakref.WeakKeyDictionary[nn.Module, Tuple[tuple, str]]" = weakref.WeakKeyDictionary()


def resolve_templates(templates: Any) -> List[Callable[[str], str]]:
    """Prompt templates from an alias (``openai`` = the 80 OpenAI ImageNet prompts, ``farslip``,
    ``skyscript``), a ``TEMPLATES`` registry name/config, or a list of strings with ``{c}`` (or ``{}``)."""
    from farslip_ext.evaluation.templates import build_templates

    if isinstance(templates, (list, tuple)) and templates and all(isinstance(t, str) for t in templates):
        templates = [t if "{c}" in t else t.replace("{}", "{c}") for t in templates]
    return list(build_templates(templates).for_dataset(None))


def text_cache_dir() -> Path:
    """``$FARSLIP_CACHE/text_embeddings`` (the same root as the converted-weights cache)."""
    return cache_root() / "text_embeddings"


def clear_memory_cache() -> None:
    """Forget the in-memory embeddings (the disk cache stays)."""
    with _LOCK:
        _MEMORY.clear()


def _text_tensors(model: nn.Module) -> List[Tuple[str, torch.Tensor]]:
    items = [(k, v) for k, v in model.state_dict(keep_vars=True).items() if not k.startswith("visual.")]
    return sorted(items, key=lambda kv: kv[0])


def text_fingerprint(model: nn.Module) -> str:
    """sha256 of every text-side tensor (names, shapes, dtypes, bytes); memoised per model while its
    tensors are unchanged (in-place edits bump the tensor version counter and invalidate the memo)."""
    tensors = _text_tensors(model)
    state = tuple((k, v.data_ptr(), tensor_version(v), str(v.dtype), tuple(v.shape)) for k, v in tensors)
    memo = _FINGERPRINTS.get(model)
    if memo is not None and memo[0] == state:
        return memo[1]
    h = hashlib.sha256()
    for k, v in tensors:
        t = v.detach().contiguous().cpu()
        h.update(f"{k}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    digest = h.hexdigest()
    try:
        _FINGERPRINTS[model] = (state, digest)
    except TypeError:  # pragma: no cover - non-weakrefable module
        pass
    return digest


def _autocast_state(model: nn.Module) -> Optional[str]:
    """The autocast dtype active for ``model``'s device type (``None``: no autocast)."""
    try:
        dev = next(model.parameters()).device.type
    except StopIteration:
        return None
    if not torch.is_autocast_enabled(dev):
        return None
    return str(torch.get_autocast_dtype(dev))


def _fill(templates: Sequence[Template], name: str) -> List[str]:
    return [t(name) if callable(t) else t.replace("{c}", name) for t in templates]


def template_strings(templates: Sequence[Template]) -> List[str]:
    """Templates as strings with a ``{c}`` placeholder (for cache keys and reports)."""
    return _fill(templates, "{c}")


def _progress_fn(progress: Optional[bool], n_prompts: int) -> Callable[..., Any]:
    from farslip_ext.logs import progress as bar

    def wrap(iterable, total):
        return bar(iterable, total=total, desc=f"text embeddings ({n_prompts} prompts)", unit="batch",
                   enabled=progress, leave=False)

    return wrap


@torch.no_grad()
def compute_text_embeddings(model: nn.Module, tokenizer: Callable, names: Sequence[str],
                            templates: Sequence[Template], batch_size: int = 256,
                            device: Optional[torch.device] = None, progress: Optional[bool] = None) -> torch.Tensor:
    """``(Q, D)`` float32 embeddings: per name, mean of the normalised prompt embeddings, renormalised.
    ``progress``: None follows the package policy (bar on a terminal, log lines otherwise), False: silent."""
    from farslip_ext.models.text import encode_texts_bucketed

    if device is None:
        device = next(model.parameters()).device
    prompts = [p for n in names for p in _fill(templates, n)]
    tokens = tokenizer(prompts).to(device)
    emb = encode_texts_bucketed(model, tokens, batch_size=int(batch_size),
                                progress=False if progress is False else _progress_fn(progress, len(prompts)))
    per_prompt = F.normalize(emb.float(), dim=-1).reshape(len(names), len(templates), -1)
    return F.normalize(per_prompt.mean(dim=1), dim=-1)


class TextEmbeddingCache:
    """Memory + disk cache of class-name embeddings.

    Args:
        cache_dir: disk folder (default :func:`text_cache_dir`); ``use_disk=False`` keeps it in memory only.
    """

    def __init__(self, cache_dir: Optional[Union[str, Path]] = None, use_disk: bool = True) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.use_disk = use_disk

    def _dir(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else text_cache_dir()

    @staticmethod
    def key(model: nn.Module, tokenizer: Callable, names: Sequence[str], templates: Sequence[Template]) -> str:
        desc = {
            "weights": text_fingerprint(model),
            "tokenizer": [type(tokenizer).__module__ + "." + type(tokenizer).__qualname__,
                          getattr(tokenizer, "context_length", None)],
            "names": list(names),
            "templates": template_strings(templates),
            "recipe": "normalise-mean-normalise/v1",
            # the numeric regime the embeddings are computed in: a bf16-autocast result must never be
            # served to an fp32 run (whose labels would then differ from a cold fp32 run's)
            "autocast": _autocast_state(model),
        }
        return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()

    def get(self, model: nn.Module, tokenizer: Callable, names: Sequence[str], templates: Sequence[Template],
            batch_size: int = 256, device: Optional[torch.device] = None,
            progress: Optional[bool] = None) -> torch.Tensor:
        """The ``(Q, D)`` float32 embeddings of ``names`` on ``device`` (computed only on a cache miss)."""
        if device is None:
            device = next(model.parameters()).device
        key = self.key(model, tokenizer, names, templates)
        with _LOCK:
            hit = _MEMORY.get(key)
        if hit is not None:
            logger.debug("text embeddings %s: memory hit", key[:12])
            return hit.to(device)
        path = self._dir() / f"{key}.pt"
        if self.use_disk and path.is_file():
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True)
                emb = obj["embeddings"]
                if list(obj.get("names", [])) == list(names) and emb.shape[0] == len(names):
                    with _LOCK:
                        _MEMORY[key] = emb
                    logger.info("text embeddings for %d names loaded from %s", len(names), path)
                    return emb.to(device)
                logger.warning("ignoring stale text-embedding cache file %s", path)
            except Exception as e:  # a truncated or foreign file is recomputed, not fatal
                logger.warning("ignoring unreadable text-embedding cache file %s (%s)", path, e)
        logger.info("encoding %d class names x %d templates", len(names), len(templates))
        emb = compute_text_embeddings(model, tokenizer, names, templates, batch_size=batch_size, device=device,
                                      progress=progress)
        emb_cpu = emb.detach().float().cpu().contiguous()
        with _LOCK:
            _MEMORY[key] = emb_cpu
        if self.use_disk:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
                torch.save({"embeddings": emb_cpu, "names": list(names),
                            "templates": template_strings(templates)}, tmp)
                tmp.replace(path)
            except OSError as e:
                logger.warning("could not write the text-embedding cache %s (%s); continuing without it", path, e)
        return emb.float()
