"""Device selection shared by the evaluators, the segmentor and the training loop."""
from __future__ import annotations

from typing import Union

import torch

__all__ = ["resolve_device"]


def resolve_device(device: Union[None, str, torch.device] = None) -> torch.device:
    """``None``/``"auto"``: CUDA when available, else CPU. A CUDA request without CUDA is an error."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={str(device)!r} but CUDA is not available here; use device 'cpu' or 'auto'")
    return dev
