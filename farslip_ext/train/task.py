"""Training tasks: turn a batch into losses. The loop only calls ``task(batch) -> (losses, report)``.

:class:`FarSLIPTask` covers both FarSLIP stages and a plain-CLIP baseline, chosen by which losses the
config lists (farslip-method.md §1, §2):

* ``global_itc`` — global image (CLS) vs caption, open_clip ``ClipLoss`` (both stages);
* ``distill`` — patch-to-patch self-distillation on the stage-1 random crops (``subset_images``,
  ``subset_boxes``), targets from the teacher (``ActiveTeacher``: the student itself, with gradient);
* ``region`` — region-category alignment on the stage-2 object crops (``local_images``,
  ``local_texts``, ``local_categories``, ``boxes``), region features from a region head.

Only the features some loss or head declares (``required_features``) are computed, in as few encoder
calls as possible: with an active teacher the global images and all valid crops go through the image
tower in ONE batched call, and the dense last block runs only when a dense feature is needed.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Set, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from farslip_ext.models.dense import dense_forward
from farslip_ext.models.dense_attn import build_dense_attention
from farslip_ext.registry import HEADS, LOSSES, TASKS, TEACHERS

__all__ = ["FarSLIPTask"]

_ROLES = ("global_itc", "distill", "region")


def _valid_rows(boxes: torch.Tensor) -> torch.Tensor:
    """(B, K) bool: validity flag in the last box column."""
    return boxes[..., 4] > 0.5


@TASKS.register_module()
class FarSLIPTask(nn.Module):
    """FarSLIP stage 1 / stage 2 / CLIP baseline as one task.

    Args:
        model: an open_clip ``CLIP``.
        losses: ``{"global_itc": cfg, "distill": cfg, "region": cfg}`` (any subset); each a
            ``dict(type=...)`` for ``LOSSES`` carrying its own ``loss_weight``.
        region_head: ``HEADS`` config for the region loss (reference: ``CropClsHead``).
        teacher: ``TEACHERS`` config for distillation targets (reference: ``ActiveTeacher``).
        dense_attn: dense-attention variant of the last block (reference: ``SegEarth``).
        ignore_residual: dense block without residual/FFN (reference: True).
        fuse_encoder_calls: encode globals and crops in one batched call when the targets come from the
            student (same numerics; fewer, larger matmuls).
    """

    def __init__(self, model: nn.Module, losses: Optional[Mapping[str, Any]] = None,
                 region_head: Optional[Mapping[str, Any]] = None, teacher: Optional[Mapping[str, Any]] = None,
                 dense_attn: Any = "SegEarth", ignore_residual: bool = True, fuse_encoder_calls: bool = True) -> None:
        super().__init__()
        self.model = model
        losses = dict(losses or {"global_itc": dict(type="GlobalITCLoss")})
        unknown = set(losses) - set(_ROLES)
        if unknown:
            raise KeyError(f"FarSLIPTask: unknown loss role(s) {sorted(unknown)}; roles are {list(_ROLES)}")
        self.losses = nn.ModuleDict({k: LOSSES.build(dict(v)) for k, v in losses.items() if v is not None})
        self.region_head = None
        if "region" in self.losses:
            self.region_head = HEADS.build(dict(region_head or dict(type="CropClsHead")))
        self.teacher = TEACHERS.build(dict(teacher or dict(type="ActiveTeacher")))
        self.teacher.setup(model)
        self.attn = build_dense_attention(dense_attn, ignore_residual=ignore_residual)
        self.fuse = fuse_encoder_calls

    # ---- what to compute --------------------------------------------------------------------------
    def _distill_needs(self) -> Set[str]:
        return set(self.losses["distill"].required_features) | {"global_patches"} if "distill" in self.losses else set()

    def _region_needs(self) -> Set[str]:
        return set(self.region_head.required_features) if self.region_head is not None else set()

    # ---- encoders -----------------------------------------------------------------------------------
    def _encode(self, model: nn.Module, images: torch.Tensor, need_embed: bool, need_dense: bool):
        if not need_dense:
            return model.encode_image(images), None, None
        out = dense_forward(model, images, self.attn, return_image_embed=need_embed, check_tower=False)
        return out.image_embed, out.patch_tokens, out.grid

    def _flat_valid(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        return images[_valid_rows(boxes)]  # (M, 3, S, S) in row-major (b, k) order

    # ---- the step -----------------------------------------------------------------------------------
    def forward(self, batch: Dict[str, Any]) -> Tuple[Dict[str, torch.Tensor], Dict[str, float]]:
        return self.training_forward(batch)

    def training_forward(self, batch: Dict[str, Any]) -> Tuple[Dict[str, torch.Tensor], Dict[str, float]]:
        model = self.model
        g_img = batch["global_image"]
        b = g_img.shape[0]
        dn, rn = self._distill_needs(), self._region_needs()
        need_g_dense = "global_patches" in dn or "global_patches" in rn
        need_g_embed = "global_itc" in self.losses

        # Crops: stage-1 random crops for distillation, stage-2 object crops for the region loss.
        d_crops = r_crops = None
        if "distill" in self.losses:
            d_boxes = batch["subset_boxes"]
            d_crops = self._flat_valid(batch["subset_images"], d_boxes)
        if "region" in self.losses and ({"crop_pooled", "crop_patches"} & rn):
            r_crops = self._flat_valid(batch["local_images"], batch["boxes"])

        feats: Dict[str, Any] = {}
        groups = [("g", g_img, need_g_embed, need_g_dense)]
        if d_crops is not None and self.teacher.targets_require_grad:
            groups.append(("d", d_crops, "crop_pooled" in dn, "crop_patches" in dn))
        if r_crops is not None:
            groups.append(("r", r_crops, "crop_pooled" in rn, "crop_patches" in rn))
        feats.update(self._run_groups(model, groups))
        if d_crops is not None and not self.teacher.targets_require_grad:
            tm = self.teacher.target_model(model)
            with torch.no_grad():
                emb, patches, _ = self._encode(tm, d_crops, "crop_pooled" in dn, "crop_patches" in dn)
            feats["d_embed"], feats["d_patches"] = emb, patches

        logit_scale = model.logit_scale.exp()
        losses: Dict[str, torch.Tensor] = {}
        report: Dict[str, float] = {"logit_scale": float(logit_scale.detach())}
        g_txt, r_txt = self._encode_texts(batch)
        if "global_itc" in self.losses:
            losses.update(self.losses["global_itc"](F.normalize(feats["g_embed"], dim=-1), g_txt, logit_scale))
        if "distill" in self.losses:
            losses.update(self.losses["distill"](
                global_patches=feats["g_patches"], grid=feats["g_grid"], boxes=batch["subset_boxes"],
                crop_patches=feats.get("d_patches"), crop_pooled=feats.get("d_embed")))
            report["distill_crops"] = float(d_crops.shape[0])
        if "region" in self.losses:
            losses.update(self._region_loss(batch, feats, r_txt, logit_scale))
        report["batch_size"] = float(b)
        return losses, report

    def _run_groups(self, model: nn.Module, groups) -> Dict[str, Any]:
        """Encode every group ``(name, images, need_embed, need_dense)``.

        Fused (default): the trunk runs ONCE over all images; the normal last block runs only on the rows
        that need the image embedding and the dense block only on the rows that need dense tokens.
        """
        out: Dict[str, Any] = {}
        for name, _, _, _ in groups:
            out[f"{name}_embed"] = out[f"{name}_patches"] = out[f"{name}_grid"] = None
        live = [g for g in groups if g[1].shape[0] > 0 and (g[2] or g[3])]
        if not live:
            return out
        if not self.fuse or len(live) == 1:
            for name, imgs, ne, nd in live:
                emb, patches, grid = self._encode(model, imgs, ne, nd)
                out.update({f"{name}_embed": emb, f"{name}_patches": patches, f"{name}_grid": grid})
            return out
        images = torch.cat([g[1] for g in live])
        dev = images.device
        spans, start = [], 0
        for g in live:
            spans.append((start, start + g[1].shape[0]))
            start += g[1].shape[0]
        e_idx = [torch.arange(a, b, device=dev) for (a, b), g in zip(spans, live) if g[2]]
        d_idx = [torch.arange(a, b, device=dev) for (a, b), g in zip(spans, live) if g[3]]
        res = dense_forward(model, images, self.attn, return_image_embed=bool(e_idx), return_dense=bool(d_idx),
                            embed_rows=torch.cat(e_idx) if e_idx else None,
                            dense_rows=torch.cat(d_idx) if d_idx else None, check_tower=False)
        e_off = d_off = 0
        for (a, b), (name, _, ne, nd) in zip(spans, live):
            n = b - a
            if ne:
                out[f"{name}_embed"] = res.image_embed[e_off:e_off + n]
                e_off += n
            if nd:
                out[f"{name}_patches"] = res.patch_tokens[d_off:d_off + n]
                out[f"{name}_grid"] = res.grid
                d_off += n
        return out

    def _encode_texts(self, batch: Dict[str, Any]) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Normalised caption and region-prompt embeddings, in ONE text-encoder call when both are needed."""
        parts = []
        if "global_itc" in self.losses:
            parts.append(batch["global_text"])
        if "region" in self.losses:
            parts.append(batch["local_texts"][_valid_rows(batch["boxes"])])
        if not parts:
            return None, None
        sizes = [p.shape[0] for p in parts]
        txt = torch.cat(parts) if len(parts) > 1 else parts[0]
        emb = F.normalize(self.model.encode_text(txt), dim=-1) if txt.shape[0] else None
        chunks = list(emb.split(sizes)) if emb is not None else [None] * len(parts)
        g = chunks.pop(0) if "global_itc" in self.losses else None
        r = chunks.pop(0) if "region" in self.losses else None
        return g, r

    def _region_loss(self, batch: Dict[str, Any], feats: Dict[str, Any], txt: Optional[torch.Tensor],
                     logit_scale: torch.Tensor):
        boxes = batch["boxes"]
        labels = batch["local_categories"][_valid_rows(boxes)]
        region = self.region_head(crop_pooled=feats.get("r_embed"), crop_patches=feats.get("r_patches"),
                                  global_patches=feats.get("g_patches"), grid=feats.get("g_grid"), boxes=boxes)
        if txt is None:
            txt = region.new_zeros(0, region.shape[-1])
        return self.losses["region"](region, txt, logit_scale, labels=labels)

    # ---- hooks for the loop ------------------------------------------------------------------------
    def before_optimizer_step(self) -> None:
        self.teacher.before_optimizer_step(self.model)

    def after_optimizer_step(self) -> None:
        self.teacher.after_optimizer_step(self.model)

    def extra_state(self) -> Dict[str, Any]:
        return {"teacher": self.teacher.state_dict()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        if state.get("teacher"):
            self.teacher.load_state_dict(state["teacher"])
