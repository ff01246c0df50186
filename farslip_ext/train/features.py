"""The feature vocabulary: the names losses and heads declare in ``required_features``.

A loss or region head lists the features it reads; the training task computes the union of all
declared needs once per step (nothing else), and calls each component with exactly its features as
keyword arguments (:func:`call_component`). The names follow the reference's feature dictionary
(docs/reference/method.md §4.3): ``global_*`` is the whole image, ``subset_*`` the stage-1 random crops,
``local_*`` the stage-2 object crops.

=====================  ==============  =================================================================
name                   shape           what
=====================  ==============  =================================================================
``global_embed``       (B, D)          image embedding of ``global_image`` (``encode_image``), unnormalised
``global_patches``     (B, N, D)       dense tokens of ``global_image`` (the ``dense_attn`` last block),
                                       unnormalised, no CLS; N = H·W
``grid``               (H, W)          token grid of ``global_image``
``global_text_embed``  (B, D)          text embedding of ``global_text``, unnormalised
``subset_embed``       (M1, D)         image embedding of each valid stage-1 crop (``subset_images`` whose
                                       ``subset_boxes`` flag is 1, row-major (b, k)), from the teacher's
                                       target model (the student itself with ``ActiveTeacher``)
``subset_patches``     (M1, N', D)     dense tokens of those crops, from the teacher's target model
``local_embed``        (M2, D)         image embedding of each valid stage-2 crop (``local_images`` whose
                                       ``boxes`` flag is 1, row-major (b, k))
``local_patches``      (M2, N', D)     dense tokens of those crops
``local_text_embed``   (M2, D)         text embedding of their ``local_texts``, unnormalised
``local_labels``       (M2,) int64     their ``local_categories`` (-1: a free-text ``cap`` region)
``region_embed``       (M2, D)         the region head's output (L2-normalised), one row per valid box
``logit_scale``        ()              ``exp(model.logit_scale)``
=====================  ==============  =================================================================

Every batch key of :mod:`farslip_ext.data.batch` (``boxes``, ``subset_boxes``, ``label`` ...) is a
feature too, passed through unchanged. Crop features hold only the valid crops; text embeddings are
computed with trimmed text encoding (:func:`farslip_ext.models.text.encode_text`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, Iterable, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from farslip_ext.data.batch import BATCH_KEYS
from farslip_ext.errors import ConfigError

__all__ = [
    "FeatureSpec",
    "FEATURES",
    "COMPUTED_FEATURES",
    "check_feature_names",
    "required_batch_keys",
    "call_component",
    "example_features",
]


@dataclass(frozen=True)
class FeatureSpec:
    """One computed feature: its name, shape and meaning (the module table)."""

    name: str
    shape: str
    meaning: str
    batch_keys: Tuple[str, ...]  # batch keys it is computed from


_SPECS = (
    FeatureSpec("global_embed", "(B, D)", "image embedding of global_image", ("global_image",)),
    FeatureSpec("global_patches", "(B, N, D)", "dense tokens of global_image", ("global_image",)),
    FeatureSpec("grid", "(H, W)", "token grid of global_image", ("global_image",)),
    FeatureSpec("global_text_embed", "(B, D)", "text embedding of global_text", ("global_text",)),
    FeatureSpec("subset_embed", "(M1, D)", "image embedding of each valid stage-1 crop (teacher target model)",
                ("subset_images", "subset_boxes")),
    FeatureSpec("subset_patches", "(M1, N, D)", "dense tokens of each valid stage-1 crop (teacher target model)",
                ("subset_images", "subset_boxes")),
    FeatureSpec("local_embed", "(M2, D)", "image embedding of each valid stage-2 crop", ("local_images", "boxes")),
    FeatureSpec("local_patches", "(M2, N, D)", "dense tokens of each valid stage-2 crop", ("local_images", "boxes")),
    FeatureSpec("local_text_embed", "(M2, D)", "text embedding of each valid region's local_texts",
                ("local_texts", "boxes")),
    FeatureSpec("local_labels", "(M2,)", "local_categories of each valid region", ("local_categories", "boxes")),
    FeatureSpec("region_embed", "(M2, D)", "the region head's output, L2-normalised", ()),
    FeatureSpec("logit_scale", "()", "exp(model.logit_scale)", ()),
)

#: The computed features, by name.
COMPUTED_FEATURES: Dict[str, FeatureSpec] = {s.name: s for s in _SPECS}
#: Every name a component may declare: the computed features and the batch keys.
FEATURES: FrozenSet[str] = frozenset(COMPUTED_FEATURES) | frozenset(BATCH_KEYS)


def check_feature_names(owner: str, names: Iterable[str]) -> Tuple[str, ...]:
    """``names`` as a tuple; :class:`~farslip_ext.errors.ConfigError` naming ``owner`` for an unknown one."""
    if isinstance(names, str):
        raise ConfigError(f"{owner}: required_features must be a tuple of names, got the string {names!r} "
                          f"(write ({names!r},))")
    out = tuple(names)
    unknown = [n for n in out if n not in FEATURES]
    if unknown:
        raise ConfigError(f"{owner} declares unknown feature(s) {unknown}; the vocabulary is "
                          f"{sorted(COMPUTED_FEATURES)} plus the batch keys {list(BATCH_KEYS)} "
                          f"(farslip_ext/train/features.py)")
    return out


def required_batch_keys(needs: Iterable[str]) -> Tuple[str, ...]:
    """The batch keys the features ``needs`` are computed from (or are)."""
    keys = []
    for n in needs:
        for k in (COMPUTED_FEATURES[n].batch_keys if n in COMPUTED_FEATURES else (n,)):
            if k not in keys:
                keys.append(k)
    return tuple(keys)


def call_component(component: Callable[..., Any], features: Mapping[str, Any],
                   names: Optional[Sequence[str]] = None) -> Any:
    """Call a loss or head with its declared features: ``component.forward_features(selected)`` when it
    defines one, else ``component(**selected)`` (the parameters of ``forward`` are the feature names)."""
    names = tuple(getattr(component, "required_features", ())) if names is None else tuple(names)
    selected = {n: features[n] for n in names}
    fwd = getattr(component, "forward_features", None)
    return fwd(selected) if callable(fwd) else component(**selected)


def example_features(b: int = 3, k: int = 2, d: int = 8, grid: Tuple[int, int] = (2, 3), seed: int = 0,
                     dtype: torch.dtype = torch.float32) -> Dict[str, Any]:
    """A small, consistent set of every feature (random, seeded), for component contract tests and the
    ``example_inputs`` of losses and heads. Floating tensors are leaves with ``requires_grad=True``.

    Stage-1 crops: ``b*k - 1`` valid (one padded row); stage-2 boxes: ``b*k - 2`` valid, labels with a
    repeated category and one free-text (-1) region.
    """
    g = torch.Generator().manual_seed(seed)
    h, w = grid
    n = h * w

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(True)

    def boxes(invalid: Sequence[Tuple[int, int]]) -> torch.Tensor:
        lo = torch.rand(b, k, 2, generator=g, dtype=dtype) * 0.5
        hi = lo + 0.2 + torch.rand(b, k, 2, generator=g, dtype=dtype) * 0.3
        out = torch.cat([lo, hi, torch.ones(b, k, 1, dtype=dtype)], dim=-1)
        for bi, ki in invalid:
            out[bi, ki] = 0.0
        return out

    subset_boxes = boxes([(b - 1, k - 1)])
    stage2_boxes = boxes([(0, k - 1), (b - 1, 0)])
    m1 = int((subset_boxes[..., 4] > 0.5).sum())
    m2 = int((stage2_boxes[..., 4] > 0.5).sum())
    labels = torch.arange(m2) % max(1, m2 - 2)
    labels[-1] = -1
    region = F.normalize(torch.randn(m2, d, generator=g, dtype=dtype), dim=-1).requires_grad_(True)
    return {
        "global_embed": r(b, d), "global_patches": r(b, n, d), "grid": (h, w), "global_text_embed": r(b, d),
        "subset_embed": r(m1, d), "subset_patches": r(m1, n, d), "subset_boxes": subset_boxes,
        "local_embed": r(m2, d), "local_patches": r(m2, n, d), "local_text_embed": r(m2, d),
        "local_labels": labels, "boxes": stage2_boxes, "region_embed": region,
        "logit_scale": torch.tensor(10.0, dtype=dtype, requires_grad=True),
    }
