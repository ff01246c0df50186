"""QuickGELU checks (open_clip#771: OpenAI-initialised weights silently evaluated with nn.GELU).

Every FarSLIP checkpoint is fine-tuned from OpenAI CLIP, which was trained with QuickGELU. Loading such
weights into a model built with ``nn.GELU`` gives subtly wrong features and no error, so farslip_ext
warns loudly whenever it loads weights into a non-QuickGELU model.
"""
from __future__ import annotations

import logging
import warnings

from torch import nn

__all__ = ["QuickGELUWarning", "uses_quick_gelu", "warn_if_not_quick_gelu"]

logger = logging.getLogger(__name__)


class QuickGELUWarning(UserWarning):
    """OpenAI-initialised weights are being used with a non-QuickGELU activation."""


def uses_quick_gelu(model: nn.Module) -> bool:
    """True when every MLP activation of the model is open_clip's ``QuickGELU``."""
    from open_clip.transformer import QuickGELU

    acts = [m for name, m in model.named_modules() if name.endswith("mlp.gelu")]
    return bool(acts) and all(isinstance(a, QuickGELU) for a in acts)


def warn_if_not_quick_gelu(model: nn.Module, source: str) -> bool:
    """Warn (``QuickGELUWarning`` + an error-level log) if ``model`` does not use QuickGELU. Returns True if warned."""
    if uses_quick_gelu(model):
        return False
    msg = (f"loading OpenAI-initialised weights ({source}) into a model whose MLPs use nn.GELU; these weights were "
           f"trained with QuickGELU and will give wrong features (open_clip#771). Use a QuickGELU architecture "
           f"(farslip-*, *-quickgelu) or pass force_quick_gelu=True.")
    logger.error(msg)
    warnings.warn(msg, QuickGELUWarning, stacklevel=3)
    return True
