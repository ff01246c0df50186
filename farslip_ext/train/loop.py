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

Failures it turns into one-line errors: an epoch without a single batch (``DataError`` naming the data
and what was counted, instead of looping over empty epochs), a non-finite loss or state (the last
finite checkpoint is kept and named; a NaN state is never saved), a resume with a config that would
break exactness (farslip_ext/train/resume_policy.py) and a checkpoint of another architecture.
"""
from __future__ import annotations

import csv
import logging
import random
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from mmengine.config import Config
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from farslip_ext.errors import CheckpointFormatError, ConfigError, DataError, FarSLIPError
from farslip_ext.models.logit_scale import clamp_logit_scale_
from farslip_ext.precision import training_precision
from farslip_ext.registry import TASKS, TRAIN_DATASETS
from farslip_ext.train.checkpoint import (atomic_save, capture_rng, find_resume, load_training_checkpoint,
                                         nonfinite_tensors, restore_rng)
from farslip_ext.train.components import component_state_dict, hidden_parameters, load_component_state
from farslip_ext.train.config import config_to_dict
from farslip_ext.train.distributed import DistInfo, cleanup_distributed, init_distributed
from farslip_ext.train.optim import build_optimizer, build_scheduler
from farslip_ext.train.resume_policy import ResumeChanges, compare_configs
from farslip_ext.train.sampler import ResumableDistributedSampler, SeededSamples

__all__ = ["Trainer", "NonFiniteLossError", "train"]

logger = logging.getLogger(__name__)


class NonFiniteLossError(FarSLIPError, RuntimeError):
    """A loss or the trained state became NaN/inf; the run stopped, keeping (and naming) the last finite checkpoint."""


def _short(v: Any, n: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= n else text[: n - 3] + "..."


def _unwrap_worker_error(e: FarSLIPError) -> FarSLIPError:
    """A farslip error re-raised by the DataLoader carries the worker's traceback in its text: keep the message."""
    text = str(e)
    if "Original Traceback" not in text:
        return e
    lines = [line for line in text.splitlines() if line.strip()]
    tail = next((line for line in reversed(lines) if line.startswith(f"{type(e).__module__}.{type(e).__qualname__}: ")
                 or line.startswith(f"{type(e).__name__}: ")), lines[-1])
    try:
        return type(e)(tail.split(": ", 1)[1] + " (in a DataLoader worker)")
    except Exception:  # noqa: BLE001 - a subclass with another constructor: keep the original
        return e


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
        self._last_finite: Optional[Tuple[Path, int]] = None  # the newest finite checkpoint of this run
        self._resume_history: List[Dict[str, Any]] = []
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
        # the loader draws its worker base seed from its own generator (re-seeded every epoch), never from the
        # global RNG: the training stream of random numbers is the same whether or not a run was resumed
        self._loader_rng = torch.Generator()
        common = dict(batch_size=int(d.batch_size), num_workers=int(d.num_workers), collate_fn=collate,
                      pin_memory=bool(d.pin_memory) and self.dist.device.type == "cuda", generator=self._loader_rng)
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
                raise DataError(f"data.batch_size={self.cfg.data.batch_size} is larger than the "
                                f"{self.sampler.num_samples} samples per rank; lower it or add data")
            return n
        raise ConfigError("schedule.steps_per_epoch is required for a streaming (webdataset) dataset: "
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
            "world_size": self.dist.world_size,
            "resume_changes": list(self._resume_history),
            "config": config_to_dict(self.cfg),
        }

    # ---- finiteness ---------------------------------------------------------------------------------
    def _nonfinite(self, state: Dict[str, Any]) -> List[str]:
        """Readable names of the non-finite tensors of ``state`` (parameters, components, optimizer moments)."""
        bad = nonfinite_tensors(state)
        if not bad:
            return []
        names = {id(p): n for n, p in self.task.named_parameters()}
        index = {str(i): names.get(id(p), f"parameter {i}") for i, p in enumerate(self._optimized())}
        out = []
        for path in bad:
            parts = path.split(".")
            if parts[0] == "optimizer" and len(parts) >= 4 and parts[1] == "state":
                out.append(f"optimizer {parts[3]} of {index.get(parts[2], parts[2])}")
            elif parts[0] == "state_dict":
                out.append(".".join(parts[1:]))
            else:
                out.append(path)
        return out

    @staticmethod
    def _names(names: List[str], n: int = 5) -> str:
        return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")

    def _kept(self) -> str:
        if self._last_finite is not None:
            path, step = self._last_finite
            return f"the last finite checkpoint, {path} (step {step}), is kept"
        return (f"no checkpoint of this run was saved before it (train.save_every_steps="
                f"{self.cfg.train.save_every_steps})")

    def _advice(self) -> str:
        lr = float(self.cfg.optim.lr)
        fix = f"--cfg-options optim.lr={lr / 10:g} optim.grad_clip_norm=1.0"
        if self._last_finite is None:
            return f"start again with a lower learning rate or gradient clipping, e.g. {fix}"
        return (f"resume from it (train.resume=auto, the default, or --resume {self._last_finite[0]}) with a lower "
                f"learning rate or gradient clipping, e.g. {fix} (optimizer settings changed on resume are applied)")

    def _finite_state(self, what: str) -> Dict[str, Any]:
        """The state to save, after checking every tensor (on every rank: DDP keeps them identical)."""
        st = self.state()
        bad = self._nonfinite(st)
        if bad:
            raise NonFiniteLossError(
                f"the trained state became non-finite in step {self.step} (epoch {self.epoch}, batch "
                f"{self.batch_in_epoch}) although its loss was finite: {len(bad)} tensor(s) hold NaN/inf "
                f"({self._names(bad)}); {what} was not written, {self._kept()}; {self._advice()}")
        return st

    def save(self, name: str = "latest.pt") -> Optional[Path]:
        """Write a checkpoint (rank 0); a non-finite state is an error and never overwrites a finite file."""
        st = self._finite_state(name)
        if not self.dist.is_main:
            return None
        path = atomic_save(st, self.ckpt_dir / name)
        if name == "latest.pt" and self.cfg.train.keep_step_checkpoints:
            atomic_save(st, self.ckpt_dir / f"step_{self.step:08d}.pt")
        if name == "latest.pt":
            self._last_finite = (path, self.step)
        self.cfg.dump(str(self.ckpt_dir / "config.py"))
        return path

    # ---- resume -------------------------------------------------------------------------------------
    def _resume_changes(self, path: Path, ck: Dict[str, Any]) -> ResumeChanges:
        """Compare the checkpoint's config with this one (resume_policy.py); refused changes are an error."""
        from farslip_ext.train.config import expand_defaults

        saved = ck.get("config")
        if not saved:
            logger.warning("%s holds no config: the resume cannot check that the config is unchanged", path)
            return ResumeChanges()
        try:
            old = expand_defaults(saved)
        except Exception:  # noqa: BLE001 - a component of the old config that is not registered any more
            old = saved
        allow = list(self.cfg.train.get("resume_allow_changes") or [])
        changes = compare_configs(old, expand_defaults(self.cfg), allow=allow, streaming=self.sampler is None,
                                  saved_world_size=ck.get("world_size"), world_size=self.dist.world_size)
        if changes.refused:
            keys = sorted(changes.refused)
            shown = ", ".join(f"{k} {_short(o)} -> {_short(n)}" for k, (o, n) in sorted(changes.refused.items())[:6])
            more = f" and {len(keys) - 6} more" if len(keys) > 6 else ""
            raise ConfigError(
                f"resuming from {path} with a changed config would break the exact resume: {shown}{more} "
                f"(architecture, task, data, batch size, seed or process count change what the saved weights, data "
                f"position and random streams mean). Resume with the run's config ({path.parent / 'config.py'}), "
                f"or allow the change explicitly: --cfg-options \"train.resume_allow_changes=[{','.join(keys)}]\", "
                f"or start a new run (train.resume=none or another train.work_dir)")
        for label, part in (("applied from this step on", changes.applied), ("ignored (the weights come from the "
                            "checkpoint)", changes.ignored), ("allowed by train.resume_allow_changes; the resume is "
                            "not exact", changes.allowed)):
            if part:
                logger.warning("resume from %s (step %s) with config changes %s: %s", path, ck.get("step"), label,
                               ", ".join(f"{k} {_short(o)} -> {_short(n)}" for k, (o, n) in sorted(part.items())))
        return changes

    def _load_weights(self, path: Path, ck: Dict[str, Any]) -> None:
        from farslip_ext.models.longclip import is_long_clip_training

        sd = dict(ck["state_dict"])
        want = {k: v.shape for k, v in self.model.state_dict().items()}
        if is_long_clip_training(self.model):
            want = {k: v for k, v in want.items() if not k.startswith("parametrizations.positional_embedding.")}
            want["positional_embedding"] = self.model.positional_embedding.shape
        missing = sorted(set(want) - set(sd))
        unexpected = sorted(set(sd) - set(want))
        shapes = sorted(k for k in set(want) & set(sd) if tuple(want[k]) != tuple(sd[k].shape))
        if missing or unexpected or shapes:
            first = (f"; e.g. {shapes[0]} is {tuple(sd[shapes[0]].shape)} in the file, {tuple(want[shapes[0]])} here"
                     if shapes else "")
            raise CheckpointFormatError(
                f"{path} holds weights of {ck.get('arch', '?')!r} that do not fit model.name={self.cfg.model.name!r}: "
                f"{len(missing)} missing, {len(unexpected)} unexpected and {len(shapes)} differently shaped tensors"
                f"{first}. Resume with the architecture the run was started with, or start a new run "
                f"(train.resume=none or another train.work_dir)")
        if is_long_clip_training(self.model):
            # the split keeps its frozen rows; the trainable table continues from the saved one
            self.model.parametrizations.positional_embedding.original.data.copy_(sd.pop("positional_embedding"))
            self.model.load_state_dict(sd, strict=False)
        else:
            self.model.load_state_dict(sd, strict=True)

    def _apply_hyperparameters(self, fresh: List[Dict[str, Any]]) -> None:
        """After loading the optimizer/scheduler state: this config's hyperparameters and schedule, from now on."""
        groups = self.optimizer.param_groups
        if len(groups) != len(fresh):  # pragma: no cover - the task check refuses a changed component set first
            raise ConfigError(f"the checkpoint has {len(groups)} optimizer groups, this config {len(fresh)}")
        for g, f in zip(groups, fresh):
            for k, v in f.items():
                if k != "lr":
                    g[k] = v
        sch = self.scheduler
        sch.base_lrs = [f["initial_lr"] for f in fresh]
        lrs = [base * fn(sch.last_epoch) for base, fn in zip(sch.base_lrs, sch.lr_lambdas)]
        for g, lr in zip(groups, lrs):
            g["lr"] = lr
        sch._last_lr = list(lrs)

    def resume(self, path: Path) -> None:
        path = Path(path)
        ck = load_training_checkpoint(path)  # finite, or a NonFiniteWeightsError naming the file
        changes = self._resume_changes(path, ck)
        fresh = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        self._load_weights(path, ck)
        load_component_state(self.task, self.model, ck.get("task_state", {}))
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        if ck["scaler"] or not self.scaler.is_enabled():
            self.scaler.load_state_dict(ck["scaler"])  # a no-op for a disabled scaler
        else:
            logger.warning("%s was saved without a GradScaler state (another precision): the fp16 loss scale "
                           "starts afresh", path)
        if changes.touches("optim.", "schedule."):
            self._apply_hyperparameters(fresh)
        if hasattr(self.task, "load_extra_state"):
            self.task.load_extra_state(ck.get("task_extra", {}))
        self.step, self.epoch, self.batch_in_epoch = int(ck["step"]), int(ck["epoch"]), int(ck["batch_in_epoch"])
        if "data.batch_size" in changes.allowed:
            old_bs, new_bs = (int(v) for v in changes.allowed["data.batch_size"])
            seen = self.batch_in_epoch * old_bs
            self.batch_in_epoch = seen // new_bs
            logger.warning("data.batch_size %d -> %d: epoch %d continues at batch %d (%d of the %d samples per rank "
                           "already seen in this epoch are read again)", old_bs, new_bs, self.epoch,
                           self.batch_in_epoch, seen - self.batch_in_epoch * new_bs, seen)
        restore_rng(ck["rng"])
        if self.dist.rank != 0:  # per-rank streams differ; re-derive them from the restored state
            torch.manual_seed(int(torch.randint(0, 2 ** 62, (1,))) + self.dist.rank)
        self._resume_history = list(ck.get("resume_changes") or [])
        if changes.any:
            self._resume_history.append({"step": self.step, "from": str(path), "changes": changes.record()})
        self._last_finite = (path, self.step)
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
        seed = int(self.cfg.train.seed)
        self._loader_rng.manual_seed((seed * 1_000_003 + self.epoch * 9_176 + self.dist.rank) % (2 ** 63))
        try:
            if self.sampler is not None:
                self.sampler.set_epoch(self.epoch, start_batch=start)
                if self.seeded is not None:
                    self.seeded.set_epoch(self.epoch)
                for i, batch in enumerate(self.loader):
                    yield start + i, batch
            else:
                if hasattr(self.dataset, "set_epoch"):
                    self.dataset.set_epoch(self.epoch)
                i = -1
                for i, batch in enumerate(self.loader):
                    if i < start:
                        continue  # a stream cannot seek: replay and drop (its augmentations are seeded per sample)
                    if i >= self.steps_per_epoch:
                        break
                    yield i, batch
                if 0 < start and i < start - 1:
                    logger.warning("epoch %d of the stream ended after %d batches, before the saved position (batch "
                                   "%d): the data changed since the checkpoint", self.epoch, i + 1, start)
        except FarSLIPError as e:  # raised in a DataLoader worker: one line, not the worker's traceback
            raise _unwrap_worker_error(e) from None

    def _no_batch_error(self) -> DataError:
        ds = self.dataset
        detail = ds.describe_pass() if hasattr(ds, "describe_pass") else (
            f"its counters: {ds.stats}" if hasattr(ds, "stats") else f"{type(ds).__name__} yielded nothing")
        where = f" on rank {self.dist.rank} of {self.dist.world_size}" if self.dist.distributed else ""
        return DataError(
            f"data.train ({type(ds).__name__}) gave no batch of data.batch_size={self.cfg.data.batch_size} in epoch "
            f"{self.epoch}{where}, so every epoch would be empty: {detail}. Nothing was trained; fix data.train "
            f"and run again")

    def _clamp_logit_scale(self) -> None:
        clamp_logit_scale_(self.model, float(self.cfg.train.logit_scale_max))

    def _check_finite(self, total: torch.Tensor, losses: Dict[str, torch.Tensor]) -> None:
        bad = torch.tensor([0.0 if torch.isfinite(total.detach()) else 1.0], device=total.device)
        if self.dist.distributed:
            torch.distributed.all_reduce(bad)
        if bad.item() == 0:
            return
        terms = {k: float(v.detach()) for k, v in losses.items()}
        where = f"step {self.step} (epoch {self.epoch}, batch {self.batch_in_epoch})"
        st = self.state()  # the parameters before this step
        broken = self._nonfinite(st)
        if broken:
            raise NonFiniteLossError(
                f"non-finite loss at {where}: {terms}; the parameters were already non-finite before this step "
                f"({len(broken)} tensor(s): {self._names(broken)}): an update after the last checkpoint produced "
                f"them, so nothing was saved; {self._kept()}; {self._advice()}")
        latest = self.ckpt_dir / "latest.pt"
        if self.dist.is_main:
            atomic_save(st, latest)
            self.cfg.dump(str(self.ckpt_dir / "config.py"))
        self._last_finite = (latest, self.step)
        raise NonFiniteLossError(
            f"non-finite loss at {where}: {terms}. The parameters before this step are finite and saved in {latest} "
            f"(step {self.step}): this batch overflowed. Check its data, or use train.precision=fp32 (or amp_bf16), "
            f"then resume from that checkpoint (train.resume=auto, the default, or --resume {latest})")

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
            from farslip_ext.logs import progress

            # a bar on a terminal, plain periodic lines in logs and CI (farslip_ext.logs)
            bar = progress(total=self.total_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        last: Dict[str, float] = {}
        t_last, n_last = time.perf_counter(), 0
        try:
            while self.step < self.total_steps:
                start, got = self.batch_in_epoch, 0
                for i, batch in self._batches():
                    got += 1
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
                    if got == 0 and start == 0:
                        raise self._no_batch_error()
                    self.epoch += 1
                    self.batch_in_epoch = 0
            self.save("latest.pt")
            if self.dist.is_main:
                atomic_save(self._finite_state("final.pt"), self.ckpt_dir / "final.pt")
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

