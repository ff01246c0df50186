"""Hooks of an OVSS test run: the consistency check and the progress bar.

``OVSSCheckHook`` compares the class-name file with the dataset (IoUMetric sizes its histogram from the
dataset's ``METAINFO['classes']``, not from the model) and refuses an empty test set, before the first
image. ``FarSLIPSeg`` makes the same class check itself in configs without the hook
(docs/reference/ovss-evaluation.md#19-class-name-files). ``OVSSProgressHook`` shows the package's
progress (a bar on a terminal, periodic log lines otherwise) over the test images; ``farslip ovss``
adds it.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

from farslip_ext.errors import DataError
from farslip_ext.ovss.checks import ClassCountMismatchError
from farslip_ext.segmentation.openmmlab import HOOKS, Hook

__all__ = ["OVSSCheckHook", "OVSSProgressHook", "ClassCountMismatchError"]

logger = logging.getLogger(__name__)


def _segmentor(runner):
    from farslip_ext.segmentation.segmentor import FarSLIPSeg

    model = getattr(runner.model, "module", runner.model)
    return model if isinstance(model, FarSLIPSeg) else None


@HOOKS.register_module()
class OVSSCheckHook(Hook):
    """Before testing: the dataset must not be empty, and the model's classes must match the dataset's."""

    priority = "VERY_HIGH"

    def before_test(self, runner) -> None:
        dataset = runner.test_dataloader.dataset
        if len(dataset) == 0:
            raise DataError(f"{type(dataset).__name__}: the test set is empty "
                            f"(data_prefix={getattr(dataset, 'data_prefix', '?')}); check the data root and suffixes")
        model = _segmentor(runner)
        if model is None:
            return
        model.expect_dataset(dataset.metainfo.get("classes"), type(dataset).__name__)
        logger.debug("OVSS check: %d classes, %d images", model.num_classes, len(dataset))


@HOOKS.register_module()
class OVSSProgressHook(Hook):
    """Progress over the test images (:func:`farslip_ext.logs.progress`); ``enabled`` as there."""

    priority = "LOW"

    def __init__(self, desc: str = "OVSS", enabled: Optional[bool] = None) -> None:
        self.desc = desc
        self.enabled = enabled
        self._bar: Any = None

    def before_test(self, runner) -> None:
        from farslip_ext.logs import progress

        self._bar = progress(total=len(runner.test_dataloader.dataset), desc=self.desc, unit="img",
                             enabled=self.enabled, leave=False)

    def after_test_iter(self, runner, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if self._bar is not None:
            n = len(outputs) if outputs is not None else 1
            self._bar.update(n)

    def after_test(self, runner) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
