"""The training loop: one loop for stage 1, stage 2 and a plain-CLIP baseline.

The loop knows only the task contract (a module built from ``cfg.task`` in the ``TASKS`` registry)::

    losses, report = task(batch)            # task.training_forward; keys ending in "_loss" are summed
    task.after_optimizer_step()             # e.g. the EMA teacher update
    task.extra_state() / load_extra_state() # e.g. the teacher, for checkpoints

Every trainable parameter of the task is optimised: the model's in the reference's groups, the
learnable components' (losses, head, teacher modules) in their own groups (``optim.component_lr``,
``optim.component_weight_decay``). A trainable tensor a component holds where the optimizer cannot
see it is an error at build time. The checkpoint keeps the model in pure open_clip keys
(``state_dict``) and the components beside it (``task_state``).

Everything a GPU cluster needs is here: ``torchrun`` DDP (multi-node ready; NCCL on GPUs, gloo on
CPU), bf16/fp16 autocast (fp16 with a GradScaler), gradient checkpointing, optional ``torch.compile``,
AdamW with the reference's weight-decay exclusions, warmup + cosine, the logit-scale clamp, per-rank
seeding, tqdm on rank 0, CSV (and optional TensorBoard / wandb) logs, atomic open_clip-loadable
checkpoints with everything needed for an exact resume, and a clear stop on a non-finite loss.
"""
from __future__ import annotations

import csv
import logging
import random
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np
import torch
from mmengine.config import Config
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from farslip_ext.errors import ConfigError, FarSLIPError
from farslip_ext.models.logit_scale import clamp_logit_scale_
from farslip_ext.precision import training_precision
from farslip_ext.registry import TASKS, TRAIN_DATASETS
from farslip_ext.train.checkpoint import atomic_save, capture_rng, find_resume, load_training_checkpoint, restore_rng
from farslip_ext.train.components import component_state_dict, hidden_parameters, load_component_state
from farslip_ext.train.config import config_to_dict
from farslip_ext.train.distributed import DistInfo, cleanup_distributed, init_distributed
from farslip_ext.train.optim import build_optimizer, build_scheduler
from farslip_ext.train.sampler import ResumableDistributedSampler, SeededSamples

__all__ = ["Trainer", "NonFiniteLossError", "train"]

logger = logging.getLogger(__name__)


class NonFiniteLossError(FarSLIPError, RuntimeError):
    """A loss became NaN or infinite; the run stopped with a usable checkpoint of the state before it."""


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _batch_size(batch: Any) -> int:
    if isinstance(batch, dict):
        for key in ("global_image", "image", "images"):
            if key in batch and isinstance(batch[key], torch.Tensor):
                return int(batch[key].shape[0])
        for v in batch.values():
            if isinstance(v, torch.Tensor):
                return int(v.shape[0])
    return 0


class Trainer:
    """Builds everything from a resolved config and runs :meth:`fit`."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.dist: DistInfo = init_distributed(cfg.train.device)
        self.work_dir = Path(cfg.train.work_dir)
        self.ckpt_dir = self.work_dir / "checkpoints"
        self._seed_everything(int(cfg.train.seed) + self.dist.rank)
        self.precision = training_precision(cfg.train.precision, self.dist.device)
        self.model, self.tokenizer = self._build_model()
        self.task: nn.Module = TASKS.build(dict(cfg.task), default_args=dict(model=self.model))
        self.task.to(self.dist.device)
        self.dataset, self.loader, self.sampler, self.seeded = self._build_data()
        self.steps_per_epoch = self._steps_per_epoch()
        sch = cfg.schedule
        self.total_steps = int(sch.max_steps or self.steps_per_epoch * int(sch.epochs))
        self.optimizer = build_optimizer(self.model, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
                                         betas=cfg.optim.betas, eps=cfg.optim.eps,
                                         impl=self._optim_impl(cfg.optim.impl), task=self.task,
                                         component_lr=cfg.optim.get("component_lr"),
                                         component_weight_decay=cfg.optim.get("component_weight_decay"))
        self._check_parameters_visible()
        self.scheduler = build_scheduler(self.optimizer, warmup=int(sch.warmup_steps), total=self.total_steps)
        self.scaler = torch.amp.GradScaler(self.dist.device.type, enabled=self.precision.needs_grad_scaler)
        self.forward_module = self._wrap(self.task)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self._csv: Optional[Any] = None
        self._tb: Optional[Any] = None
        self._wandb: Optional[Any] = None

    # ---- construction ---------------------------------------------------------------------------
    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % (2 ** 32))
        torch.manual_seed(seed)

    def _optim_impl(self, impl: str) -> str:
        if impl != "auto":
            return impl
        return "fused" if self.dist.device.type in ("cuda", "cpu") else "foreach"

    def _build_model(self) -> Tuple[nn.Module, Any]:
        from farslip_ext.loading import load
        from farslip_ext.models.longclip import enable_long_clip_training

        m = self.cfg.model
        kwargs: Dict[str, Any] = {}
        if m.get("force_quick_gelu"):
            kwargs["force_quick_gelu"] = True
        if m.get("force_context_length"):
            kwargs["force_context_length"] = int(m.force_context_length)
        lm = load(m.name, m.get("pretrained"), device=self.dist.device, precision="fp32", eval=False, **kwargs)
        model = lm.model
        if m.get("long_clip"):
            enable_long_clip_training(model)
        if self.cfg.train.grad_checkpointing:
            model.set_grad_checkpointing(True)
        if self.cfg.train.channels_last and self.dist.device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        from farslip_ext.loading import get_tokenizer

        return model, get_tokenizer(model, m.name)

    def _build_data(self):
        d = self.cfg.data
        dataset = TRAIN_DATASETS.build(dict(d.train), default_args=dict(tokenizer=self.tokenizer))
        collate = getattr(dataset, "collate_fn", None)
        sampler = seeded = None
        common = dict(batch_size=int(d.batch_size), num_workers=int(d.num_workers), collate_fn=collate,
                      pin_memory=bool(d.pin_memory) and self.dist.device.type == "cuda")
        if int(d.num_workers) > 0:
            common["prefetch_factor"] = int(d.get("prefetch_factor", 2))
        if isinstance(dataset, IterableDataset):
            loader = DataLoader(dataset, **common)
        else:
            ds = dataset
            if d.seed_augmentations:
                ds = seeded = SeededSamples(dataset, seed=int(self.cfg.train.seed))
            sampler = ResumableDistributedSampler(len(dataset), self.dist.world_size, self.dist.rank,
                                                  shuffle=True, seed=int(self.cfg.train.seed), drop_last=True,
                                                  batch_size=int(d.batch_size))
            loader = DataLoader(ds, sampler=sampler, drop_last=True, **common)
        return dataset, loader, sampler, seeded

    def _steps_per_epoch(self) -> int:
        s = self.cfg.schedule.steps_per_epoch
        if s:
            return int(s)
        if self.sampler is not None:
            n = self.sampler.num_samples // int(self.cfg.data.batch_size)
            if n == 0:
                raise ValueError(f"data.batch_size={self.cfg.data.batch_size} is larger than the "
                                 f"{self.sampler.num_samples} samples per rank; lower it or add data")
            return n
        raise ValueError("schedule.steps_per_epoch is required for a streaming (webdataset) dataset: "
                         "set it to ceil(num_samples / (batch_size * world_size))")

    def _optimized(self) -> list:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def _check_parameters_visible(self) -> None:
        """Every trainable parameter of the task is in the optimizer, and no component hides one."""
        seen = {id(p) for p in self._optimized()}
        missing = [n for n, p in self.task.named_parameters() if p.requires_grad and id(p) not in seen]
        objects = self.task.hidden_parameter_objects() if hasattr(self.task, "hidden_parameter_objects") else {}
        hidden = hidden_parameters(self.task, self.model, objects, visible=seen)
        if missing or hidden:
            raise ConfigError(
                f"trainable parameters the optimizer does not see: {missing + hidden}. A component's parameters must "
                f"be registered on it (nn.Parameter / nn.Module attributes, nn.ModuleList for lists); a teacher "
                f"returns its learnable modules from trainable_modules(); set requires_grad=False on frozen ones")

    def _wrap(self, task: nn.Module) -> nn.Module:
        module: nn.Module = task
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
            module = DDP(task, device_ids=ids, find_unused_parameters=bool(self.cfg.train.find_unused_parameters))
        if self.cfg.train.compile:
            module = torch.compile(module)
        return module

    # ---- state ------------------------------------------------------------------------------------
    def state(self) -> Dict[str, Any]:
        from farslip_ext.models.longclip import open_clip_state_dict

        return {
            "state_dict": open_clip_state_dict(self.model),
            "arch": self.cfg.model.name,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "task_extra": self.task.extra_state() if hasattr(self.task, "extra_state") else {},
            "task_state": component_state_dict(self.task, self.model),
            "rng": capture_rng(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "config": config_to_dict(self.cfg),
        }

    def save(self, name: str = "latest.pt") -> Optional[Path]:
        if not self.dist.is_main:
            return None
        st = self.state()
        path = atomic_save(st, self.ckpt_dir / name)
        if name == "latest.pt" and self.cfg.train.keep_step_checkpoints:
            atomic_save(st, self.ckpt_dir / f"step_{self.step:08d}.pt")
        self.cfg.dump(str(self.ckpt_dir / "config.py"))
        return path

    def resume(self, path: Path) -> None:
        from farslip_ext.models.longclip import is_long_clip_training

        ck = load_training_checkpoint(path)
        sd = ck["state_dict"]
        if is_long_clip_training(self.model):
            # the split keeps its frozen rows; the trainable table continues from the saved one
            self.model.parametrizations.positional_embedding.original.data.copy_(sd.pop("positional_embedding"))
            self.model.load_state_dict(sd, strict=False)
        else:
            self.model.load_state_dict(sd, strict=True)
        load_component_state(self.task, self.model, ck.get("task_state", {}))
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        if hasattr(self.task, "load_extra_state"):
            self.task.load_extra_state(ck.get("task_extra", {}))
        self.step, self.epoch, self.batch_in_epoch = int(ck["step"]), int(ck["epoch"]), int(ck["batch_in_epoch"])
        restore_rng(ck["rng"])
        if self.dist.rank != 0:  # per-rank streams differ; re-derive them from the restored state
            torch.manual_seed(int(torch.randint(0, 2 ** 62, (1,))) + self.dist.rank)
        logger.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.step, self.epoch,
                    self.batch_in_epoch)

    # ---- logging ----------------------------------------------------------------------------------
    def _open_logs(self) -> None:
        if not self.dist.is_main:
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.cfg.dump(str(self.work_dir / "config.py"))
        self._csv_path = self.work_dir / "metrics.csv"
        if self.cfg.train.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError("train.tensorboard=True needs the 'tensorboard' package: pip install tensorboard") from e
            self._tb = SummaryWriter(str(self.work_dir / "tensorboard"))
        if self.cfg.train.wandb:
            try:
                import wandb
            except ImportError as e:
                raise ImportError("train.wandb=True needs the 'wandb' package: pip install wandb") from e
            self._wandb = wandb.init(project="farslip", dir=str(self.work_dir), config=config_to_dict(self.cfg))

    def _log(self, row: Dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        new = not self._csv_path.exists()
        with open(self._csv_path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)
        if self._tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "step":
                    self._tb.add_scalar(k, v, row["step"])
        if self._wandb is not None:
            self._wandb.log(row, step=row["step"])

    # ---- the loop ---------------------------------------------------------------------------------
    def _batches(self) -> Iterator[Tuple[int, Any]]:
        """Batches of the current epoch from ``self.batch_in_epoch`` on (exact resume)."""
        start = self.batch_in_epoch
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch, start_batch=start)
            if self.seeded is not None:
                self.seeded.set_epoch(self.epoch)
            for i, batch in enumerate(self.loader):
                yield start + i, batch
        else:
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(self.epoch)
            for i, batch in enumerate(self.loader):
                if i < start:
                    continue  # a stream cannot seek: replay and drop
                if i >= self.steps_per_epoch:
                    break
                yield i, batch

    def _clamp_logit_scale(self) -> None:
        clamp_logit_scale_(self.model, float(self.cfg.train.logit_scale_max))

    def _check_finite(self, total: torch.Tensor, losses: Dict[str, torch.Tensor]) -> None:
        bad = torch.tensor([0.0 if torch.isfinite(total.detach()) else 1.0], device=total.device)
        if self.dist.distributed:
            torch.distributed.all_reduce(bad)
        if bad.item() > 0:
            self.save("latest.pt")  # parameters are still those before this step
            terms = {k: float(v.detach()) for k, v in losses.items()}
            raise NonFiniteLossError(
                f"non-finite loss at step {self.step} (epoch {self.epoch}, batch {self.batch_in_epoch}): {terms}. "
                f"The state before this step is saved in {self.ckpt_dir / 'latest.pt'}; lower optim.lr, use "
                f"train.precision=amp_bf16 or fp32, or check the data of this batch, then resume."
            )

    def train_step(self, batch: Any) -> Dict[str, float]:
        batch = _to_device(batch, self.dist.device)
        dev = self.dist.device.type
        with self.precision.autocast(dev):
            losses, report = self.forward_module(batch)
        terms = {k: v for k, v in losses.items() if k.endswith("_loss")}
        if not terms:
            raise ValueError(f"the task returned no '*_loss' entries (got {list(losses)})")
        total = sum(terms.values())
        self._check_finite(total, terms)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        gn = None
        if self.cfg.optim.grad_clip_norm:
            self.scaler.unscale_(self.optimizer)
            gn = float(torch.nn.utils.clip_grad_norm_(self._optimized(), float(self.cfg.optim.grad_clip_norm)))
        if hasattr(self.task, "before_optimizer_step"):
            self.task.before_optimizer_step()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self._clamp_logit_scale()
        if hasattr(self.task, "after_optimizer_step"):
            self.task.after_optimizer_step()
        out = {"loss": float(total.detach())}
        out.update({k: float(v.detach()) for k, v in terms.items()})
        out.update({k: float(v) for k, v in (report or {}).items()})
        if gn is not None:
            out["grad_norm"] = gn
        return out

    def fit(self) -> Dict[str, Any]:
        resume = find_resume(self.work_dir, self.cfg.train.resume)
        if resume is not None:
            self.resume(resume)
        self._open_logs()
        self.model.train()
        bar = None
        if self.dist.is_main and self.cfg.train.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc="train", dynamic_ncols=True)
        last: Dict[str, float] = {}
        t_last, n_last = time.perf_counter(), 0
        try:
            while self.step < self.total_steps:
                for i, batch in self._batches():
                    self.batch_in_epoch = i
                    last = self.train_step(batch)
                    self.step += 1
                    self.batch_in_epoch = i + 1
                    n_last += _batch_size(batch) * self.dist.world_size
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{last['loss']:.4f}")
                    if self.step % int(self.cfg.train.log_every) == 0 or self.step == self.total_steps:
                        dt = time.perf_counter() - t_last
                        self._log({"step": self.step, "epoch": self.epoch, "lr": self.scheduler.get_last_lr()[0],
                                   "samples_per_s": n_last / max(dt, 1e-9), **last})
                        t_last, n_last = time.perf_counter(), 0
                    if self.step % int(self.cfg.train.save_every_steps) == 0:
                        self.save("latest.pt")
                    if self.step >= self.total_steps:
                        break
                else:  # the epoch ran out
                    self.epoch += 1
                    self.batch_in_epoch = 0
            self.save("latest.pt")
            if self.dist.is_main:
                final = self.ckpt_dir / "final.pt"
                atomic_save(self.state(), final)
        finally:
            if bar is not None:
                bar.close()
            if self._tb is not None:
                self._tb.close()
        return {"step": self.step, "epoch": self.epoch, "last": last, "work_dir": str(self.work_dir)}


def train(cfg: Config) -> Dict[str, Any]:
    """Build a :class:`Trainer` from a resolved config and run it (also under ``torchrun``)."""
    trainer = Trainer(cfg)
    try:
        return trainer.fit()
    finally:
        cleanup_distributed()

