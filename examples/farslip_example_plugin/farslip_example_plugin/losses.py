import torch

from farslip_ext.registry import LOSSES


@LOSSES.register_module()
class ExampleScaledL2Loss(torch.nn.Module):
    """loss_weight * mean squared difference of two tensors."""

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, a, b):
        return {"example_l2_loss": self.loss_weight * ((a - b) ** 2).mean()}
