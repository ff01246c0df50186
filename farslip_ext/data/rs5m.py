"""RS5M webdataset shards for stage 1 (``get_wds_dataset``; docs/reference/method.md §3.1, §1.1).

Each sample of a shard is a group of tar members ``<key>.img_content`` (encoded image bytes),
``<key>.img_name`` (utf-8) and ``<key>.caption`` (utf-8). The pipeline follows the reference:
shard list -> shuffle with ``seed + epoch`` -> split by node -> split by worker -> tar samples ->
sample shuffle (buffer 5000, initial 1000) -> decode (PIL) -> transform + tokenize ->
optional ``batched``. Unlike the reference (docs/reference/method.md §7.19), a sample whose member is missing, whose caption is
empty or blank, or whose image cannot be decoded is skipped, counted and logged instead of crashing the
run; ``max_skip`` such samples in a row stop it (:class:`~farslip_ext.data.base.UnreadableDataError`).

Shards are checked when the dataset is built: a URL pattern none of whose local files exists (a typo)
or all of whose files are empty is a :class:`~farslip_ext.errors.DataError` naming it and the close
matches on disk; some missing shards of a pattern are a warning. The random augmentation of a sample is
a function of ``(seed, epoch, shard, key)`` (``seed_transforms``), so the stream is the same on a
replay and with any number of workers' global RNG states: what makes a resumed run exact.

``webdataset`` is imported when the dataset is iterated (it is a training extra).
"""
from __future__ import annotations

import difflib
import hashlib
import io
import logging
import multiprocessing as mp
import os
import random
import re
import tarfile
from itertools import islice
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import torch
from PIL import Image
from torch.utils.data import IterableDataset

from farslip_ext.data.base import UnreadableDataError
from farslip_ext.data.collate import FarSLIPCollate, TokenizerSpec, build_tokenizer
from farslip_ext.data.transforms import MultiCropTransform, TransformSpec, build_transform
from farslip_ext.errors import DataError
from farslip_ext.registry import TRAIN_DATASETS

__all__ = ["RS5MWebDataset", "expand_shard_urls"]

logger = logging.getLogger(__name__)

Handler = Callable[[Exception], bool]


def expand_shard_urls(urls: Union[str, Sequence[str]]) -> List[str]:
    """Expand ``"a-{0000..0031}.tar::b-{0000..0031}.tar"`` brace/``::`` notation (webdataset's rule)."""
    import webdataset as wds

    if isinstance(urls, str):
        return list(wds.shardlists.expand_urls(urls))
    out: List[str] = []
    for u in urls:
        out.extend(wds.shardlists.expand_urls(str(u)))
    return out


class _MissingMember(KeyError):
    pass


class _BlankCaption(ValueError):
    pass


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _local_path(url: str) -> Optional[str]:
    """The file path of a local shard URL (plain path or ``file:``), None for remote/pipe URLs."""
    if url.startswith("file://"):
        return url[len("file://"):]
    if url.startswith("file:"):
        return url[len("file:"):]
    return None if _SCHEME.match(url) else url


def _patterns(urls: Union[str, Sequence[str]]) -> List[Union[str, List[str]]]:
    """The groups checked together: each brace/``::`` pattern, and all plain paths of a list as one group."""
    parts = urls.split("::") if isinstance(urls, str) else [str(u) for u in urls]
    braces: List[Union[str, List[str]]] = [p for p in parts if p and "{" in p]
    plain = [p for p in parts if p and "{" not in p]
    if isinstance(urls, str):
        return braces + plain  # type: ignore[operator]
    return braces + ([plain] if plain else [])


def _near(path: str) -> str:
    """Where a missing shard would be: the folder's absence, or its close matches in the folder."""
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        return f"the folder {folder} does not exist"
    names = sorted(os.listdir(folder))
    close = difflib.get_close_matches(os.path.basename(path), names, n=3, cutoff=0.6)
    tars = sum(n.endswith(".tar") for n in names)
    hint = f"did you mean {', '.join(repr(os.path.join(folder, c)) for c in close)}?" if close else "no close match"
    return f"{folder} holds {tars} .tar file(s); {hint}"


def check_shards(urls: Union[str, Sequence[str]]) -> List[str]:
    """Expand ``urls``; raise :class:`DataError` when a pattern has local files and none is a non-empty file
    (a typo, a wrong folder, zero-length downloads); warn when some are missing. Returns the shard list."""
    out: List[str] = []
    for pattern in _patterns(urls):
        expanded = expand_shard_urls(pattern)
        if not isinstance(pattern, str):
            pattern = pattern[0] if len(pattern) == 1 else f"{len(pattern)} paths from {pattern[0]}"
        out.extend(expanded)
        local = [(u, _local_path(u)) for u in expanded]
        local = [(u, p) for u, p in local if p is not None]
        if not local:
            continue  # remote: checked when read (an epoch without a sample is an error in the trainer)
        missing = [u for u, p in local if not os.path.isfile(p)]
        empty = [u for u, p in local if os.path.isfile(p) and os.path.getsize(p) == 0]
        bad = len(missing) + len(empty)
        if bad == len(local):
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing (e.g. {missing[0]}: {_near(_local_path(missing[0]) or '')})")
            if empty:
                parts.append(f"{len(empty)} empty, 0 bytes (e.g. {empty[0]})")
            raise DataError(f"RS5MWebDataset: urls pattern {pattern!r} matches no readable shard: of its "
                            f"{len(local)} file(s), {' and '.join(parts)}. Fix data.train.urls (brace notation "
                            f"'dir/name-{{0000..0031}}.tar', patterns joined with '::')")
        if bad:
            logger.warning("RS5MWebDataset: %d of the %d shard(s) of %r are missing or empty (first: %s); they are "
                           "skipped and counted as shard_errors", bad, len(local), pattern, (missing + empty)[0])
    return out


def _member_names(url: str, limit: int = 32) -> List[str]:
    """The member suffixes of the first samples of a local shard (``["caption", "img_content", ...]``)."""
    path = _local_path(url)
    if path is None or not os.path.isfile(path):
        return []
    found = set()
    try:
        with tarfile.open(path) as tf:
            for i, m in enumerate(tf):
                if i >= limit:
                    break
                if "." in os.path.basename(m.name):
                    found.add(os.path.basename(m.name).split(".", 1)[1])
    except (tarfile.TarError, OSError):
        return []
    return sorted(found)


@TRAIN_DATASETS.register_module()
class RS5MWebDataset(IterableDataset):
    """Stage-1 RS5M image-caption stream from webdataset shards (docs/reference/method.md §3.1).

    Yields ``{"global_image", "subset_images", "subset_boxes"}`` from the default
    :class:`MultiCropTransform` (any transform returning a tensor gives ``global_image`` only) plus
    ``global_text`` (``(L,)`` tokens, or the string without a tokenizer); with ``batch_size`` it
    yields collated batches (``(B, ...)``, last partial batch dropped like the reference).

    Shuffling is deterministic: the shard order is ``random.Random(seed + epoch)`` (the same on every
    rank and worker, then split), the sample buffer is seeded from ``(seed, epoch, rank, worker)``.
    Call :meth:`set_epoch` before each epoch; the epoch is shared with DataLoader workers.

    ``stats`` counts ``seen`` (samples read from tar), ``yielded``, ``skipped_missing`` (a member
    absent), ``skipped_no_caption`` (empty or blank caption), ``skipped_corrupt`` (decode/transform
    failure) and ``shard_errors`` (tar-level errors, e.g. a truncated shard: the rest of that shard is
    lost). Each DataLoader worker counts in its own copy and logs its totals at the end of its pass;
    :meth:`pass_stats` sums the current epoch's passes of this process and its workers.

    Args:
        urls: Shard paths/URLs, a list or brace notation (``"rs3-train-{0000..0031}.tar"``).
        transform: ``None`` (:class:`MultiCropTransform` at ``image_size``), a callable or config.
        tokenizer: ``None`` (raw strings), an open_clip model name, dict or callable.
        context_length: Tokenizer context override (77 / 248).
        image_size: Size of the default transform.
        shuffle: Shuffle shards and samples.
        seed: Base seed (reference: 0).
        epoch: Initial epoch.
        shuffle_buffer: Sample-shuffle buffer size (5000).
        shuffle_initial: Samples buffered before the first is yielded (1000).
        batch_size: If set, batch inside the pipeline with ``collate_fn`` (use ``DataLoader(batch_size=None)``).
        collate_fn: Collate for ``batch_size``; also exposed as ``self.collate_fn`` for a DataLoader
            (default :class:`FarSLIPCollate` with this dataset's tokenizer).
        num_samples: Stop each worker after this many yielded samples (``None``: one pass).
        handler: webdataset exception handler called after counting/logging a tar-level error
            (``wds.ignore_and_continue`` by default; ``wds.warn_and_continue`` also warns and sleeps
            0.5 s; ``wds.reraise_exception`` stops).
        image_key: Member holding the image bytes.
        caption_key: Member holding the caption.
        name_key: Member holding the image name (kept as ``img_name`` when ``keep_name``).
        keep_name: Add ``img_name`` (str) to each sample.
        require_enough_shards: Raise if a worker gets no shard (the reference asserts
            ``num_shards >= workers * world_size``).
        max_skip: Raise :class:`UnreadableDataError` after this many unreadable samples in a row (``None``:
            never); a stream of nothing but unreadable samples stops within seconds, not after the epoch.
        seed_transforms: Run each sample's transform under a torch RNG seeded from ``(seed, epoch, shard,
            key)``: the same augmentation on a replay and whatever the global RNG (exact resume).
    """

    STAT_KEYS = ("seen", "yielded", "skipped_missing", "skipped_no_caption", "skipped_corrupt", "shard_errors")

    def __init__(
        self,
        urls: Union[str, Sequence[str]],
        transform: TransformSpec = None,
        tokenizer: TokenizerSpec = None,
        context_length: Optional[int] = None,
        image_size: int = 224,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        shuffle_buffer: int = 5000,
        shuffle_initial: int = 1000,
        batch_size: Optional[int] = None,
        collate_fn: Optional[Callable[[List[Dict[str, Any]]], Dict[str, Any]]] = None,
        num_samples: Optional[int] = None,
        handler: Optional[Handler] = None,
        image_key: str = "img_content",
        caption_key: str = "caption",
        name_key: str = "img_name",
        keep_name: bool = False,
        require_enough_shards: bool = True,
        max_skip: Optional[int] = 1000,
        seed_transforms: bool = True,
    ) -> None:
        super().__init__()
        self.url_spec = urls
        self.urls = check_shards(urls)
        if not self.urls:
            raise DataError(f"RS5MWebDataset: no shards in urls={urls!r}")
        self.transform = build_transform(transform, lambda: MultiCropTransform(image_size))
        self.tokenizer = build_tokenizer(tokenizer, context_length)
        self.shuffle = shuffle
        self.seed = int(seed)
        self._epoch = mp.Value("i", int(epoch))
        self.shuffle_buffer, self.shuffle_initial = int(shuffle_buffer), int(shuffle_initial)
        self.batch_size = batch_size
        self.collate_fn = collate_fn or FarSLIPCollate(tokenizer=self.tokenizer)
        self.num_samples = num_samples
        self.handler = handler
        self.image_key, self.caption_key, self.name_key = image_key, caption_key, name_key
        self.keep_name = keep_name
        self.require_enough_shards = require_enough_shards
        self.max_skip = None if max_skip is None else int(max_skip)
        self.seed_transforms = bool(seed_transforms)
        self.stats: Dict[str, int] = {k: 0 for k in self.STAT_KEYS}
        self._pass_totals = mp.Array("q", len(self.STAT_KEYS))  # this epoch, summed over the worker processes

    # -- epochs ------------------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return int(self._epoch.value)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch used to seed the shard and sample shuffles (shared with workers); zero :meth:`pass_stats`."""
        self._epoch.value = int(epoch)
        with self._pass_totals.get_lock():
            for i in range(len(self.STAT_KEYS)):
                self._pass_totals[i] = 0

    def pass_stats(self) -> Dict[str, int]:
        """Counters of the passes since :meth:`set_epoch`, summed over this process and its DataLoader workers
        (a worker adds its counts when its pass ends)."""
        with self._pass_totals.get_lock():
            return {k: int(self._pass_totals[i]) for i, k in enumerate(self.STAT_KEYS)}

    def describe_pass(self) -> str:
        """What the current epoch read, for the error of an epoch without a batch: the shards and the counters."""
        t = self.pass_stats()
        if t["seen"] == 0 and t["shard_errors"]:
            why = "no sample could be read: every shard failed to open or did not read as a tar file"
        elif t["seen"] == 0:
            why = "the shards hold no sample"
        elif t["yielded"] == 0:
            members = _member_names(self.urls[0])
            why = (f"0 readable samples of {t['seen']} read (image_key={self.image_key!r}, "
                   f"caption_key={self.caption_key!r}" + (f"; {self.urls[0]} holds members {members}" if members else "")
                   + ")")
        else:
            why = f"{t['yielded']} readable sample(s), fewer than one batch per worker"
        n = len(self.urls)
        shown = ", ".join(self.urls[:3]) + (f" and {n - 3} more" if n > 3 else "")
        counts = ", ".join(f"{k}={v}" for k, v in t.items())
        return f"{why}. The {n} shard(s) of urls={self.url_spec!r}: {shown}; counted: {counts}"

    def reset_stats(self) -> None:
        """Zero all counters."""
        for k in self.stats:
            self.stats[k] = 0

    def log_stats(self, level: int = logging.INFO) -> None:
        """Log this process's counters once."""
        logger.log(level, "RS5MWebDataset stats: %s", self.stats)

    # -- pipeline stages ---------------------------------------------------------------------------
    def _tar_handler(self, exn: Exception) -> bool:
        self.stats["shard_errors"] += 1
        logger.warning("RS5MWebDataset: tar-level error (rest of the shard skipped): %r", exn)
        if self.handler is None:
            return True
        return self.handler(exn)

    def shard_order(self, epoch: Optional[int] = None) -> List[str]:
        """All shards in this epoch's order (before the node/worker split)."""
        urls = list(self.urls)
        if self.shuffle:
            random.Random(self.seed + (self.epoch if epoch is None else epoch)).shuffle(urls)
        return urls

    def sample_seed(self, sample: Mapping[str, Any], epoch: Optional[int] = None) -> int:
        """The seed of a sample's augmentation: a hash of ``(seed, epoch, shard url, key)``."""
        text = f"{self.seed}|{self.epoch if epoch is None else epoch}|{sample.get('__url__')}|{sample.get('__key__')}"
        return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little") >> 1

    def decode(self, sample: Mapping[str, Any]) -> Dict[str, Any]:
        """One raw tar sample -> model inputs. Raises :class:`KeyError` for a missing member."""
        for k in (self.image_key, self.caption_key):
            if k not in sample:
                raise _MissingMember(f"sample {sample.get('__key__')!r} of {sample.get('__url__')} has no {k!r} member")
        caption = sample[self.caption_key]
        caption = caption.decode("utf-8") if isinstance(caption, (bytes, bytearray)) else str(caption)
        if not caption.strip():
            raise _BlankCaption(f"sample {sample.get('__key__')!r} of {sample.get('__url__')} has an empty or blank "
                                f"{self.caption_key!r}")
        with Image.open(io.BytesIO(sample[self.image_key])) as img:
            img.load()
            img = img.convert("RGB")
        if self.seed_transforms:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.sample_seed(sample))
                out = self.transform(img)
        else:
            out = self.transform(img)
        out = dict(out) if isinstance(out, Mapping) else {"global_image": out}
        out["global_text"] = self.tokenizer([caption])[0] if self.tokenizer is not None else caption
        if self.keep_name:
            name = sample.get(self.name_key, b"")
            out["img_name"] = name.decode("utf-8") if isinstance(name, (bytes, bytearray)) else str(name)
        return out

    def _decoded(self, samples: Iterator[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
        in_a_row = 0
        for sample in samples:
            self.stats["seen"] += 1
            try:
                out = self.decode(sample)
            except _MissingMember as e:
                self.stats["skipped_missing"] += 1
                logger.warning("RS5MWebDataset: skipped: %s", e.args[0])
            except _BlankCaption as e:
                self.stats["skipped_no_caption"] += 1
                logger.warning("RS5MWebDataset: skipped: %s", e.args[0])
            except Exception as e:  # noqa: BLE001 - any decode/transform failure skips the sample
                self.stats["skipped_corrupt"] += 1
                logger.warning(
                    "RS5MWebDataset: skipped corrupt sample %r of %s: %r",
                    sample.get("__key__"), sample.get("__url__"), e,
                )
            else:
                in_a_row = 0
                self.stats["yielded"] += 1
                yield out
                continue
            in_a_row += 1
            if self.max_skip is not None and in_a_row >= self.max_skip:
                raise UnreadableDataError(
                    f"RS5MWebDataset: {in_a_row} samples in a row were unreadable (last: {sample.get('__key__')!r} "
                    f"of {sample.get('__url__')}; counted: {self.stats}); check image_key={self.image_key!r} and "
                    f"caption_key={self.caption_key!r} against the shards' members "
                    f"{_member_names(str(sample.get('__url__')))}, or raise data.train.max_skip (None: never stop)")

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        import webdataset as wds

        rank, world, worker, nworkers = wds.utils.pytorch_worker_info()
        epoch = self.epoch
        shards = list(wds.split_by_worker(wds.split_by_node(self.shard_order(epoch))))
        if not shards:
            msg = (
                f"RS5MWebDataset: rank {rank} worker {worker} got no shard: {len(self.urls)} shard(s) for "
                f"{world} rank(s) x {nworkers} worker(s); use fewer workers or more shards"
            )
            if self.require_enough_shards:
                raise ValueError(msg)
            logger.warning(msg)
            return
        raw = wds.tarfile_samples([{"url": u} for u in shards], handler=self._tar_handler)
        if self.shuffle and self.shuffle_buffer > 1:
            rng = random.Random(f"{self.seed}-{epoch}-{rank}-{worker}")
            raw = wds.shuffle(self.shuffle_buffer, self.shuffle_initial, rng=rng)(raw)
        stream: Iterator[Dict[str, Any]] = self._decoded(iter(raw))
        if self.num_samples is not None:
            stream = islice(stream, int(self.num_samples))
        if self.batch_size is not None:
            stream = self._batched(stream, int(self.batch_size))
        before = dict(self.stats)
        try:
            yield from stream
        finally:
            with self._pass_totals.get_lock():
                for i, k in enumerate(self.STAT_KEYS):
                    self._pass_totals[i] += self.stats[k] - before.get(k, 0)
        logger.info("RS5MWebDataset rank %d worker %d epoch %d: %s", rank, worker, epoch, self.stats)

    def _batched(self, stream: Iterator[Dict[str, Any]], n: int) -> Iterator[Dict[str, Any]]:
        while True:
            chunk = list(islice(stream, n))
            if len(chunk) < n:  # partial=False, as the reference
                return
            yield self.collate_fn(chunk)
