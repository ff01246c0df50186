"""Errors of ``farslip segment`` / :func:`farslip_ext.geo.segment_raster`.

All are ``ValueError`` or ``FileNotFoundError`` subclasses, so the ``farslip`` CLI reports them as one
line (``farslip segment: error: ...``) with exit status 2. Each message names the offending value and
the fix.
"""
from __future__ import annotations

from farslip_ext.errors import FarSLIPError

__all__ = ["GeoSegmentError", "RasterReadError", "RasterNotFoundError", "BandSelectionError", "TilingError",
           "ClassListError", "OutputExistsError"]


class GeoSegmentError(FarSLIPError, ValueError):
    """Base class of the usage errors of the geo segmentation."""


class RasterNotFoundError(FarSLIPError, FileNotFoundError):
    """The input image does not exist."""


class RasterReadError(GeoSegmentError):
    """The input exists but GDAL cannot read it as a raster (or a window of it)."""


class BandSelectionError(GeoSegmentError):
    """``--bands`` is malformed, names a band the file lacks, or is needed but missing."""


class TilingError(GeoSegmentError):
    """Inconsistent ``--window`` / ``--stride`` / ``--tile`` / ``--halo``."""


class ClassListError(GeoSegmentError):
    """``--classes`` is empty, malformed, or has too few / too many classes."""


class OutputExistsError(GeoSegmentError):
    """An output file exists and ``--overwrite`` was not given."""
