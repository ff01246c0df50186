"""``OVSSCheckHook``: consistency checks before an OVSS test run (ovss-protocol.md §1.9, §2.5).

IoUMetric sizes its histogram from the dataset's ``METAINFO['classes']``, not from the model, so a
class-name file with a different number of lines silently scores the wrong classes. This hook compares
the two before the first image and raises an error naming the class file, the dataset and the fix.
"""
from __future__ import annotations

import logging

from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from farslip_ext.errors import ConfigError

__all__ = ["OVSSCheckHook", "ClassCountMismatchError"]

logger = logging.getLogger(__name__)


class ClassCountMismatchError(ConfigError):
    """The class-name file and the dataset disagree on the number of classes."""


@HOOKS.register_module()
class OVSSCheckHook(Hook):
    """Before testing: the model's class count must equal the dataset's, and the dataset must not be empty."""

    priority = "VERY_HIGH"

    def before_test(self, runner) -> None:
        from farslip_ext.segmentation.segmentor import FarSLIPSeg

        model = getattr(runner.model, "module", runner.model)
        dataset = runner.test_dataloader.dataset
        if len(dataset) == 0:
            raise ValueError(f"{type(dataset).__name__}: the test set is empty "
                             f"(data_prefix={getattr(dataset, 'data_prefix', '?')}); check the data root and suffixes")
        if not isinstance(model, FarSLIPSeg):
            return
        classes = dataset.metainfo.get("classes")
        if classes is not None and len(classes) != model.num_classes:
            raise ClassCountMismatchError(
                f"class-name file {model.class_names.source} has {model.num_classes} classes but "
                f"{type(dataset).__name__} has {len(classes)} ({', '.join(map(str, classes))}); IoUMetric scores the "
                f"dataset's classes, so line i of the class file must name dataset class i. Fix the class file "
                f"(one line per class, synonyms separated by commas) or use the shipped "
                f"'catalogue:cls_<dataset>.txt'.")
        logger.info("OVSS check: %d classes, %d images", model.num_classes, len(dataset))
