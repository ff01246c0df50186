"""Every registered dense-attention variant (aliases included) against an explicit per-head loop over the
block's weights, with and without the residual path (tests/helpers/contracts.py holds the independent
formulas; a variant outside farslip_ext brings its own ``reference_weights``)."""
from __future__ import annotations

import pytest
import torch

from farslip_ext.models import DenseAttention
from farslip_ext.registry import DENSE_ATTN
from tests.helpers.contracts import check_dense_variant, variant_weights


@pytest.mark.parametrize("ignore_residual", [True, False])
@pytest.mark.parametrize("name", DENSE_ATTN.names())
def test_registered_variant_matches_loops(tiny, name, ignore_residual):
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    check_dense_variant(name, DENSE_ATTN, tiny, images, ignore_residual)


def test_a_new_variant_is_one_class_and_is_checked_by_its_reference(tiny):
    @DENSE_ATTN.register_module(name="TestKQ")
    class KQAttention(DenseAttention):
        name = "TestKQ"

        def mix(self, q, k, v, grid):
            return torch.nn.functional.scaled_dot_product_attention(k, q, v)

        @staticmethod
        def reference_weights(q, k, v, grid):
            return torch.softmax(k @ q.T / q.shape[-1] ** 0.5, dim=-1)

    images = torch.randn(1, 3, 64, 64)
    check_dense_variant("TestKQ", DENSE_ATTN, tiny, images, True)

    @DENSE_ATTN.register_module(name="TestWrong")
    class Wrong(KQAttention):  # mix and reference disagree: the check must fail
        name = "TestWrong"

        @staticmethod
        def reference_weights(q, k, v, grid):
            return torch.softmax(q @ k.T / q.shape[-1] ** 0.5, dim=-1)

    with pytest.raises(AssertionError):
        check_dense_variant("TestWrong", DENSE_ATTN, tiny, images, True)


def test_a_variant_without_a_reference_is_reported():
    @DENSE_ATTN.register_module(name="TestNoRef")
    class NoRef(DenseAttention):
        def mix(self, q, k, v, grid):
            return v

    with pytest.raises(AssertionError, match="reference_weights"):
        variant_weights(NoRef)
