"""Component registries in the MMSegmentation style, on mmengine's :class:`~mmengine.registry.Registry`.

Every node has the scope ``farslip_ext``. Components register with a decorator that runs when their
module is imported (``@LOSSES.register_module()``) and are built from ``dict(type=...)`` configs::

    from farslip_ext.registry import LOSSES
    loss = LOSSES.build(dict(type="PatchDistillLoss", align="roi2pooled"))

Each registry finds its built-in components through mmengine's own ``locations``: the first lookup
imports only the subpackage that defines them (``LOSSES`` imports ``farslip_ext.losses``, nothing
else) and :mod:`farslip_ext.plugins.components`, which registers third-party plugins' components.

Two conveniences on top of mmengine, both to make configs hard to get wrong:

* ``build`` always resolves inside the ``farslip_ext`` scope (mmengine's ``_scope_`` key), so it works
  while a process-global default scope (``mmseg`` after any mmseg ``Runner``) is active;
* an unknown ``type`` raises a :class:`KeyError` naming the registry, the close matches and how to
  register a new component, instead of mmengine's generic message.

This module imports only ``mmengine.registry`` (mmengine imports ``<scope>.registry`` whenever the
scope is active, so it must stay cheap).
"""
from __future__ import annotations

import difflib
from typing import Any, Dict, List, Sequence

from mmengine.registry import Registry

__all__ = [
    "SCOPE",
    "FarSLIPRegistry",
    "LOSSES",
    "HEADS",
    "TEACHERS",
    "DENSE_ATTN",
    "TRAIN_DATASETS",
    "EVAL_DATASETS",
    "SAMPLE_TRANSFORMS",
    "TASKS",
    "TEMPLATES",
    "ALL_REGISTRIES",
]

SCOPE = "farslip_ext"
PLUGIN_COMPONENTS = "farslip_ext.plugins.components"


class FarSLIPRegistry(Registry):
    """An mmengine ``Registry`` that builds in its own scope and explains unknown names.

    Args:
        name: registry name (used in messages).
        var: the module-level variable name (``LOSSES``), for the "how to register" hint.
        doc: one line on what the registry holds.
        locations: modules that define the built-in components (imported on the first lookup).
    """

    def __init__(self, name: str, var: str, doc: str, locations: Sequence[str]) -> None:
        super().__init__(name, scope=SCOPE, locations=list(locations) + [PLUGIN_COMPONENTS])
        self.var = var
        self.doc = doc

    def _unknown(self, name: str) -> KeyError:
        names = sorted(self.module_dict)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return KeyError(
            f"{name!r} is not registered in the farslip_ext '{self.name}' registry ({self.var}).{hint} "
            f"Registered: {names}. To add one, decorate a class with "
            f"@farslip_ext.registry.{self.var}.register_module() in a module that is imported (or shipped as a "
            f"farslip_ext plugin entry point).")

    def build(self, cfg: Any, *args: Any, **kwargs: Any) -> Any:
        """Build ``cfg`` (a ``dict(type=...)`` or mmengine ``ConfigDict``) in the ``farslip_ext`` scope."""
        if not isinstance(cfg, dict):
            raise TypeError(f"{self.name} registry: a config must be a dict with a 'type' key, got "
                            f"{type(cfg).__name__}: {cfg!r}")
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

    def names(self) -> List[str]:
        """Sorted names of everything registered (after the lazy imports)."""
        self.import_from_location()
        return sorted(self.module_dict)


LOSSES = FarSLIPRegistry("loss", "LOSSES", "training losses; each returns a dict of '<term>_loss' tensors",
                         ["farslip_ext.losses"])
HEADS = FarSLIPRegistry("head", "HEADS", "region-alignment heads: region features from a batch",
                        ["farslip_ext.heads"])
TEACHERS = FarSLIPRegistry("teacher", "TEACHERS", "distillation teachers: active, ema, frozen",
                           ["farslip_ext.teachers"])
DENSE_ATTN = FarSLIPRegistry("dense_attn", "DENSE_ATTN", "last-block dense attention variants (SegEarth, MaskCLIP ...)",
                             ["farslip_ext.models.dense_attn"])
TRAIN_DATASETS = FarSLIPRegistry("train_dataset", "TRAIN_DATASETS", "training data formats (RS5M, MGRS-200k, CSV ...)",
                                 ["farslip_ext.data"])
EVAL_DATASETS = FarSLIPRegistry("eval_dataset", "EVAL_DATASETS",
                                "zero-shot classification and retrieval benchmark datasets",
                                ["farslip_ext.evaluation.csv_datasets"])
SAMPLE_TRANSFORMS = FarSLIPRegistry("sample_transform", "SAMPLE_TRANSFORMS",
                                    "training-sample transforms (multi-crop, colour jitter, region crops)",
                                    ["farslip_ext.data"])
TASKS = FarSLIPRegistry("task", "TASKS", "training tasks: turn a batch into losses", ["farslip_ext.train.task"])
TEMPLATES = FarSLIPRegistry("template", "TEMPLATES", "prompt template sets for zero-shot classification and OVSS",
                            ["farslip_ext.evaluation.templates"])

ALL_REGISTRIES: Dict[str, FarSLIPRegistry] = {
    r.var: r for r in (LOSSES, HEADS, TEACHERS, DENSE_ATTN, TRAIN_DATASETS, EVAL_DATASETS, SAMPLE_TRANSFORMS, TASKS,
                       TEMPLATES)
}
