"""benchmarks/gpu.sh, the one-GPU readiness run, on a CPU with the tiny architectures: it must never be broken
when a GPU becomes available. Only the records' presence and sanity are checked; times are never asserted."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_script_runs_every_case_on_cpu_with_a_tiny_model(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, HF_HUB_OFFLINE="1", FARSLIP_CACHE=str(tmp_path))
    # aot_eager: dynamo + AOTAutograd as on the GPU, without inductor's C++ build (minutes on 2 cores)
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--tiny", "--device", "cpu",
                          "--compile-backend", "aot_eager", "--budget-s", "1e9"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    recs = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    head = recs[0]
    assert head["bench"] == "gpu" and head["device"] == "cpu" and head["bf16_peak_tflops"]["measured"] > 0
    train = [r for r in recs if r.get("case") == "train"]
    assert {(r["stage"], r["grad_ckpt"]) for r in train} == {(1, False), (1, True), (2, False), (2, True)}
    for r in train:
        assert r["compile"] == "aot_eager" and r["precision"] == "bf16" and r["fused"] is True
        assert r["finite"] and r["pairs_per_s"] > 0 and r["model_tflops_per_step"] > 0 and r["mfu"] > 0
        assert r["images_per_s"] > r["pairs_per_s"]  # the crops are counted as images
    # gradient checkpointing recomputes, it does not change the maths: same loss at the same step
    by = {(r["stage"], r["grad_ckpt"]): r["loss"] for r in train}
    assert abs(by[(1, False)] - by[(1, True)]) < 2e-3 and abs(by[(2, False)] - by[(2, True)]) < 2e-3
    ovss = {r["precision"]: r for r in recs if r.get("case") == "ovss"}
    assert set(ovss) == {"fp32", "bf16"}
    assert ovss["fp32"]["windows"] == 2 * 9 and ovss["fp32"]["prompts"] == 6 * 80  # 128² images, 64/32 windows
    assert all(r["images_per_s"] > 0 for r in ovss.values())
    assert 0.0 <= ovss["bf16"]["label_agreement_vs_fp32"] <= 1.0
    assert recs[-1]["case"] == "done" and not [r for r in recs if r.get("case") == "skipped"]
