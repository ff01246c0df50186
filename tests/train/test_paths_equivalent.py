"""The optimised training step and the reference-style execution path give the same losses and
gradients (fp32, tolerance 1e-5 relative); benchmarks/train_throughput.py compares their speed."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from farslip_ext.registry import TASKS

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "train_throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_throughput", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("stage", [1, 2])
@pytest.mark.parametrize("fuse", [True, False])
def test_task_matches_reference_style_path(bench, stage, fuse):
    batch = bench.make_batch(stage, b=3, k=2, size=64, ctx=77, seed=stage)
    batch["subset_boxes" if stage == 1 else "boxes"][1, 1, 4] = 0.0  # one padded crop
    ref_model, our_model = bench.build("farslip-test-tiny", seed=5), bench.build("farslip-test-tiny", seed=5)
    ref = bench.ReferenceStyleStep(ref_model, stage).losses(batch)
    cfg = dict(bench.task_config(stage), fuse_encoder_calls=fuse)
    ours, _ = TASKS.build(cfg, default_args=dict(model=our_model))(batch)
    assert set(ref) == set(ours)
    for k in ref:
        torch.testing.assert_close(ours[k], ref[k], rtol=1e-5, atol=1e-6)
    sum(ref.values()).backward()
    sum(ours.values()).backward()
    gr, go = _grads(ref_model), _grads(our_model)
    assert gr.keys() == go.keys()
    for k in gr:
        torch.testing.assert_close(go[k], gr[k], rtol=1e-4, atol=1e-6)
