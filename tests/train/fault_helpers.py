"""Fault injectors for the training tests, importable by subprocesses (``custom_imports``).

* ``KillingRS5M``: RS5M shards that SIGKILL the trainer process (from a DataLoader worker too) at the
  ``kill_after``-th sample decoded by a process in epoch ``kill_epoch``, once (a marker file), after
  the file ``kill_when`` appears (e.g. a step checkpoint: a kill at a known step despite prefetching);
* ``MarkedNaNData``: ``FakeFarSLIPData`` whose item ``nan_at`` is NaN while the file ``nan_marker``
  exists (deleting it is "fixing the data": the config does not change).
"""
from __future__ import annotations

import os
import signal
import time

import torch
from torch.utils.data import get_worker_info

from farslip_ext.data.rs5m import RS5MWebDataset
from farslip_ext.registry import TRAIN_DATASETS
from tests.helpers.fake_data import FakeFarSLIPData


@TRAIN_DATASETS.register_module(force=True)
class KillingRS5M(RS5MWebDataset):
    def __init__(self, *args, kill_epoch: int = -1, kill_after: int = -1, kill_marker: str = "", kill_when: str = "",
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kill_epoch, self.kill_after, self.kill_marker = kill_epoch, kill_after, kill_marker
        self.kill_when = kill_when  # wait (up to 2 min) for this file first: the trainer's progress, not the prefetch
        self._decoded_in_kill_epoch = 0

    def decode(self, sample):
        if self.epoch == self.kill_epoch and self.kill_marker and not os.path.exists(self.kill_marker):
            self._decoded_in_kill_epoch += 1
            if self._decoded_in_kill_epoch == self.kill_after:
                deadline = time.monotonic() + 120
                while self.kill_when and not os.path.exists(self.kill_when) and time.monotonic() < deadline:
                    time.sleep(0.01)
                open(self.kill_marker, "w").close()
                trainer = os.getppid() if get_worker_info() is not None else os.getpid()
                os.kill(trainer, signal.SIGKILL)
        return super().decode(sample)


@TRAIN_DATASETS.register_module(force=True)
class MarkedNaNData(FakeFarSLIPData):
    def __init__(self, nan_marker: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.nan_marker = nan_marker

    def __getitem__(self, i: int):
        saved = self.nan_at
        if not os.path.exists(self.nan_marker):
            self.nan_at = -1  # the data was fixed: the item FakeFarSLIPData(nan_at=-1) gives
        try:
            return super().__getitem__(i)
        finally:
            self.nan_at = saved


def finite(sd) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in sd.values() if v.is_floating_point())


REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def write_config(path, work_dir, data: str = "dict(type='FakeFarSLIPData', n=16, stage=0)", batch: int = 4,
                 epochs: int = 2, save_every: int = 1, lr: float = 1e-3, losses: str = "", warmup: int = 2,
                 steps_per_epoch=None, num_workers: int = 0, extra_train: str = "", arch: str = "farslip-test-tiny"):
    """A tiny CPU training config (the fake data or any ``data.train`` dict) importing these helpers."""
    import textwrap

    losses = losses or "dict(global_itc=dict(type='GlobalITCLoss'))"
    path.write_text(textwrap.dedent(f"""
        custom_imports = dict(imports=['tests.helpers.fake_data', 'tests.train.fault_helpers'],
                              allow_failed_imports=False)
        model = dict(name='{arch}', pretrained=None)
        task = dict(type='FarSLIPTask', losses={losses})
        data = dict(train={data}, batch_size={batch}, num_workers={num_workers}, pin_memory=False)
        optim = dict(lr={lr}, weight_decay=0.2, impl='foreach')
        schedule = dict(epochs={epochs}, warmup_steps={warmup}, steps_per_epoch={steps_per_epoch})
        train = dict(work_dir=r'{work_dir}', device='cpu', precision='fp32', seed=0,
                     save_every_steps={save_every}, log_every=1, progress=False{extra_train})
    """))
    return path


def run_cli(*args: str, timeout: int = 300, env_extra=None):
    """``python -m farslip_ext.cli ARGS`` in a subprocess (the repository on PYTHONPATH)."""
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "farslip_ext.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env)


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
