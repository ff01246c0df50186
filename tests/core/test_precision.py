"""One precision vocabulary: autocast dtype and weight precision kept apart."""
from __future__ import annotations

import pytest
import torch

from farslip_ext.errors import ConfigError
from farslip_ext.precision import PRECISIONS, parse_precision, training_precision


@pytest.mark.parametrize("value,autocast,weights", [
    ("fp32", None, "fp32"), ("amp_bf16", torch.bfloat16, "fp32"), ("amp_bfloat16", torch.bfloat16, "fp32"),
    ("fp16", None, "fp16"), ("bf16", None, "bf16"), ("pure_bf16", None, "pure_bf16"),
])
def test_table_on_cpu(value, autocast, weights):
    p = parse_precision(value, "cpu")
    assert (p.autocast_dtype, p.weights) == (autocast, weights)


def test_cuda_specific_resolution_without_a_gpu():
    assert parse_precision("amp", "cuda").autocast_dtype == torch.float16  # parsing needs no GPU
    assert parse_precision("amp", "cpu").name == "fp32"  # fp16 autocast is not used on a CPU
    assert parse_precision("auto", "cuda", auto_cuda="fp16").weights == "fp16"
    assert parse_precision("auto", "cpu", auto_cpu="fp32").name == "fp32"
    assert parse_precision("amp_fp16", "cuda").needs_grad_scaler


def test_autocast_context_applies_the_dtype():
    p = parse_precision("amp_bf16", "cpu")
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with p.autocast("cpu"):
        assert (a @ b).dtype == torch.bfloat16
    with parse_precision("fp32").autocast("cpu"):
        assert (a @ b).dtype == torch.float32


def test_errors_name_the_value_and_the_options():
    with pytest.raises(ConfigError, match=r"precision='fp8' is not a precision; accepted: \['auto'"):
        parse_precision("fp8")
    assert set(PRECISIONS) >= {"fp32", "amp", "amp_bf16", "fp16", "bf16"}
    with pytest.raises(ConfigError, match="train.precision='bf16' means bf16 weights.*use amp_bf16"):
        training_precision("bf16")
    assert training_precision("auto", "cpu").name == "fp32"
