"""The one device resolver, shared by the loader, evaluators, the segmentor and the training loop."""
from __future__ import annotations

from typing import Optional, Union

import torch

from farslip_ext.errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(device: Union[None, str, torch.device] = None, local_rank: Optional[int] = None) -> torch.device:
    """``None``/``"auto"``: CUDA when available (``cuda:<local_rank>`` under torchrun), else CPU.

    An explicit CUDA device without CUDA is a :class:`~farslip_ext.errors.ConfigError`.
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank) if local_rank is not None else torch.device("cuda")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"device={device!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:<index>'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={str(device)!r} but CUDA is not available here; use device 'cpu' or 'auto'")
    return dev
