"""One precision vocabulary for every command and config, keeping autocast and weight dtype apart.

=============  =======================  ==================  =========================================
value          weights                  autocast            notes
=============  =======================  ==================  =========================================
``fp32``       float32                  none
``amp``        float32                  float16             ``amp_fp16`` is the same; training adds a
                                                            GradScaler (the reference's ``--precision amp``)
``amp_bf16``   float32                  bfloat16            ``amp_bfloat16`` is the same
``fp16``       float16 (matmul layers)  none                open_clip's mixed low-precision weights
``bf16``       bfloat16 (matmul layers) none                (LayerNorms stay float32); inference only
``pure_fp16``  float16 (everything)     none                inference only
``pure_bf16``  bfloat16 (everything)    none                inference only
``auto``       per device               per device          each caller names its CUDA default
=============  =======================  ==================  =========================================

The weight column is exactly open_clip's ``create_model(precision=...)`` vocabulary, so a value
means the same here as in open_clip. On a CPU, float16 autocast is not used (it is slow there and
not what any reference runs): ``amp`` falls back to fp32 with a log line; bfloat16 autocast runs.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import ContextManager, Optional, Union

import torch

from farslip_ext.errors import ConfigError

__all__ = ["PRECISIONS", "Precision", "parse_precision", "training_precision"]

logger = logging.getLogger(__name__)

_ALIASES = {"amp_fp16": "amp", "amp_bfloat16": "amp_bf16"}
#: name -> (autocast dtype, open_clip weight precision)
_TABLE = {
    "fp32": (None, "fp32"),
    "amp": (torch.float16, "fp32"),
    "amp_bf16": (torch.bfloat16, "fp32"),
    "fp16": (None, "fp16"),
    "bf16": (None, "bf16"),
    "pure_fp16": (None, "pure_fp16"),
    "pure_bf16": (None, "pure_bf16"),
}
#: Every accepted value (aliases included).
PRECISIONS = ("auto",) + tuple(_TABLE) + tuple(_ALIASES)


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` from :data:`PRECISIONS` (no ``auto``), the autocast dtype (None:
    no autocast) and the open_clip weight precision string."""

    name: str
    autocast_dtype: Optional[torch.dtype]
    weights: str

    @property
    def weight_dtype(self) -> torch.dtype:
        return {"fp32": torch.float32, "fp16": torch.float16, "pure_fp16": torch.float16}.get(
            self.weights, torch.bfloat16)

    @property
    def trainable(self) -> bool:
        """Full-precision master weights (what an optimizer step needs)."""
        return self.weights == "fp32"

    @property
    def needs_grad_scaler(self) -> bool:
        return self.autocast_dtype == torch.float16

    def autocast(self, device: Union[str, torch.device]) -> ContextManager:
        """The autocast context on ``device`` (a no-op without an autocast dtype)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(device).type, dtype=self.autocast_dtype)

    def __str__(self) -> str:
        return self.name


def parse_precision(value: Union[str, Precision, None], device: Union[str, torch.device, None] = None, *,
                    auto_cuda: str = "amp", auto_cpu: str = "fp32", what: str = "precision") -> Precision:
    """Resolve ``value`` (see the module table) for ``device``.

    ``auto`` becomes ``auto_cuda`` on CUDA and ``auto_cpu`` elsewhere; on a CPU, ``amp`` (float16
    autocast) becomes ``fp32``. An unknown value is a :class:`~farslip_ext.errors.ConfigError` listing
    the accepted ones.
    """
    if isinstance(value, Precision):
        name = value.name
    else:
        name = "auto" if value is None else str(value).strip().lower()
    name = _ALIASES.get(name, name)
    if name not in PRECISIONS:
        raise ConfigError(f"{what}={value!r} is not a precision; accepted: {list(PRECISIONS)} (amp = fp16 autocast, "
                          f"amp_bf16 = bf16 autocast, fp16/bf16 = low-precision weights)")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if name == "auto":
        name = _ALIASES.get(auto_cuda if dev.type == "cuda" else auto_cpu, auto_cuda if dev.type == "cuda" else auto_cpu)
    if name == "amp" and dev.type != "cuda":
        logger.info("%s=amp (float16 autocast) has no effect on %s; running fp32", what, dev)
        name = "fp32"
    autocast_dtype, weights = _TABLE[name]
    return Precision(name, autocast_dtype, weights)


def training_precision(value: Union[str, Precision, None], device: Union[str, torch.device, None] = None) -> Precision:
    """The precision of a training run: autocast over float32 master weights (``auto``: bf16 autocast on
    CUDA, fp32 on a CPU). Low-precision weights cannot be trained, so they are a clear error."""
    prec = parse_precision(value, device, auto_cuda="amp_bf16", auto_cpu="fp32", what="train.precision")
    if not prec.trainable:
        raise ConfigError(f"train.precision={value!r} means {prec.weights} weights, which the trainer cannot update; "
                          f"use amp_bf16 (bf16 autocast over fp32 weights), amp (fp16 autocast + GradScaler) or fp32")
    return prec
