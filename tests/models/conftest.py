"""Fixtures shared by the dense-feature tests."""
import open_clip
import pytest
import torch


@pytest.fixture(scope="module")
def tiny():
    """``farslip-test-tiny`` with every weight perturbed (LayerNorms and biases too) so that mistakes cannot hide."""
    torch.manual_seed(0)
    model = open_clip.create_model("farslip-test-tiny").eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model
