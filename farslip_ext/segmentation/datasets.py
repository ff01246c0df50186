"""The four benchmark datasets mmseg lacks, registered in ``mmseg.registry.DATASETS``
(docs/reference/ovss-evaluation.md#24-datasets-reduce_zero_label-and-ignore-index).

``OpenEarthMapDataset`` (``.tif``/``.tif``), ``UAVidDataset`` (``.png``/``.png``), ``UDD5Dataset`` and
``VDDDataset`` (``.JPG``/``.png``; the upper-case suffix matters, listing is case-sensitive). All are
plain ``BaseSegDataset`` subclasses with ``reduce_zero_label=False`` and ignore index 255, plus a check
that turns a missing folder, an empty folder or images without labels into an error naming the path
and the fix (mmseg would fail later, or silently evaluate nothing). Their classes are here, as mmseg's
own datasets keep theirs; everything else about a benchmark is in its config file.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List

from farslip_ext.ovss.benchmarks import DatasetNotFoundError, list_benchmarks
from farslip_ext.segmentation.openmmlab import DATASETS, BaseSegDataset

__all__ = ["CheckedSegDatasetMixin", "OpenEarthMapDataset", "UAVidDataset", "UDD5Dataset", "VDDDataset"]

logger = logging.getLogger(__name__)


class CheckedSegDatasetMixin:
    """Fail early and clearly on a missing/empty image folder or images whose label file is missing."""

    def _fix_hint(self) -> str:
        b = next((b for b in list_benchmarks() if b.dataset_type == type(self).__name__), None)
        if b is None:
            return "check data_root and data_prefix in the config"
        return (f"expected {b.roots[0]}/{b.img_dir}/*{b.img_suffix} and {b.roots[0]}/{b.ann_dir}/*{b.seg_map_suffix} "
                f"under the data root; create them with {b.converter_command()} and pass the data root "
                f"(farslip ovss --data-root, or test_dataloader.dataset.data_root in the config)")

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


@DATASETS.register_module()
class OpenEarthMapDataset(CheckedSegDatasetMixin, BaseSegDataset):
    """OpenEarthMap (without xBD) val: ``.tif`` images and labels 0..8; label 0 ("unknown") is scored as
    class ``background`` (both reference repos)."""

    METAINFO = dict(
        classes=("background", "bareland", "grass", "pavement", "road", "tree", "water", "cropland", "building"),
        palette=[[0, 0, 0], [128, 0, 0], [0, 255, 36], [148, 148, 148], [255, 255, 255], [34, 97, 38], [0, 69, 255],
                 [75, 181, 73], [222, 31, 7]])

    def __init__(self, img_suffix: str = ".tif", seg_map_suffix: str = ".tif", reduce_zero_label: bool = False,
                 **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, reduce_zero_label=reduce_zero_label,
                         **kwargs)


@DATASETS.register_module()
class UAVidDataset(CheckedSegDatasetMixin, BaseSegDataset):
    """UAVid test crops (1280×1080): labels 0 clutter, 1 building, 2 road, 3 car, 4 tree, 5 low vegetation,
    6 human; 255 padding."""

    METAINFO = dict(
        classes=("background", "building", "road", "car", "tree", "vegetation", "human"),
        palette=[[0, 0, 0], [128, 0, 0], [128, 64, 128], [192, 0, 192], [0, 128, 0], [128, 128, 0], [64, 64, 0]])

    def __init__(self, img_suffix: str = ".png", seg_map_suffix: str = ".png", reduce_zero_label: bool = False,
                 **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, reduce_zero_label=reduce_zero_label,
                         **kwargs)


@DATASETS.register_module()
class UDD5Dataset(CheckedSegDatasetMixin, BaseSegDataset):
    """UDD5 val: ``src/*.JPG`` images, ``gt/*.png`` labels 0 vegetation, 1 building, 2 road, 3 vehicle, 4 other."""

    METAINFO = dict(
        classes=("vegetation", "building", "road", "vehicle", "other"),
        palette=[[107, 142, 35], [102, 102, 156], [128, 64, 128], [0, 0, 142], [0, 0, 0]])

    def __init__(self, img_suffix: str = ".JPG", seg_map_suffix: str = ".png", reduce_zero_label: bool = False,
                 **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, reduce_zero_label=reduce_zero_label,
                         **kwargs)


@DATASETS.register_module()
class VDDDataset(CheckedSegDatasetMixin, BaseSegDataset):
    """VDD test: ``src/*.JPG`` images, ``gt/*.png`` labels 0 other, 1 wall, 2 road, 3 vegetation, 4 vehicle,
    5 roof, 6 water."""

    METAINFO = dict(
        classes=("other", "wall", "road", "vegetation", "vehicle", "roof", "water"),
        palette=[[0, 0, 0], [102, 102, 156], [128, 64, 128], [107, 142, 35], [0, 0, 142], [70, 70, 70],
                 [28, 42, 168]])

    def __init__(self, img_suffix: str = ".JPG", seg_map_suffix: str = ".png", reduce_zero_label: bool = False,
                 **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, reduce_zero_label=reduce_zero_label,
                         **kwargs)
