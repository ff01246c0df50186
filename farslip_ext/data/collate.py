"""Tokenizers and the batch collate of the FarSLIP data pipelines (docs/reference/method.md §1.1, §2.1, §2.5).

The batch keys and their shapes are the contract in :mod:`farslip_ext.data.batch` (``Batch``).
Any other key is stacked when it holds tensors, turned into a tensor when it holds numbers, and
kept as a list otherwise (file names, keys). Texts that are still strings are tokenized by the
collate's tokenizer, or kept as lists when it has none (evaluators that tokenize themselves).
"""
from __future__ import annotations

import functools
import logging
import numbers
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch

from farslip_ext.data.batch import PAIR_KEYS, STAGE1_KEYS, STAGE2_KEYS
from farslip_ext.registry import SAMPLE_TRANSFORMS

__all__ = [
    "STAGE1_KEYS",
    "STAGE2_KEYS",
    "PAIR_KEYS",
    "Tokenizer",
    "build_tokenizer",
    "FarSLIPCollate",
    "collate_farslip",
]

logger = logging.getLogger(__name__)


Tokenizer = Callable[[List[str]], torch.Tensor]
TokenizerSpec = Union[None, str, Mapping[str, Any], Tokenizer]

_TEXT_KEYS = ("global_text",)


def build_tokenizer(spec: TokenizerSpec, context_length: Optional[int] = None) -> Optional[Tokenizer]:
    """Resolve a tokenizer argument (docs/reference/method.md §2.5: 77 tokens, or 248 for the LongCLIP text tower).

    Args:
        spec: ``None``; an open_clip model name (``"farslip-vitb16"`` -> its tokenizer, 248 tokens);
            ``dict(name=..., context_length=...)``; or a callable ``List[str] -> LongTensor (n, L)``
            such as the object returned by ``open_clip.get_tokenizer``.
        context_length: Overrides the model's context length (names and dicts only; for a callable,
            it is passed as ``context_length=`` on every call).

    Returns:
        A callable tokenizer or ``None``.
    """
    if spec is None:
        return None
    if isinstance(spec, str) or isinstance(spec, Mapping):
        import open_clip

        cfg = {"name": spec} if isinstance(spec, str) else dict(spec)
        name = cfg.pop("name", None) or cfg.pop("model_name", None)
        if not name:
            raise ValueError(f"a tokenizer config needs a 'name' (an open_clip model name), got {dict(spec)!r}")
        cl = cfg.pop("context_length", None) if context_length is None else context_length
        cfg.pop("context_length", None)
        return open_clip.get_tokenizer(name, context_length=cl, **cfg)
    if callable(spec):
        if context_length is None:
            return spec
        return functools.partial(spec, context_length=context_length)  # picklable for spawned workers
    raise TypeError(f"a tokenizer must be None, a model name, a dict or a callable, got {type(spec).__name__}")


def _is_str_list(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(t, str) for t in v)


@SAMPLE_TRANSFORMS.register_module()
class FarSLIPCollate:
    """Collate a list of sample dicts into the FarSLIP batch dict (see the module docstring).

    Texts may arrive already tokenized (the datasets tokenize in the worker when given a tokenizer,
    like the reference) or as strings; strings are tokenized here with ``tokenizer``, or kept as
    lists (``local_texts``: a list of K-string lists) when the collate has no tokenizer.
    ``local_texts`` given as K strings per sample become ``(B, K, L)`` tokens whose rows with
    validity 0 (``boxes[..., 4] == 0``) are zeroed, as the reference pads (docs/reference/method.md §2.1).

    Args:
        tokenizer: ``None``, an open_clip model name, ``dict(name=, context_length=)`` or a callable
            (see :func:`build_tokenizer`); used only when samples carry raw strings.
        context_length: Context length override for the tokenizer.
        required_keys: If given, every sample must carry these keys (e.g. :data:`STAGE2_KEYS`).
    """

    def __init__(
        self,
        tokenizer: TokenizerSpec = None,
        context_length: Optional[int] = None,
        required_keys: Optional[Sequence[str]] = None,
    ) -> None:
        self.tokenizer = build_tokenizer(tokenizer, context_length)
        self.required_keys = tuple(required_keys) if required_keys else ()

    def _tokenize(self, key: str, texts: List[str]) -> torch.Tensor:
        assert self.tokenizer is not None
        return self.tokenizer(texts)

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
        if len(samples) == 0:
            raise ValueError("cannot collate an empty list of samples")
        keys = list(samples[0].keys())
        for n, s in enumerate(samples):
            if set(s.keys()) != set(keys):
                raise ValueError(
                    f"sample {n} has keys {sorted(s.keys())}, sample 0 has {sorted(keys)}; "
                    f"all samples of a batch must carry the same keys"
                )
        missing = [k for k in self.required_keys if k not in keys]
        if missing:
            raise KeyError(f"samples lack the batch keys {missing} (have {sorted(keys)})")
        out: Dict[str, Any] = {}
        for key in keys:
            vals = [s[key] for s in samples]
            if self.tokenizer is None and (isinstance(vals[0], str) or _is_str_list(vals[0])):
                out[key] = list(vals)  # no tokenizer: raw strings stay lists (e.g. for evaluators)
            elif key == "local_texts" and _is_str_list(vals[0]):
                k = len(vals[0])
                flat = [t for v in vals for t in v]
                tokens = self._tokenize(key, flat).reshape(len(vals), k, -1)
                valid = self._validity(samples, vals)
                out[key] = tokens * valid[..., None].to(tokens.dtype)
            elif key in _TEXT_KEYS and isinstance(vals[0], str):
                out[key] = self._tokenize(key, list(vals))
            elif isinstance(vals[0], torch.Tensor):
                out[key] = torch.stack(vals)
            elif isinstance(vals[0], numbers.Number) and not isinstance(vals[0], bool):
                dtype = torch.int64 if all(isinstance(v, numbers.Integral) for v in vals) else torch.float32
                out[key] = torch.tensor(vals, dtype=dtype)
            else:
                out[key] = list(vals)
        return out

    @staticmethod
    def _validity(samples: Sequence[Mapping[str, Any]], texts: List[List[str]]) -> torch.Tensor:
        if "boxes" in samples[0]:
            return torch.stack([s["boxes"][:, 4] for s in samples]) > 0
        return torch.tensor([[t != "" for t in v] for v in texts])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tokenizer={self.tokenizer!r}, required_keys={self.required_keys})"


#: A tokenizer-free collate for samples that carry tokens already.
collate_farslip = FarSLIPCollate()
