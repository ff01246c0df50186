"""The one module of farslip_ext that imports mmseg and mmcv, and the only place their chatter is filtered.

Filtered, narrowly (anything else they print or warn still reaches the user):

* ``Could not import OneDL`` — printed to stdout by two of onedl-mmseg's ``__init__`` modules when the
  optional OneDL extras are absent (an informational message; it would break the JSON our commands print);
* mmcv's ``UserWarning: Fail to import MultiScaleDeformableAttention`` — a compiled op no OVSS code uses
  (docs/reference/ovss-evaluation.md#3-openmmlab-dependencies);
* ``The prefix is not set in metric class IoUMetric.`` — mmengine's warning for every metric without a
  ``prefix`` (mmseg's configs never set one), and mmseg's ``UserWarning: The draw is False ...`` of the
  (idle) ``SegVisualizationHook`` the base config carries for the test tool's ``--show-dir``; dropped
  for the runners farslip_ext builds (:func:`quiet_runner_build`, :func:`tame_runner_logger`).

Every adapter module takes its mmseg/mmcv names from here; :func:`loop_dataset_meta` is the one place
that reads a running test loop's dataset metadata.
"""
from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings

__all__ = ["BaseSegmentor", "SegDataPreProcessor", "SegDataSample", "PixelData", "MODELS", "DATASETS", "TRANSFORMS",
           "HOOKS", "BaseSegDataset", "LoadImageFromFile", "LoadAnnotations", "Hook", "tame_runner_logger",
           "quiet_runner_build", "loop_dataset_meta", "IMPORT_NOISE", "RUNNER_NOISE", "RUNNER_WARNINGS"]

#: Lines printed on import that are dropped (exact text).
IMPORT_NOISE = ("Could not import OneDL",)
#: Warning messages (regular expressions, matched at the start) ignored while importing.
IMPORT_WARNINGS = (r"Fail to import ``MultiScaleDeformableAttention``",)
#: Log messages of a runner's logger that are dropped (prefixes).
RUNNER_NOISE = ("The prefix is not set in metric class",)
#: Warnings ignored while a runner is built (regular expressions, matched at the start).
RUNNER_WARNINGS = (r"The draw is False, it means that the hook for visualization will not take effect",)


def _import_quietly() -> None:
    buf = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
        for pattern in IMPORT_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern, category=UserWarning)
        import mmcv.transforms  # noqa: F401
        import mmseg.datasets  # noqa: F401
        import mmseg.models  # noqa: F401
        import mmseg.structures  # noqa: F401
    rest = [line for line in buf.getvalue().splitlines() if line.strip() not in IMPORT_NOISE]
    if rest:  # anything else stays visible (on stderr: stdout carries the commands' results)
        print("\n".join(rest), file=sys.stderr)


_import_quietly()

from mmcv.transforms import LoadImageFromFile  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402
from mmseg.datasets import BaseSegDataset  # noqa: E402
from mmseg.datasets.transforms import LoadAnnotations  # noqa: E402
from mmseg.models.data_preprocessor import SegDataPreProcessor  # noqa: E402
from mmseg.models.segmentors import BaseSegmentor  # noqa: E402
from mmseg.registry import DATASETS, HOOKS, MODELS, TRANSFORMS  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(RUNNER_NOISE)


@contextlib.contextmanager
def quiet_runner_build():
    """Ignore :data:`RUNNER_WARNINGS` while a runner is built."""
    with warnings.catch_warnings():
        for pattern in RUNNER_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern, category=UserWarning)
        yield


def tame_runner_logger(runner, stream=None) -> None:
    """Drop :data:`RUNNER_NOISE` from ``runner.logger`` and send its console output to ``stream``
    (default stderr, so stdout carries only results)."""
    log = runner.logger
    if not any(isinstance(f, _DropNoise) for f in log.filters):
        log.addFilter(_DropNoise())
    for h in log.handlers:
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            h.setStream(stream or sys.stderr)


def _visualizer_classes() -> list:
    from mmengine.visualization import Visualizer

    out, todo = [], [Visualizer]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def loop_dataset_meta():
    """The ``dataset_meta`` mmengine's ``ValLoop``/``TestLoop`` put on the visualiser of the newest runner
    (public API only: a runner names its visualiser and its ``MessageHub`` after its experiment; the loops
    set ``runner.visualizer.dataset_meta`` from the dataset). None when no runner exists or its loop has
    not published one. With several runners alive it is the newest runner's; ``OVSSCheckHook``, which
    knows its runner, is exact (tests/ovss/test_runner.py checks the behaviour this relies on)."""
    from mmengine.logging import MessageHub

    try:
        name = MessageHub.get_current_instance().instance_name
    except (RuntimeError, AssertionError):
        return None
    for cls in _visualizer_classes():
        if cls.check_instance_created(name):
            meta = cls.get_instance(name).dataset_meta
            return dict(meta) if meta is not None else None
    return None
