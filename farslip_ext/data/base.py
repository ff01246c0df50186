"""The base class of map-style training datasets: counted, logged skips of unreadable items.

A new data format is one subclass (docs/data.md, "Adding a format")::

    @TRAIN_DATASETS.register_module()
    class MyFormat(SkippingDataset):
        STAT_KEYS = SkippingDataset.STAT_KEYS + ("skipped_no_caption",)   # extra counters (optional)

        def __init__(self, path, tokenizer=None, max_skip=100):
            super().__init__(max_skip=max_skip, tokenizer=tokenizer)
            self.rows = read_my_index(path)

        def __len__(self):
            return len(self.rows)

        def load(self, idx):                      # one sample of the batch contract (farslip_ext.data.batch)
            row = self.rows[idx]
            if not row.caption:
                raise SkipSample("skipped_no_caption", "no caption")
            img = load_image(row.path)            # a missing file / corrupt image is skipped and counted
            return {"global_image": transform(img), "global_text": self.tokenize(row.caption)}

``dataset[i]`` returns ``load(i)``, or — when item ``i`` is unreadable — the next readable item
(``i+1``, ``i+2``, ... wrapping around, at most ``max_skip`` tries, then :class:`UnreadableDataError`).
Unreadable means ``load`` raised :class:`SkipSample` (counted under its ``stat``), ``FileNotFoundError``
(``skipped_missing``), or ``OSError`` / ``PIL.UnidentifiedImageError`` / ``ValueError`` / ``SyntaxError``
(``skipped_corrupt``). Every skip is logged with the item's :meth:`SkippingDataset.item_name`.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple, Union

import torch
from PIL import UnidentifiedImageError
from torch.utils.data import Dataset

from farslip_ext.data.batch import Sample
from farslip_ext.data.collate import FarSLIPCollate, TokenizerSpec, build_tokenizer
from farslip_ext.errors import DataError

__all__ = ["SkipSample", "SkippingDataset", "UnreadableDataError"]

logger = logging.getLogger(__name__)


class SkipSample(Exception):
    """Raised by :meth:`SkippingDataset.load` to skip an item and count it under ``stat``."""

    def __init__(self, stat: str, reason: str) -> None:
        super().__init__(reason)
        self.stat = stat


class UnreadableDataError(DataError, RuntimeError):
    """``max_skip`` consecutive items could not be read."""


class SkippingDataset(Dataset):
    """Base class: counters, logging and the skip-to-next-readable-item rule (see the module docstring).

    Args:
        max_skip: how many unreadable items in a row ``__getitem__`` skips before raising.
        tokenizer: ``None`` (texts stay strings), an open_clip model name, ``dict(name=, context_length=)``
            or a callable; the trainer passes the model's tokenizer.
        context_length: tokenizer context override (77 / 248).

    Attributes:
        tokenizer: the resolved tokenizer (or None); :meth:`tokenize` uses it.
        collate_fn: a :class:`~farslip_ext.data.collate.FarSLIPCollate` with that tokenizer, for the DataLoader.
    """

    #: Counters every dataset has; subclasses append their own.
    STAT_KEYS: Tuple[str, ...] = ("seen", "yielded", "skipped_missing", "skipped_corrupt")

    def __init__(self, max_skip: int = 100, tokenizer: TokenizerSpec = None,
                 context_length: Optional[int] = None) -> None:
        self.max_skip = int(max_skip)
        self._stats: Dict[str, int] = {k: 0 for k in self.STAT_KEYS}
        self.tokenizer = build_tokenizer(tokenizer, context_length)
        self.collate_fn = FarSLIPCollate(tokenizer=self.tokenizer)

    # ---- what a subclass implements --------------------------------------------------------------
    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, idx: int) -> Sample:
        """Read item ``idx`` (raise to skip it, see the module docstring)."""
        raise NotImplementedError(f"{type(self).__name__} must implement load(idx)")

    def item_name(self, idx: int) -> str:
        """A short description of item ``idx`` for log messages (e.g. its image path)."""
        return "?"

    # ---- provided ---------------------------------------------------------------------------------
    @property
    def stats(self) -> Dict[str, int]:
        """A snapshot of the counters."""
        return dict(self._stats)

    def count(self, stat: str, n: int = 1) -> None:
        """Add ``n`` to a counter (created on first use)."""
        self._stats[stat] = self._stats.get(stat, 0) + n

    def reset_stats(self) -> None:
        """Zero all counters."""
        for k in self._stats:
            self._stats[k] = 0

    def log_stats(self, level: int = logging.INFO) -> None:
        """Log the counters once."""
        logger.log(level, "%s stats: %s", type(self).__name__, self.stats)

    def tokenize(self, text: str) -> Union[str, torch.Tensor]:
        """``(L,)`` tokens of one text with :attr:`tokenizer`, or the text itself without one."""
        return self.tokenizer([text])[0] if self.tokenizer is not None else text

    def _load(self, idx: int) -> Sample:  # the name used before this class was public
        return self.load(idx)

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} out of range for {type(self).__name__} of length {n}")
        idx %= n
        name = type(self).__name__
        for attempt in range(min(self.max_skip, n)):
            j = (idx + attempt) % n
            self.count("seen")
            try:
                sample = self._load(j)
            except SkipSample as e:
                self.count(e.stat)
                logger.warning("%s: item %d (%s) skipped (%s): %s", name, j, self.item_name(j), e.stat, e)
                continue
            except FileNotFoundError as e:
                self.count("skipped_missing")
                logger.warning("%s: item %d (%s) skipped, image missing: %s", name, j, self.item_name(j), e)
                continue
            except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
                self.count("skipped_corrupt")
                logger.warning("%s: item %d (%s) skipped, unreadable: %r", name, j, self.item_name(j), e)
                continue
            self.count("yielded")
            return dict(sample)
        raise UnreadableDataError(
            f"{name}: {min(self.max_skip, n)} consecutive items from index {idx} were unreadable "
            f"(stats {self.stats}); check the image root and the annotation file")
