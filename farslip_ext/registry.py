"""Component registries in the MMSegmentation style, on mmengine's :class:`~mmengine.registry.Registry`.

Every node has the scope ``farslip_ext``. Components register with a decorator that runs at import
time (``@LOSSES.register_module()``) and are built from ``dict(type=...)`` configs::

    from farslip_ext.registry import LOSSES
    loss = LOSSES.build(dict(type="PatchDistillLoss", align="roi2pooled"))

Two things differ from a plain mmengine registry, both to make configs hard to get wrong:

* ``build`` always resolves inside the ``farslip_ext`` scope, so it works while a process-global
  mmengine default scope (``mmseg`` after any mmseg ``Runner``) is active. Plain mmengine would
  redirect the lookup into the mmseg tree and fail.
* An unknown ``type`` raises a :class:`KeyError` naming the registry, the close matches and how to
  register a new component, instead of mmengine's generic message.

Registration of the built-in components (and of third-party plugins) happens lazily, the first time
a registry is searched, through the pluggy hooks in :mod:`farslip_ext.plugins`. This module only
imports ``mmengine.registry`` (mmengine imports ``<scope>.registry`` whenever the scope is active,
so it must stay cheap).
"""
from __future__ import annotations

import difflib
from typing import Any, Dict, Optional, Type

from mmengine.registry import Registry

__all__ = [
    "SCOPE",
    "FarSLIPRegistry",
    "LOSSES",
    "HEADS",
    "TEACHERS",
    "DENSE_ATTN",
    "DATASETS",
    "TRANSFORMS",
    "TASKS",
    "TEMPLATES",
    "ALL_REGISTRIES",
]

SCOPE = "farslip_ext"


class FarSLIPRegistry(Registry):
    """An mmengine ``Registry`` that builds in its own scope and explains unknown names."""

    def __init__(self, name: str, doc: str = "") -> None:
        super().__init__(name, scope=SCOPE)
        self.doc = doc

    # mmengine calls this once, lazily, from ``get()``; we use it to run the plugin hooks.
    def import_from_location(self) -> None:  # noqa: D401 - mmengine API
        if self._imported:
            return
        self._imported = True
        from farslip_ext.plugins import ensure_components_registered

        ensure_components_registered()

    def _unknown(self, name: str) -> KeyError:
        names = sorted(self.module_dict)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return KeyError(
            f"{name!r} is not registered in the farslip_ext '{self.name}' registry.{hint} "
            f"Registered: {names}. To add one, decorate a class with "
            f"@farslip_ext.registry.{_VARNAME.get(self.name, self.name.upper())}.register_module() in a module "
            f"that is imported (or shipped as a farslip_ext plugin entry point)."
        )

    def get(self, key: str) -> Optional[Type]:
        self.import_from_location()
        if isinstance(key, str) and "." in key:
            scope, _, real = key.partition(".")
            if scope == SCOPE:
                key = real
        return self._module_dict.get(key) if isinstance(key, str) else super().get(key)

    def build(self, cfg: Any, *args: Any, **kwargs: Any) -> Any:
        """Build ``cfg`` (a ``dict(type=...)`` or mmengine ``ConfigDict``) in the ``farslip_ext`` scope."""
        if not isinstance(cfg, dict):
            raise TypeError(
                f"{self.name} registry: a config must be a dict with a 'type' key, got {type(cfg).__name__}: {cfg!r}"
            )
        if "type" not in cfg:
            raise KeyError(f"{self.name} registry: config {dict(cfg)!r} has no 'type' key")
        cfg = dict(cfg)
        typ = cfg["type"]
        if isinstance(typ, str):
            cls = self.get(typ)
            if cls is None:
                raise self._unknown(typ)
            cfg["type"] = cls
        # Resolve in our own scope even when another default scope (e.g. mmseg) is active.
        cfg["_scope_"] = SCOPE
        return super().build(cfg, *args, **kwargs)

    def names(self) -> list:
        """Sorted names of everything registered (after running the registration hooks)."""
        self.import_from_location()
        return sorted(self.module_dict)


LOSSES = FarSLIPRegistry("loss", "training losses; each returns a dict of '<term>_loss' tensors")
HEADS = FarSLIPRegistry("head", "region-alignment heads: region features from a batch")
TEACHERS = FarSLIPRegistry("teacher", "distillation teachers: active, ema, frozen")
DENSE_ATTN = FarSLIPRegistry("dense_attn", "last-block dense attention variants (SegEarth, MaskCLIP ...)")
DATASETS = FarSLIPRegistry("dataset", "training and evaluation datasets")
TRANSFORMS = FarSLIPRegistry("transform", "data transforms (multi-crop, colour jitter, region crops)")
TASKS = FarSLIPRegistry("task", "training tasks: turn a batch into losses")
TEMPLATES = FarSLIPRegistry("template", "prompt template sets for zero-shot classification and OVSS")

_VARNAME = {
    "loss": "LOSSES",
    "head": "HEADS",
    "teacher": "TEACHERS",
    "dense_attn": "DENSE_ATTN",
    "dataset": "DATASETS",
    "transform": "TRANSFORMS",
    "task": "TASKS",
    "template": "TEMPLATES",
}

ALL_REGISTRIES: Dict[str, FarSLIPRegistry] = {
    _VARNAME[r.name]: r for r in (LOSSES, HEADS, TEACHERS, DENSE_ATTN, DATASETS, TRANSFORMS, TASKS, TEMPLATES)
}
