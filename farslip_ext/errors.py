"""Expected failures of farslip_ext: one base class, :class:`FarSLIPError`.

Every error a user can cause (a wrong file, a missing download, a bad config value) is a
``FarSLIPError``; the ``farslip`` CLI prints it as one line and exits with code 2 (``-v`` adds the
traceback). Each subclass also derives from the closest built-in exception, so existing
``except ValueError`` / ``except FileNotFoundError`` code keeps working.

This module imports nothing from farslip_ext (it is the ground floor).
"""
from __future__ import annotations

__all__ = [
    "FarSLIPError",
    "ConfigError",
    "CheckpointFormatError",
    "NonFiniteWeightsError",
    "WeightsNotAvailableError",
    "ChecksumError",
    "CacheCorruptError",
    "ContextLengthMismatch",
    "DestinationExistsError",
    "ClassNamesError",
    "LabelFormatError",
    "DataError",
    "PluginError",
    "CompatibilityError",
]


class FarSLIPError(Exception):
    """Base class of every expected failure (the CLI shows its message, not a traceback)."""


class ConfigError(FarSLIPError, ValueError):
    """A config key or value is unknown, of the wrong type or out of range."""


class CheckpointFormatError(FarSLIPError, ValueError):
    """A checkpoint whose contents fit no known container or architecture, or that cannot be read."""


class NonFiniteWeightsError(CheckpointFormatError):
    """A checkpoint (or a model state about to be saved) holds NaN or infinite values."""


class WeightsNotAvailableError(FarSLIPError, FileNotFoundError):
    """The weights are neither cached nor downloadable from here."""


class ChecksumError(FarSLIPError, ValueError):
    """A downloaded file does not match the sha256 recorded in the manifest."""


class CacheCorruptError(FarSLIPError, ValueError):
    """A cache file does not match the size/hash recorded beside it (it is rebuilt when possible)."""


class ContextLengthMismatch(FarSLIPError, ValueError):
    """The weights' text context length differs from the architecture's."""


class DestinationExistsError(FarSLIPError, FileExistsError):
    """A command would overwrite a file or folder (pass ``--overwrite``) or its own source."""


class ClassNamesError(FarSLIPError, ValueError):
    """A class-name file or list is malformed (blank line, duplicate, empty name ...)."""


class LabelFormatError(FarSLIPError, ValueError):
    """A label image has the wrong encoding (mode, channels, values)."""


class DataError(FarSLIPError, ValueError):
    """A dataset is missing, empty, or holds no readable sample."""


class PluginError(FarSLIPError, RuntimeError):
    """A farslip_ext plugin failed to load or register its components."""


class CompatibilityError(FarSLIPError, RuntimeError):
    """An installed dependency changed an API that farslip_ext relies on (see :mod:`farslip_ext.compat`)."""
