"""docs/extending.md is executable: its Python blocks run in order in one namespace (the registrations they
make are undone after the test), and the components it adds pass the generic contracts."""
from __future__ import annotations

import re
from pathlib import Path

import torch

from farslip_ext.registry import DENSE_ATTN, HEADS, LOSSES
from tests.helpers.contracts import check_dense_variant, check_head, check_loss

DOC = Path(__file__).resolve().parents[2] / "docs" / "extending.md"


def _blocks():
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_every_python_block_of_extending_md_runs():
    blocks = _blocks()
    assert len(blocks) >= 8
    ns: dict = {"__name__": "docs_extending"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{DOC.name}[block {i}]", "exec"), ns)
        except Exception as e:  # pragma: no cover - the message names the block
            raise AssertionError(f"block {i} of docs/extending.md failed: {type(e).__name__}: {e}\n{code}") from e
    check_loss("AlignmentLoss", LOSSES)
    check_head("ProjectedCropHead", HEADS)
    check_dense_variant("KK", DENSE_ATTN, ns["model"], torch.randn(1, 3, 64, 64), True)
