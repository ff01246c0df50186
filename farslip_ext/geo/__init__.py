"""Georeferenced imagery: streamed, tiled open-vocabulary segmentation of GeoTIFFs and plain images (issue #7).

``farslip segment IMAGE... --classes "building,road,water"`` (docs/segment.md) is
:func:`segment_raster`, built on the mmseg-free OVSS core (:mod:`farslip_ext.ovss`): mmseg and mmcv are
never imported. Importing this package imports neither rasterio nor the model; they load when a
function runs.
"""
from __future__ import annotations

from farslip_ext.geo.classes import MAX_CLASSES, parse_classes
from farslip_ext.geo.errors import (BandSelectionError, ClassListError, GeoSegmentError, OutputExistsError,
                                    RasterNotFoundError, RasterReadError, TilingError)
from farslip_ext.geo.predictor import SegmentorPredictor, TilePredictor, build_predictor
from farslip_ext.geo.raster import BAND_PRESETS
from farslip_ext.geo.scaling import STRETCH_METHODS, BandStretch, compute_stretch
from farslip_ext.geo.segment import DEFAULT_WINDOW, MASK_NODATA, SegmentResult, output_paths, segment_raster
from farslip_ext.geo.tiling import Tile, check_tiling, iter_tiles

__all__ = [
    "BAND_PRESETS",
    "BandSelectionError",
    "BandStretch",
    "ClassListError",
    "DEFAULT_WINDOW",
    "GeoSegmentError",
    "MASK_NODATA",
    "MAX_CLASSES",
    "OutputExistsError",
    "RasterNotFoundError",
    "RasterReadError",
    "STRETCH_METHODS",
    "SegmentResult",
    "SegmentorPredictor",
    "Tile",
    "TilePredictor",
    "TilingError",
    "build_predictor",
    "check_tiling",
    "compute_stretch",
    "iter_tiles",
    "output_paths",
    "parse_classes",
    "segment_raster",
]
