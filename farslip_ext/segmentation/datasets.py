"""The four benchmark datasets mmseg lacks, registered in ``mmseg.registry.DATASETS`` (ovss-protocol.md §2.4).

``OpenEarthMapDataset`` (``.tif``/``.tif``), ``UAVidDataset`` (``.png``/``.png``), ``UDD5Dataset`` and
``VDDDataset`` (``.JPG``/``.png``; the upper-case suffix matters, listing is case-sensitive). All are
plain ``BaseSegDataset`` subclasses with ``reduce_zero_label=False`` and ignore index 255, plus a check
that turns a missing folder, an empty folder or images without labels into an error naming the path
and the fix (mmseg would fail later, or silently evaluate nothing).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from farslip_ext.segmentation.benchmarks import BENCHMARKS, DatasetNotFoundError, benchmark_for_dataset_type

__all__ = ["CheckedSegDatasetMixin", "OpenEarthMapDataset", "UAVidDataset", "UDD5Dataset", "VDDDataset"]

logger = logging.getLogger(__name__)


class CheckedSegDatasetMixin:
    """Fail early and clearly on a missing/empty image folder or images whose label file is missing."""

    def _fix_hint(self) -> str:
        b = benchmark_for_dataset_type(type(self).__name__)
        if b is None:
            return "check data_root and data_prefix in the config"
        return (f"expected {b.roots[0]}/{b.img_dir}/*{b.img_suffix} and {b.roots[0]}/{b.ann_dir}/*{b.seg_map_suffix} "
                f"under the data root; create them from the official release ({b.official_release}) with "
                f"`{b.converter_command()}` and pass the data root (farslip ovss --data-root, or "
                f"test_dataloader.dataset.data_root in the config)")

    def load_data_list(self) -> List[dict]:
        name = type(self).__name__
        img_dir = self.data_prefix.get("img_path", None)
        ann_dir = self.data_prefix.get("seg_map_path", None)
        if not self.ann_file:
            for what, d in (("image", img_dir), ("label", ann_dir)):
                if d and not Path(d).is_dir():
                    raise DatasetNotFoundError(f"{name}: {what} folder {d} does not exist; {self._fix_hint()}")
        data_list = super().load_data_list()
        if not data_list:
            raise DatasetNotFoundError(f"{name}: no '*{self.img_suffix}' images found in {img_dir} (the suffix is "
                                       f"case-sensitive); {self._fix_hint()}")
        missing = [d["seg_map_path"] for d in data_list if d.get("seg_map_path") and not Path(d["seg_map_path"]).is_file()]
        if missing:
            raise DatasetNotFoundError(f"{name}: {len(missing)} of {len(data_list)} images have no label file, e.g. "
                                       f"{missing[0]}; {self._fix_hint()}")
        return data_list


def _meta(key: str) -> dict:
    b = BENCHMARKS[key]
    return dict(classes=b.classes, palette=[list(c) for c in b.palette])


@DATASETS.register_module()
class OpenEarthMapDataset(CheckedSegDatasetMixin, BaseSegDataset):
    """OpenEarthMap (without xBD) val: ``.tif`` images and labels 0..8; label 0 ("unknown") is scored as
    class ``background`` (both reference repos, §2.4)."""

    METAINFO = _meta("openearthmap")

    def __init__(self, img_suffix: str = ".tif", seg_map_suffix: str = ".tif", reduce_zero_label: bool = False,
                 **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, reduce_zero_label=reduce_zero_label,
                         **kwargs)


@DATASETS.register_module()
class UAVidDataset(CheckedSegDatasetMixin, BaseSegDataset):
    """UAVid test crops (1280×1080): labels 0 clutter, 1 building, 2 road, 3 car, 4 tree, 5 low vegetation,
    6 human; 255 padding."""

    METAINFO = _meta("uavid")

    def __init__(self, img_suffix: str = ".png", seg_map_suffix: str = ".png", reduce_zero_label: bool = False,
                 **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, reduce_zero_label=reduce_zero_label,
                         **kwargs)


@DATASETS.register_module()
class UDD5Dataset(CheckedSegDatasetMixin, BaseSegDataset):
    """UDD5 val: ``src/*.JPG`` images, ``gt/*.png`` labels 0 vegetation, 1 building, 2 road, 3 vehicle, 4 other."""

    METAINFO = _meta("udd5")

    def __init__(self, img_suffix: str = ".JPG", seg_map_suffix: str = ".png", reduce_zero_label: bool = False,
                 **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, reduce_zero_label=reduce_zero_label,
                         **kwargs)


@DATASETS.register_module()
class VDDDataset(CheckedSegDatasetMixin, BaseSegDataset):
    """VDD test: ``src/*.JPG`` images, ``gt/*.png`` labels 0 other, 1 wall, 2 road, 3 vegetation, 4 vehicle,
    5 roof, 6 water."""

    METAINFO = _meta("vdd")

    def __init__(self, img_suffix: str = ".JPG", seg_map_suffix: str = ".png", reduce_zero_label: bool = False,
                 **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, reduce_zero_label=reduce_zero_label,
                         **kwargs)
