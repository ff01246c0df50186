"""RS5M webdataset shards for stage 1 (``get_wds_dataset``; farslip-method.md §3.1, §1.1).

Each sample of a shard is a group of tar members ``<key>.img_content`` (encoded image bytes),
``<key>.img_name`` (utf-8) and ``<key>.caption`` (utf-8). The pipeline follows the reference:
shard list -> shuffle with ``seed + epoch`` -> split by node -> split by worker -> tar samples ->
sample shuffle (buffer 5000, initial 1000) -> decode (PIL) -> transform + tokenize ->
optional ``batched``. Unlike the reference (§7.19), a sample whose member is missing or whose
image cannot be decoded is skipped, counted and logged instead of crashing the run.

``webdataset`` is imported when the dataset is iterated (it is a training extra).
"""
from __future__ import annotations

import io
import logging
import multiprocessing as mp
import random
from itertools import islice
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from PIL import Image
from torch.utils.data import IterableDataset

from farslip_ext.data.collate import FarSLIPCollate, TokenizerSpec, build_tokenizer
from farslip_ext.data.transforms import MultiCropTransform, TransformSpec, build_transform
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


@TRAIN_DATASETS.register_module()
class RS5MWebDataset(IterableDataset):
    """Stage-1 RS5M image-caption stream from webdataset shards (§3.1).

    Yields ``{"global_image", "subset_images", "subset_boxes"}`` from the default
    :class:`MultiCropTransform` (any transform returning a tensor gives ``global_image`` only) plus
    ``global_text`` (``(L,)`` tokens, or the string without a tokenizer); with ``batch_size`` it
    yields collated batches (``(B, ...)``, last partial batch dropped like the reference).

    Shuffling is deterministic: the shard order is ``random.Random(seed + epoch)`` (the same on every
    rank and worker, then split), the sample buffer is seeded from ``(seed, epoch, rank, worker)``.
    Call :meth:`set_epoch` before each epoch; the epoch is shared with DataLoader workers.

    ``stats`` counts ``seen`` (samples read from tar), ``yielded``, ``skipped_missing`` (a member
    absent), ``skipped_corrupt`` (decode/transform failure) and ``shard_errors`` (tar-level errors,
    e.g. a truncated shard: the rest of that shard is lost). Each DataLoader worker counts in its own
    copy and logs its totals at the end of its pass.

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
    """

    STAT_KEYS = ("seen", "yielded", "skipped_missing", "skipped_corrupt", "shard_errors")

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
    ) -> None:
        super().__init__()
        self.urls = expand_shard_urls(urls)
        if not self.urls:
            raise ValueError(f"RS5MWebDataset: no shards in {urls!r}")
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
        self.stats: Dict[str, int] = {k: 0 for k in self.STAT_KEYS}

    # -- epochs ------------------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return int(self._epoch.value)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch used to seed the shard and sample shuffles (shared with workers)."""
        self._epoch.value = int(epoch)

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

    def decode(self, sample: Mapping[str, Any]) -> Dict[str, Any]:
        """One raw tar sample -> model inputs. Raises :class:`KeyError` for a missing member."""
        for k in (self.image_key, self.caption_key):
            if k not in sample:
                raise _MissingMember(f"sample {sample.get('__key__')!r} of {sample.get('__url__')} has no {k!r} member")
        with Image.open(io.BytesIO(sample[self.image_key])) as img:
            img.load()
            img = img.convert("RGB")
        caption = sample[self.caption_key]
        caption = caption.decode("utf-8") if isinstance(caption, (bytes, bytearray)) else str(caption)
        out = self.transform(img)
        out = dict(out) if isinstance(out, Mapping) else {"global_image": out}
        out["global_text"] = self.tokenizer([caption])[0] if self.tokenizer is not None else caption
        if self.keep_name:
            name = sample.get(self.name_key, b"")
            out["img_name"] = name.decode("utf-8") if isinstance(name, (bytes, bytearray)) else str(name)
        return out

    def _decoded(self, samples: Iterator[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
        for sample in samples:
            self.stats["seen"] += 1
            try:
                out = self.decode(sample)
            except _MissingMember as e:
                self.stats["skipped_missing"] += 1
                logger.warning("RS5MWebDataset: skipped: %s", e.args[0])
                continue
            except Exception as e:  # noqa: BLE001 - any decode/transform failure skips the sample
                self.stats["skipped_corrupt"] += 1
                logger.warning(
                    "RS5MWebDataset: skipped corrupt sample %r of %s: %r",
                    sample.get("__key__"), sample.get("__url__"), e,
                )
                continue
            self.stats["yielded"] += 1
            yield out

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
        yield from stream
        logger.info("RS5MWebDataset rank %d worker %d epoch %d: %s", rank, worker, epoch, self.stats)

    def _batched(self, stream: Iterator[Dict[str, Any]], n: int) -> Iterator[Dict[str, Any]]:
        while True:
            chunk = list(islice(stream, n))
            if len(chunk) < n:  # partial=False, as the reference
                return
            yield self.collate_fn(chunk)
