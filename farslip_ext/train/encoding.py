"""Compute the features a task needs from a batch, in as few encoder calls as possible.

:func:`plan_features` turns the declared needs into a :class:`FeaturePlan`; :class:`FeatureEncoder`
computes exactly those features (farslip_ext.train.features) for a batch:

* images: the global images and the valid crops that need the *student* go through the image tower in
  ONE trunk pass (grouped by image size); the normal last block runs only on the rows that need the
  image embedding, the dense last block only on the rows that need dense tokens. Crops whose targets
  come from a separate teacher copy are encoded by it under ``no_grad``;
* texts: captions and region prompts, each part trimmed to its own longest real token sequence
  (:func:`farslip_ext.models.text.encode_text`; exact for causal towers);
* a crop set without any valid row is encoded as one probe image and cut to zero rows, so its
  ``(0, ...)`` features keep their shapes and stay connected to the graph (the same backward and
  collectives on every rank).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Tuple

import torch
from torch import nn

from farslip_ext.data.batch import check_batch, valid_rows
from farslip_ext.models.dense import dense_forward
from farslip_ext.models.dense_attn import DenseAttention
from farslip_ext.models.text import encode_text
from farslip_ext.models.towers import tower_of
from farslip_ext.train.features import COMPUTED_FEATURES, required_batch_keys

__all__ = ["FeaturePlan", "plan_features", "FeatureEncoder", "IMAGE_GROUPS"]

#: image group -> (images key, boxes key or None)
IMAGE_GROUPS: Dict[str, Tuple[str, Optional[str]]] = {
    "global": ("global_image", None),
    "subset": ("subset_images", "subset_boxes"),
    "local": ("local_images", "boxes"),
}
_EMBED = {"global": "global_embed", "subset": "subset_embed", "local": "local_embed"}
_DENSE = {"global": "global_patches", "subset": "subset_patches", "local": "local_patches"}


@dataclass(frozen=True)
class FeaturePlan:
    """Which features to compute (``needs``) and which batch keys that takes."""

    needs: FrozenSet[str]

    def image(self, group: str) -> Tuple[bool, bool]:
        """``(image embedding, dense tokens)`` needed for an image group."""
        return _EMBED[group] in self.needs, _DENSE[group] in self.needs

    @property
    def texts(self) -> Tuple[bool, bool]:
        """``(captions, region texts)`` needed."""
        return "global_text_embed" in self.needs, "local_text_embed" in self.needs

    @property
    def batch_keys(self) -> Tuple[str, ...]:
        return required_batch_keys(sorted(self.needs - {"region_embed"}))


def plan_features(needs: Iterable[str]) -> FeaturePlan:
    return FeaturePlan(frozenset(needs))


def _text_dim(model: nn.Module) -> int:
    proj = getattr(model, "text_projection", None)
    if isinstance(proj, torch.Tensor):
        return int(proj.shape[-1])
    if isinstance(proj, nn.Linear):
        return int(proj.out_features)
    return int(getattr(model, "embed_dim", 0) or model.ln_final.normalized_shape[0])


class FeatureEncoder:
    """Computes a :class:`FeaturePlan`'s features (see the module docstring).

    Args:
        attn: the dense-attention variant of the last block.
        fuse: one trunk pass for all student images of the same size (same numerics; fewer, larger matmuls).
        trim_text: trimmed text encoding (``False``: the padded ``model.encode_text``, for comparisons).
    """

    def __init__(self, attn: DenseAttention, fuse: bool = True, trim_text: bool = True) -> None:
        self.attn = attn
        self.fuse = bool(fuse)
        self.trim_text = bool(trim_text)

    # ---- images ---------------------------------------------------------------------------------
    def _encode(self, model: nn.Module, images: torch.Tensor, need_embed: bool, need_dense: bool):
        if not need_dense:
            return model.encode_image(images), None
        out = dense_forward(model, images, self.attn, return_image_embed=need_embed, check_tower=False)
        return out.image_embed, out.patch_tokens

    def _run(self, model: nn.Module, groups: List[Tuple[str, torch.Tensor, bool, bool]]) -> Dict[str, Any]:
        """``{name_embed, name_patches}`` of every group ``(name, images, need_embed, need_dense)``."""
        out: Dict[str, Any] = {}
        by_size: Dict[Tuple[int, ...], List[Tuple[str, torch.Tensor, bool, bool]]] = {}
        for g in groups:
            by_size.setdefault(tuple(g[1].shape[1:]), []).append(g)
        for same in by_size.values():
            if not self.fuse or len(same) == 1:
                for name, imgs, ne, nd in same:
                    out[f"{name}_embed"], out[f"{name}_patches"] = self._encode(model, imgs, ne, nd)
                continue
            images = torch.cat([g[1] for g in same])
            dev = images.device
            spans, start = [], 0
            for g in same:
                spans.append((start, start + g[1].shape[0]))
                start += g[1].shape[0]
            e_idx = [torch.arange(a, b, device=dev) for (a, b), g in zip(spans, same) if g[2]]
            d_idx = [torch.arange(a, b, device=dev) for (a, b), g in zip(spans, same) if g[3]]
            res = dense_forward(model, images, self.attn, return_image_embed=bool(e_idx), return_dense=bool(d_idx),
                                embed_rows=torch.cat(e_idx) if e_idx else None,
                                dense_rows=torch.cat(d_idx) if d_idx else None, check_tower=False)
            e_off = d_off = 0
            for (a, b), (name, _, ne, nd) in zip(spans, same):
                n = b - a
                out[f"{name}_embed"] = res.image_embed[e_off:e_off + n] if ne else None
                out[f"{name}_patches"] = res.patch_tokens[d_off:d_off + n] if nd else None
                e_off += n if ne else 0
                d_off += n if nd else 0
        return out

    @staticmethod
    def _crops(batch: Mapping[str, Any], group: str) -> Tuple[torch.Tensor, int]:
        """The group's images (valid crops only, row-major (b, k)) and their count; an empty set becomes one
        probe image (the first global image) to be cut to zero rows."""
        images_key, boxes_key = IMAGE_GROUPS[group]
        images = batch[images_key]
        if boxes_key is None:
            return images, images.shape[0]
        crops = images[valid_rows(batch[boxes_key])]
        if crops.shape[0] == 0:
            probe = batch["global_image"][:1] if "global_image" in batch else images.flatten(0, 1)[:1]
            return probe, 0
        return crops, crops.shape[0]

    def _images(self, model: nn.Module, teacher: Any, plan: FeaturePlan, batch: Mapping[str, Any],
                feats: Dict[str, Any], report: Dict[str, float]) -> None:
        student_groups, counts = [], {}
        separate = None
        for group in IMAGE_GROUPS:
            ne, nd = plan.image(group)
            if not (ne or nd):
                continue
            images, n = self._crops(batch, group)
            counts[group] = n
            if group != "global":
                report[f"{group}_crops"] = float(n)
            if group == "subset":
                target = teacher.target_model(model)
                if not (teacher.targets_require_grad and target is model):
                    separate = (target, images, ne, nd, teacher.targets_require_grad)
                    continue
            student_groups.append((group, images, ne, nd))
        out = self._run(model, student_groups) if student_groups else {}
        if separate is not None:
            target, images, ne, nd, grad = separate
            with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
                out["subset_embed"], out["subset_patches"] = self._encode(target, images, ne, nd)
        for group, n in counts.items():
            ne, nd = plan.image(group)
            for name, needed in ((_EMBED[group], ne), (_DENSE[group], nd)):
                if needed:
                    t = out[name]
                    feats[name] = t[:n] if n < t.shape[0] else t

    # ---- texts ------------------------------------------------------------------------------------
    def _texts(self, model: nn.Module, plan: FeaturePlan, batch: Mapping[str, Any], feats: Dict[str, Any]) -> None:
        want_global, want_local = plan.texts
        parts: List[torch.Tensor] = []
        if want_global:
            parts.append(batch["global_text"])
        if want_local:
            parts.append(batch["local_texts"][valid_rows(batch["boxes"])])
        if not parts:
            return
        sizes = [p.shape[0] for p in parts]
        tokens = torch.cat(parts) if len(parts) > 1 else parts[0]
        probe = tokens.shape[0] == 0
        if probe:  # no row at all: one probe row keeps the (0, D) output on the graph
            src = batch["local_texts"] if want_local else batch["global_text"]
            tokens = src.reshape(-1, src.shape[-1])[:1]
            if tokens.shape[0] == 0:
                emb = torch.zeros(0, _text_dim(model), device=src.device)
                chunks = [emb] * len(parts)
                self._put_texts(feats, want_global, want_local, chunks)
                return
        if self.trim_text and len(parts) > 1 and not probe and all(p.shape[0] for p in parts):
            # captions (up to 248 tokens) and region prompts (about ten) have very different lengths: one
            # call per part, each trimmed to its own longest row, instead of every prompt at the caption length
            emb = torch.cat([encode_text(model, p) for p in parts])
        else:
            emb = encode_text(model, tokens) if self.trim_text else model.encode_text(tokens)
        if probe:
            emb = emb[:0]
            sizes = [0] * len(parts)
        self._put_texts(feats, want_global, want_local, list(emb.split(sizes)))

    @staticmethod
    def _put_texts(feats: Dict[str, Any], want_global: bool, want_local: bool, chunks: List[torch.Tensor]) -> None:
        if want_global:
            feats["global_text_embed"] = chunks.pop(0)
        if want_local:
            feats["local_text_embed"] = chunks.pop(0)

    # ---- all --------------------------------------------------------------------------------------
    def __call__(self, model: nn.Module, teacher: Any, plan: FeaturePlan, batch: Mapping[str, Any],
                 needed_by: str = "the training task") -> Tuple[Dict[str, Any], Dict[str, float]]:
        """``(features, report)`` for ``batch``; ``report`` holds the crop counts."""
        check_batch(batch, plan.batch_keys, needed_by=needed_by)
        feats: Dict[str, Any] = {}
        report: Dict[str, float] = {}
        self._images(model, teacher, plan, batch, feats, report)
        self._texts(model, plan, batch, feats)
        needs = plan.needs
        if "grid" in needs:
            feats["grid"] = tower_of(model).grid_of(batch["global_image"])
        if "local_labels" in needs:
            feats["local_labels"] = batch["local_categories"][valid_rows(batch["boxes"])]
        if "logit_scale" in needs:
            feats["logit_scale"] = model.logit_scale.exp()
        for name in needs:
            if name not in COMPUTED_FEATURES:
                feats[name] = batch[name]
        return feats, report
