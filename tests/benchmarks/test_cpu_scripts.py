"""The CPU benchmark scripts that the performance page quotes, run with the tiny architecture so that they
are never broken. Only the records' presence and consistency are checked; times are never asserted."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str, tmp_path: Path) -> list:
    env = dict(os.environ, HF_HUB_OFFLINE="1", FARSLIP_CACHE=str(tmp_path))
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def test_trim_compare_interleaves_padded_and_trimmed_steps(tmp_path):
    recs = _run("train_throughput.py", "--arch", "farslip-test-tiny", "--stages", "2", "--batch", "2", "--crops",
                "2", "--steps", "3", "--precision", "fp32", "--no-reference", "--trim-compare", "--caption-tokens",
                "20", "--prompt-tokens", "6", tmp_path=tmp_path)
    (rec,) = [r for r in recs if r.get("case") == "trim_compare"]
    assert (rec["caption_tokens"], rec["prompt_tokens"], rec["context"]) == (20, 6, 77)  # the lengths asked for
    assert len(rec["all_padded_s"]) == len(rec["all_trimmed_s"]) == 3
    ratios = sorted(p / t for p, t in zip(rec["all_padded_s"], rec["all_trimmed_s"]))
    # the median of the per-round ratios (the listed times are rounded to 1 ms: a loose bound)
    assert ratios[0] * 0.9 <= rec["speedup"] <= ratios[-1] * 1.1 and abs(rec["speedup"] / ratios[1] - 1) < 0.15


def test_profile_step_accounts_for_the_step_by_group(tmp_path):
    recs = _run("profile_step.py", "--arch", "farslip-test-tiny", "--stage", "1", "--precisions", "fp32,bf16",
                "--top", "5", tmp_path=tmp_path)
    head, *rows = recs
    assert head["bench"] == "profile_step" and head["matmul_peak_gflops"]["fp32"] > 0
    assert [r["precision"] for r in rows] == ["fp32", "bf16"]
    for r in rows:
        assert r["seconds"]["matmul"] > 0 and r["seconds"]["optimizer"] > 0  # matmuls and fused AdamW were seen
        assert abs(sum(r["fraction"].values()) - 1.0) < 0.01
        assert abs(sum(r["seconds"].values()) - r["profiled_aten_s"]) < 0.01
        assert len(r["top_ops"]) == 5 and all(op[0].startswith("aten::") for op in r["top_ops"])
