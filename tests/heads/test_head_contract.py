"""Every registered region head passes the generic head contract (tests/helpers/contracts.py)."""
from __future__ import annotations

import pytest
import torch

from farslip_ext.registry import HEADS
from tests.helpers.contracts import check_head


@pytest.mark.parametrize("name", HEADS.names())
def test_registered_head_contract(name):
    check_head(name, HEADS)


def test_the_contract_catches_a_head_with_the_wrong_row_count():
    from farslip_ext.heads import RegionHead

    @HEADS.register_module()
    class AllBoxesHead(RegionHead):
        required_features = ("boxes", "global_embed")

        def features(self, *, boxes, global_embed, **_):
            return torch.nn.functional.normalize(global_embed.repeat_interleave(boxes.shape[1], 0), dim=-1)

    with pytest.raises(AssertionError):
        check_head("AllBoxesHead", HEADS)
