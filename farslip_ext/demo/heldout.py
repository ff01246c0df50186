"""The training objectives of both stages measured on held-out data (no gradient, fixed batches).

The loop's own log holds the loss of each *training* batch: with 16 batches of 32 it moves by
±30 % from batch to batch, so its first and last values say little. Here the stage's objective
(the recipe's task and loss weights, built from the same config as the training run) is averaged
over held-out batches that never enter training, with a fixed seed for the random crops, so the
number before and after a stage is measured on identical inputs.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Dict, Union

import numpy as np
import torch

__all__ = ["heldout_objective"]


def heldout_objective(cfg: Any, weights: Union[str, Path], seed: int = 0) -> Dict[str, float]:
    """Mean of every ``*_loss`` term (and their sum, ``loss``) of ``cfg``'s task over ``cfg.data.train``.

    ``cfg`` is a resolved training config (``farslip_ext.train.load_config``) whose ``data.train``
    points at a held-out split; the model is ``cfg.model.name`` with ``weights``. Streams are read in
    order (no shuffling) and the last partial batch is dropped, as in training.
    """
    from torch.utils.data import DataLoader, IterableDataset

    from farslip_ext.loading import get_tokenizer, load
    from farslip_ext.registry import TASKS, TRAIN_DATASETS

    lm = load(cfg.model.name, str(weights), device="cpu", precision="fp32")
    tokenizer = get_tokenizer(lm.model, cfg.model.name)
    task = TASKS.build(dict(cfg.task), default_args=dict(model=lm.model)).eval()
    spec = dict(cfg.data.train)
    if spec.get("type") == "RS5MWebDataset":
        spec["shuffle"] = False
    dataset = TRAIN_DATASETS.build(spec, default_args=dict(tokenizer=tokenizer))
    kw: Dict[str, Any] = dict(batch_size=int(cfg.data.batch_size), num_workers=0, drop_last=True,
                              collate_fn=getattr(dataset, "collate_fn", None))
    if not isinstance(dataset, IterableDataset):
        kw["shuffle"] = False
    loader = DataLoader(dataset, **kw)
    state = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    sums: Dict[str, float] = {}
    batches = 0
    try:
        with torch.no_grad():
            for batch in loader:
                losses, _ = task(batch)
                terms = {k: float(v) for k, v in losses.items() if k.endswith("_loss")}
                terms["loss"] = sum(terms.values())
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v
                batches += 1
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])
    if not batches:
        raise ValueError(f"the held-out split {spec.get('urls') or spec.get('json_path')} gives no full batch of "
                         f"{cfg.data.batch_size}")
    out = {k: v / batches for k, v in sums.items()}
    out["batches"] = float(batches)
    return out

