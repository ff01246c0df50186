"""Deterministic, resumable data order and per-sample augmentation seeds.

Exact resume needs the batch sequence and every random augmentation to be a pure function of
(seed, epoch, sample index), independent of where a run was interrupted and of the worker count:

* :class:`ResumableDistributedSampler` shuffles with ``seed + epoch``, shards across ranks, and can start
  at any batch of the epoch;
* :class:`SeededSamples` runs each ``__getitem__`` under a torch RNG seeded from (seed, epoch, index)
  (``torch.random.fork_rng`` leaves the global stream untouched).
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["ResumableDistributedSampler", "SeededSamples"]


class ResumableDistributedSampler(Sampler[int]):
    def __init__(self, dataset_len: int, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = True, batch_size: int = 1) -> None:
        if dataset_len <= 0:
            raise ValueError("the training dataset is empty")
        self.n, self.replicas, self.rank = dataset_len, num_replicas, rank
        self.shuffle, self.seed, self.drop_last, self.batch_size = shuffle, seed, drop_last, batch_size
        per_rank = dataset_len // num_replicas if drop_last else math.ceil(dataset_len / num_replicas)
        self.num_samples = (per_rank // batch_size) * batch_size if drop_last else per_rank
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.num_samples * self.replicas
        if len(order) < total:
            order += order[: total - len(order)]
        mine = order[self.rank:total:self.replicas][: self.num_samples]
        return iter(mine[self.start_batch * self.batch_size:])

    def __len__(self) -> int:
        return self.num_samples - self.start_batch * self.batch_size


class SeededSamples(Dataset):
    """Wrap a map-style dataset so sample ``i`` of epoch ``e`` always sees the same random augmentation."""

    def __init__(self, dataset: Dataset, seed: int = 0) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + self.epoch * 9_176 + int(index)) % (2 ** 63))
            return self.dataset[index]

    def __getattr__(self, name: str):  # expose the wrapped dataset's counters (stats, ...)
        if name in ("dataset", "seed", "epoch"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


