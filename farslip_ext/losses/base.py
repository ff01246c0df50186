"""The loss contract: declare the features you read, return a dict of ``*_loss`` terms.

A loss is any ``LOSSES`` class (usually an ``nn.Module``) with

* ``required_features``: a tuple of names from the feature vocabulary (:mod:`farslip_ext.train.features`);
  the training task computes exactly the union of what its losses and head declare;
* ``forward(**features)``: called with those features as keyword arguments, returns
  ``{"<term>_loss": scalar tensor, ...}`` (other keys: scalars that are logged, not summed). A loss that
  keeps another ``forward`` signature (the built-ins do, for direct use) defines
  ``forward_features(features)`` instead;
* ``example_inputs()`` (classmethod): ``(constructor kwargs, features)`` that the generic contract test
  (tests/losses/test_loss_contract.py) runs it on. :class:`FeatureLoss` provides one from
  :func:`farslip_ext.train.features.example_features`.

Its parameters (a learnable temperature, a projection) are trained with the model, saved in the
training checkpoint (``task_state``) and kept out of the exported open_clip weights. The config entry's
``weight`` scales its terms (for the built-ins it is their ``loss_weight``).
"""
from __future__ import annotations

from typing import Any, ClassVar, Dict, Tuple

from torch import nn

__all__ = ["FeatureLoss"]


class FeatureLoss(nn.Module):
    """Optional base class of a loss (see the module docstring)."""

    required_features: ClassVar[Tuple[str, ...]] = ()

    @classmethod
    def example_inputs(cls) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """``(kwargs, features)``: build ``cls(**kwargs)`` and call it on ``features``."""
        from farslip_ext.train.features import example_features

        return {}, example_features()
