"""The training loop: CLI, open_clip-loadable checkpoints, exact resume after SIGKILL, NaN stop, DDP."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from farslip_ext.train.checkpoint import atomic_save
import tests.helpers.fake_data  # noqa: F401,E402  (registered before the registry snapshots)

REPO = Path(__file__).resolve().parents[2]
TINY_JSON = REPO / "registry" / "model_configs" / "farslip-test-tiny.json"


def write_config(path: Path, work_dir: Path, stage: int = 0, arch: str = "farslip-test-tiny", n: int = 16,
                 batch: int = 4, epochs: int = 2, save_every: int = 1, extra_data: str = "", lr: float = 1e-3,
                 precision: str = "fp32", losses: str = "", warmup: int = 2) -> Path:
    losses = losses or {
        0: "dict(global_itc=dict(type='GlobalITCLoss'))",
        1: "dict(global_itc=dict(type='GlobalITCLoss'), distill=dict(type='PatchDistillLoss', loss_weight=0.1))",
        2: "dict(global_itc=dict(type='GlobalITCLoss'), region=dict(type='RegionCategoryLoss'))",
    }[stage]
    path.write_text(textwrap.dedent(f"""
        custom_imports = dict(imports=['tests.helpers.fake_data'], allow_failed_imports=False)
        model = dict(name='{arch}', pretrained=None)
        task = dict(type='FarSLIPTask', losses={losses})
        data = dict(train=dict(type='FakeFarSLIPData', n={n}, stage={stage}{extra_data}), batch_size={batch},
                    num_workers=0, pin_memory=False)
        optim = dict(lr={lr}, weight_decay=0.2, impl='foreach')
        schedule = dict(epochs={epochs}, warmup_steps={warmup})
        train = dict(work_dir=r'{work_dir}', device='cpu', precision='{precision}', seed=0,
                     save_every_steps={save_every}, log_every=1, progress=False)
    """))
    return path


def run_cli(cfg: Path, *extra: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "farslip_ext.cli", "train", str(cfg), *extra],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def _weights(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_train_writes_open_clip_checkpoints_config_and_metrics(tmp_path):
    from farslip_ext.cli import main

    cfg = write_config(tmp_path / "cfg.py", tmp_path / "run")
    assert main(["train", str(cfg), "--cfg-options", "optim.lr=5e-4"]) == 0
    ck = tmp_path / "run" / "checkpoints"
    assert (ck / "final.pt").is_file() and (ck / "latest.pt").is_file() and (ck / "config.py").is_file()
    state = torch.load(ck / "final.pt", weights_only=True)
    assert state["step"] == 8 and state["config"]["optim"]["lr"] == 5e-4
    rows = (tmp_path / "run" / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("step,epoch,lr,samples_per_s,loss,global_itc_loss") and len(rows) == 9
    # stock open_clip (no farslip_ext import) loads the checkpoint strictly
    code = textwrap.dedent(f"""
        import sys, open_clip, torch
        open_clip.add_model_config(r'{TINY_JSON}')
        m = open_clip.create_model('farslip-test-tiny', pretrained=r'{ck / "final.pt"}')
        assert 'farslip_ext' not in sys.modules
        print(float(m.logit_scale))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert abs(float(out.stdout.strip()) - float(state["state_dict"]["logit_scale"])) < 1e-6


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0)).tolist()
    kill_index = perm[9]  # third batch of the first epoch: two steps are done and checkpointed
    marker = tmp_path / "killed"
    ref_cfg = write_config(tmp_path / "ref.py", tmp_path / "ref")
    cfg = write_config(tmp_path / "cfg.py", tmp_path / "run",
                       extra_data=f", kill_at={kill_index}, kill_marker=r'{marker}'")
    first = run_cli(cfg)
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    assert marker.exists()
    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    assert torch.load(latest, weights_only=True)["step"] == 2
    second = run_cli(cfg)
    assert second.returncode == 0, second.stderr[-2000:]
    ref = run_cli(ref_cfg)
    assert ref.returncode == 0, ref.stderr[-2000:]
    a = _weights(tmp_path / "run" / "checkpoints" / "final.pt")
    b = _weights(tmp_path / "ref" / "checkpoints" / "final.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_nan_loss_stops_with_message_and_usable_checkpoint(tmp_path):
    from farslip_ext.train.config import load_config
    from farslip_ext.train.loop import NonFiniteLossError, train

    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0)).tolist()
    cfg = write_config(tmp_path / "cfg.py", tmp_path / "run", save_every=100, extra_data=f", nan_at={perm[5]}")
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 1 .*latest.pt"):
        train(load_config(cfg))
    st = torch.load(tmp_path / "run" / "checkpoints" / "latest.pt", weights_only=True)
    assert st["step"] == 1 and st["batch_in_epoch"] == 1
    assert all(torch.isfinite(v).all() for v in st["state_dict"].values() if v.is_floating_point())


def test_atomic_save_never_leaves_a_corrupt_latest(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    atomic_save({"step": 1, "w": torch.ones(3)}, path)

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt("killed during save")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1


def test_ddp_two_gloo_processes(tmp_path):
    cfg = write_config(tmp_path / "cfg.py", tmp_path / "run", n=16, batch=2, epochs=1, save_every=100)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                          "29517", "-m", "farslip_ext.cli", "train", str(cfg)],
                         capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    st = torch.load(tmp_path / "run" / "checkpoints" / "final.pt", weights_only=True)
    assert st["step"] == 4  # 16 samples / (2 ranks x batch 2)
    rows = (tmp_path / "run" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 5  # rank 0 logs once per step


@pytest.mark.parametrize("stage,arch", [(1, "farslip-test-tiny"), (2, "farslip-test-tiny-long")])
def test_same_loop_trains_stages_and_backbones_by_config(tmp_path, stage, arch):
    from farslip_ext.train.config import load_config
    from farslip_ext.train.loop import train

    cfg = write_config(tmp_path / "cfg.py", tmp_path / "run", stage=stage, arch=arch, epochs=1, save_every=100)
    result = train(load_config(cfg))
    assert result["step"] == 4
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert ("distill_loss" in header) == (stage == 1) and ("region_itc_loss" in header) == (stage == 2)
    assert json.loads(json.dumps(result["last"]))["loss"] > 0


def test_torch_compile_path_trains_like_eager(tmp_path):
    """``train.compile=True`` (torch.compile of the task) gives the eager losses (inductor on CPU)."""
    from farslip_ext.train.config import load_config
    from farslip_ext.train.loop import train

    runs = {}
    for compiled in (False, True):
        work = tmp_path / f"run{int(compiled)}"
        cfg = load_config(write_config(tmp_path / f"c{int(compiled)}.py", work, n=8, batch=4, epochs=1, save_every=100),
                          {"train.compile": compiled})
        train(cfg)
        runs[compiled] = [float(r.split(",")[4]) for r in (work / "metrics.csv").read_text().splitlines()[1:]]
    assert len(runs[True]) == len(runs[False]) == 2
    for a, b in zip(runs[True], runs[False]):
        assert a == pytest.approx(b, rel=1e-4)
