"""Every registered loss passes the generic loss contract (tests/helpers/contracts.py): declared features
from the vocabulary, only those read, '*_loss' scalar terms, gradients into its inputs and its own
parameters, deterministic, scaled by the config entry's weight."""
from __future__ import annotations

import pytest
import torch

from farslip_ext.registry import LOSSES
from tests.helpers.contracts import check_loss


@pytest.mark.parametrize("name", LOSSES.names())
def test_registered_loss_contract(name):
    check_loss(name, LOSSES)


def test_the_contract_catches_a_loss_that_ignores_a_parameter():
    from farslip_ext.losses import FeatureLoss

    @LOSSES.register_module()
    class UnusedParameterLoss(FeatureLoss):
        required_features = ("global_embed",)

        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))  # never used: would silently never train

        def forward(self, global_embed):
            return {"x_loss": global_embed.square().mean()}

    with pytest.raises(AssertionError, match="gets no gradient"):
        check_loss("UnusedParameterLoss", LOSSES)


def test_the_contract_catches_a_loss_reading_an_undeclared_feature():
    from farslip_ext.losses import FeatureLoss

    @LOSSES.register_module()
    class SneakyLoss(FeatureLoss):
        required_features = ("global_embed",)

        def forward_features(self, f):
            return {"x_loss": (f["global_embed"] * f["global_text_embed"]).mean()}

    with pytest.raises(KeyError, match="global_text_embed"):
        check_loss("SneakyLoss", LOSSES)
