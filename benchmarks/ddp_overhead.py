"""Communication overhead of DDP: the same per-rank step with 1 process and with N gloo/NCCL processes.

    .venv/bin/python benchmarks/ddp_overhead.py --arch farslip-test-tiny --batch 8 --steps 6 --nproc 2

Runs the real training loop (``farslip train``) on fabricated in-memory data, once as a single process
and once under ``torch.distributed.run`` with ``--nproc`` processes at the same per-rank batch, and
reports the median step time of each (from the loop's own metrics.csv samples/s) and the overhead
ratio. On a CPU machine both processes share the cores, so the ratio there bounds compute contention
plus communication; on a multi-GPU node it isolates the all-reduce and feature all-gather cost.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _config(path: Path, work: Path, arch: str, batch: int, steps: int, n: int, device: str) -> Path:
    path.write_text(textwrap.dedent(f"""
        custom_imports = dict(imports=['tests.helpers.fake_data'], allow_failed_imports=False)
        model = dict(name='{arch}', pretrained=None)
        task = dict(type='FarSLIPTask', losses=dict(global_itc=dict(type='GlobalITCLoss'),
                    distill=dict(type='PatchDistillLoss', loss_weight=0.1)))
        data = dict(train=dict(type='FakeFarSLIPData', n={n}, stage=1), batch_size={batch}, num_workers=0,
                    pin_memory=False)
        optim = dict(lr=1e-4, weight_decay=0.2)
        schedule = dict(epochs=1, warmup_steps=1, max_steps={steps})
        train = dict(work_dir=r'{work}', device='{device}', precision='fp32', save_every_steps=100000,
                     log_every=1, progress=False, resume='none')
    """))
    return path


def _step_times(work: Path, batch: int, world: int) -> list:
    rows = list(csv.DictReader(open(work / "metrics.csv")))[1:]  # drop the first (warm-up) step
    return [batch * world / float(r["samples_per_s"]) for r in rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="farslip-test-tiny")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu (gloo) or auto (NCCL on GPUs)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="farslip-ddp-"))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 2) // args.nproc)))
    n = args.batch * args.nproc * (args.steps + 1)
    res = {}
    for world in (1, args.nproc):
        work = tmp / f"w{world}"
        cfg = _config(tmp / f"cfg{world}.py", work, args.arch, args.batch, args.steps, n, args.device)
        cmd = [sys.executable, "-m", "farslip_ext.cli", "train", str(cfg)]
        if world > 1:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(world),
                   "--master-port", "29533", "-m", "farslip_ext.cli", "train", str(cfg)]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
        if out.returncode != 0:
            raise SystemExit(out.stderr[-3000:])
        res[world] = statistics.median(_step_times(work, args.batch, world))
        print(json.dumps({"bench": "ddp_overhead", "world_size": world, "per_rank_batch": args.batch,
                          "arch": args.arch, "median_step_s": round(res[world], 4)}), flush=True)
    print(json.dumps({"bench": "ddp_overhead", "ratio_step_time": round(res[args.nproc] / res[1], 3),
                      "note": "same per-rank batch; >1 = slower per step with more ranks"}), flush=True)


if __name__ == "__main__":
    main()
