"""FarSLIP data: transforms, datasets, collate and synthetic data (docs/reference/method.md §1.1, §2.1, §3).

Importing this package registers the transforms (``SAMPLE_TRANSFORMS``: ``MultiCropTransform``,
``Stage2TrainTransform``, ``SquashTransform``, ``EvalTransform``, ``RegionCropper``,
``FarSLIPCollate``) and datasets (``TRAIN_DATASETS``: ``RS5MWebDataset``, ``MGRSJsonDataset``,
``SkyScriptCsvDataset``, ``ImageTextDataset``). The batch contract is :mod:`farslip_ext.data.batch`;
a new map-style format subclasses :class:`SkippingDataset` (:mod:`farslip_ext.data.base`).
``webdataset`` (a training extra) is imported only when RS5M shards are read or written. See docs/data.md.
"""
from __future__ import annotations

from farslip_ext.data import synthetic
from farslip_ext.data.base import SkippingDataset, SkipSample, UnreadableDataError
from farslip_ext.data.batch import BATCH_KEYS, PAIR_KEYS, STAGE1_KEYS, STAGE2_KEYS, Batch, Sample, check_batch
from farslip_ext.data.collate import FarSLIPCollate, build_tokenizer, collate_farslip
from farslip_ext.data.datasets import (
    BBox,
    ImageTextDataset,
    MGRSJsonDataset,
    SkyScriptCsvDataset,
    load_image,
    parse_bbox,
    read_classnames,
)
from farslip_ext.data.rs5m import RS5MWebDataset, expand_shard_urls
from farslip_ext.data.transforms import (
    OPENAI_MEAN,
    OPENAI_STD,
    REGION_PROMPT,
    EvalTransform,
    MultiCropTransform,
    RegionCropper,
    SquashTransform,
    Stage2TrainTransform,
    build_transform,
)

__all__ = [
    "synthetic",
    "Batch",
    "Sample",
    "BATCH_KEYS",
    "check_batch",
    "SkippingDataset",
    "UnreadableDataError",
    "PAIR_KEYS",
    "STAGE1_KEYS",
    "STAGE2_KEYS",
    "FarSLIPCollate",
    "build_tokenizer",
    "collate_farslip",
    "BBox",
    "ImageTextDataset",
    "MGRSJsonDataset",
    "SkipSample",
    "SkyScriptCsvDataset",
    "load_image",
    "parse_bbox",
    "read_classnames",
    "RS5MWebDataset",
    "expand_shard_urls",
    "OPENAI_MEAN",
    "OPENAI_STD",
    "REGION_PROMPT",
    "EvalTransform",
    "MultiCropTransform",
    "RegionCropper",
    "SquashTransform",
    "Stage2TrainTransform",
    "build_transform",
]
