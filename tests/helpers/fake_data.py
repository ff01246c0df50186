"""A tiny in-memory training dataset for loop tests (registered as ``FakeFarSLIPData``).

Importable by training subprocesses through ``custom_imports=dict(imports=["tests.helpers.fake_data"])``.
Samples are deterministic functions of their index (plus the seeded per-sample RNG for a random
"augmentation"), so two runs over the same indices see the same data.
"""
from __future__ import annotations

import os
import signal

import torch
from torch.utils.data import Dataset

from farslip_ext.registry import TRAIN_DATASETS

COLOURS = {"forest": (0.1, 0.5, 0.1), "water": (0.1, 0.2, 0.7), "farmland": (0.6, 0.6, 0.2), "road": (0.5, 0.5, 0.5)}


@TRAIN_DATASETS.register_module(force=True)
class FakeFarSLIPData(Dataset):
    """Coloured squares with captions, crops and boxes in the FarSLIP batch vocabulary."""

    def __init__(self, n: int = 24, size: int = 64, stage: int = 0, k: int = 2, tokenizer=None,
                 nan_at: int = -1, kill_at: int = -1, kill_marker: str = "") -> None:
        self.n, self.size, self.stage, self.k = n, size, stage, k
        self.tokenizer = tokenizer
        self.names = list(COLOURS)
        self.nan_at, self.kill_at, self.kill_marker = nan_at, kill_at, kill_marker

    def __len__(self) -> int:
        return self.n

    def _image(self, cls: int) -> torch.Tensor:
        c = torch.tensor(COLOURS[self.names[cls]]).view(3, 1, 1)
        noise = 0.1 * torch.randn(3, self.size, self.size)  # the seeded per-sample "augmentation"
        return (c + noise - 0.45) / 0.27

    def __getitem__(self, i: int):
        if i == self.kill_at and self.kill_marker and not os.path.exists(self.kill_marker):
            open(self.kill_marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        cls = i % len(self.names)
        img = self._image(cls)
        if i == self.nan_at:
            img = img * float("nan")
        text = self.tokenizer([f"a satellite image of {self.names[cls]}"])[0]
        s = {"global_image": img, "global_text": text, "label": cls}
        if self.stage == 1:
            s["subset_images"] = torch.stack([self._image(cls) for _ in range(self.k)])
            s["subset_boxes"] = torch.tensor([[0.0, 0.0, 0.5, 0.5, 1.0], [0.25, 0.25, 1.0, 1.0, 1.0]][: self.k])
        if self.stage == 2:
            other = (cls + 1) % len(self.names)
            s["local_images"] = torch.stack([self._image(cls), self._image(other)])
            s["local_texts"] = self.tokenizer([f"a satellite image of {self.names[c]}" for c in (cls, other)])
            s["local_categories"] = torch.tensor([cls, other])
            s["boxes"] = torch.tensor([[0.0, 0.0, 0.5, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0, float(i % 2 == 0)]])
            s["local_categories"][1] = other if i % 2 == 0 else -1
        return s


def random_batch(stage: int, b: int = 3, k: int = 2, size: int = 64, ctx: int = 77, seed: int = 0,
                 tokenizer=None) -> dict:
    """A random batch of the contract (farslip_ext/data/batch.py) for task tests: stage 1 (random crops)
    or stage 2 (object crops), row (1, 1) padded. With ``tokenizer`` the texts are real prompts (so trimmed
    text encoding has padding to cut); otherwise random tokens ending in an EOT."""
    g = torch.Generator().manual_seed(seed)
    names = list(COLOURS)

    def tok(rows: int) -> torch.Tensor:
        if tokenizer is not None:
            return tokenizer([f"a satellite image of {names[(seed + i) % len(names)]}" + " with roads" * (i % 3)
                              for i in range(rows)])
        t = torch.randint(1, 49000, (rows, ctx), generator=g)
        t[:, -1] = 49407
        return t

    batch = {"global_image": torch.randn(b, 3, size, size, generator=g), "global_text": tok(b)}
    boxes = torch.tensor([0.1, 0.1, 0.6, 0.7, 1.0]).repeat(b, k, 1)
    boxes[:, :, :2] += 0.2 * torch.rand(b, k, 2, generator=g)
    boxes[1, 1] = 0.0 if stage == 2 else boxes[1, 1]
    if stage == 1:
        batch["subset_images"] = torch.randn(b, k, 3, size, size, generator=g)
        batch["subset_boxes"] = boxes
    elif stage == 2:
        batch["local_images"] = torch.randn(b, k, 3, size, size, generator=g)
        batch["local_texts"] = tok(b * k).reshape(b, k, -1)
        batch["local_categories"] = torch.randint(0, 3, (b, k), generator=g)
        batch["local_categories"][1, 1] = -1
        batch["boxes"] = boxes
    return batch
