"""Tiny open_clip models of each vision-tower family, built offline (no weights, random init).

* ``farslip-test-tiny`` (registry/model_configs): an OpenAI-style open_clip ViT;
* ``farslip-test-timm-vit``: a timm ``VisionTransformer`` trunk with a class token (token pooling, q/k
  norms, layer scale) and open_clip's linear projection head;
* ``farslip-test-timm-siglip``: a SigLIP-like timm trunk: no class token, one register token, attention
  pooling (``map``), no extra projection;
* ``farslip-test-timm-eva``: a timm ``Eva`` trunk as in EVA02-CLIP (rotary positions, SwiGLU, separate
  q/k/v, scale norms).

The timm architectures are the real ones (``vit_base_patch16_clip_224``, ``vit_base_patch16_siglip_224``,
``eva02_base_patch16_clip_224``) with depth 2 and width 32, registered under ``farslip_test_*`` names
because open_clip's ``TimmModel`` passes no model kwargs to timm. :func:`register` registers them and adds
the open_clip configs (tests/fixtures/towers); a training config reaches them with
``custom_imports=dict(imports=['tests.helpers.tiny_towers'])``.
"""
from __future__ import annotations

from pathlib import Path

import open_clip
import timm
from timm.models import is_model, register_model

CONFIG_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "towers"
FAMILIES = {
    "openai": "farslip-test-tiny",
    "timm_vit": "farslip-test-timm-vit",
    "siglip": "farslip-test-timm-siglip",
    "eva": "farslip-test-timm-eva",
}
_TINY = dict(img_size=64, patch_size=16, embed_dim=32, depth=2, num_heads=2)


def _vit_cls(pretrained: bool = False, **kwargs):
    args = dict(_TINY, qk_norm=True, init_values=0.5, dynamic_img_size=True)
    return timm.create_model("vit_base_patch16_clip_224", pretrained=False, **dict(args, **kwargs))


def _vit_map(pretrained: bool = False, **kwargs):
    args = dict(_TINY, reg_tokens=1)
    return timm.create_model("vit_base_patch16_siglip_224", pretrained=False, **dict(args, **kwargs))


def _eva02(pretrained: bool = False, **kwargs):
    args = dict(_TINY, ref_feat_shape=(4, 4))
    return timm.create_model("eva02_base_patch16_clip_224", pretrained=False, **dict(args, **kwargs))


_ARCHS = {"farslip_test_vit_cls": _vit_cls, "farslip_test_vit_map": _vit_map, "farslip_test_eva02": _eva02}


def register() -> None:
    """Register the tiny timm trunks (once per process) and add the open_clip configs (again after each test's
    global-state reset)."""
    for name, fn in _ARCHS.items():
        if not is_model(name):
            fn.__name__ = name
            register_model(fn)
    open_clip.add_model_config(CONFIG_DIR)


register()
