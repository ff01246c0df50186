"""Consistency checks between the class names and a dataset (docs/reference/ovss-evaluation.md#19-class-name-files).

IoUMetric takes the class count from the dataset, not from the segmentor, so a class-name file with a
different number of lines silently scores the wrong classes, and a ground-truth value outside the
class range is silently dropped. These checks turn both into errors before an image is segmented.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from farslip_ext.errors import ConfigError, LabelFormatError

__all__ = ["ClassCountMismatchError", "LabelValueError", "check_dataset_classes", "check_label_values"]


class ClassCountMismatchError(ConfigError):
    """The class-name file and the dataset disagree on the number of classes."""


class LabelValueError(LabelFormatError):
    """A ground-truth map holds values that are neither a class index nor the ignore value 255."""


def check_dataset_classes(class_names: Any, dataset_classes: Optional[Sequence[Any]], dataset: str) -> None:
    """Raise :class:`ClassCountMismatchError` when ``class_names`` (a ClassNames) and the dataset's
    ``METAINFO['classes']`` differ in length; also when the dataset lists a class twice."""
    if dataset_classes is None:
        return
    classes = [str(c) for c in dataset_classes]
    dups = sorted({c for c in classes if classes.count(c) > 1})
    if dups:
        raise ClassCountMismatchError(f"{dataset} lists the classes {dups} more than once "
                                      f"({', '.join(classes)}); every class must be listed once")
    if len(classes) != class_names.num_classes:
        raise ClassCountMismatchError(
            f"class-name file {class_names.source} has {class_names.num_classes} classes but {dataset} has "
            f"{len(classes)} ({', '.join(classes)}); IoUMetric scores the dataset's classes, so line i of the class "
            f"file must name dataset class i. Fix the class file (one line per class, synonyms separated by commas) "
            f"or use the benchmark's own 'classnames:cls_<dataset>.txt'.")


def check_label_values(values: Sequence[int], num_classes: int, source: str, label_path: str,
                       reduce_zero_label: Any = None) -> None:
    """Raise :class:`LabelValueError` when a label map holds ``values`` outside ``0..num_classes-1`` and 255."""
    bad = sorted(int(v) for v in values if int(v) != 255 and not 0 <= int(v) < num_classes)
    if bad:
        raise LabelValueError(
            f"ground truth {label_path} holds label values {bad[:10]} that are neither a class index "
            f"0..{num_classes - 1} (from {source}) nor the ignore value 255 (reduce_zero_label={reduce_zero_label}). "
            f"The label file was written with the wrong encoding or the class file does not match the dataset; "
            f"re-create the labels with `farslip ovss-convert` (single-channel 'L' index images) or fix the class "
            f"file.")
