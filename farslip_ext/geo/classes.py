"""``--classes`` of ``farslip segment``: the class list of an open-vocabulary segmentation.

The forms are those of :mod:`farslip_ext.ovss.classnames`, the same in the CLI and in Python:

* ``"building,road,water"`` — commas separate **classes**, one name each (the common case);
* ``"building,roof,house;road,street;water"`` — as soon as a ``;`` appears, ``;`` separates classes and
  commas separate the **synonyms** of one class; synonyms are max-merged after the softmax like in the
  OVSS benchmarks;
* a class-name file (an existing path, anything ending in ``.txt``, or ``classnames:cls_<dataset>.txt``) —
  one class per line, synonyms separated by commas.

Class ``i`` is mask value ``i``; 255 is reserved for nodata, so at most 255 classes. At least two classes
are required (a softmax over one class is 1 everywhere). A name given twice (ignoring case) is an error,
so every class, its legend entry and its pixel count in the summary are distinct.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

from farslip_ext.geo.errors import ClassListError
from farslip_ext.ovss.classnames import ClassNames, ClassNamesError, load_class_names

__all__ = ["parse_classes", "MAX_CLASSES"]

#: Mask values 0..254 are classes, 255 is nodata.
MAX_CLASSES = 255

_EXAMPLE = "--classes 'building,road,water' (or 'building,roof;road;water' for synonyms, or a class-name file)"


def parse_classes(spec: Union[str, Path, Sequence[str], ClassNames]) -> ClassNames:
    """The :class:`~farslip_ext.ovss.classnames.ClassNames` of a ``--classes`` value (see the module doc), a
    class-name file, a list of class lines (``["building,roof", "road"]``) or a ``ClassNames``."""
    if spec is None or (isinstance(spec, (str, Path)) and not str(spec).strip()) or (
            isinstance(spec, (list, tuple)) and not spec):
        shown = "" if spec is None or isinstance(spec, (list, tuple)) else str(spec)
        raise ClassListError(f"empty class list (--classes {shown!r}): name at least two classes, e.g. {_EXAMPLE}")
    try:
        names = load_class_names(spec if isinstance(spec, (ClassNames, str, Path)) else [str(x) for x in spec])
    except ClassNamesError as e:
        raise ClassListError(str(e)) from None
    if names.num_classes < 2:
        raise ClassListError(
            f"{names.source}: only one class ({', '.join(names.classes[0])}); open-vocabulary segmentation needs at "
            f"least two (a softmax over one class is 1 everywhere). Add the other classes you expect, or a catch-all "
            f"such as 'background' or 'other'.")
    if names.num_classes > MAX_CLASSES:
        raise ClassListError(f"{names.source}: {names.num_classes} classes; the mask is uint8 with 255 as nodata, so at "
                             f"most {MAX_CLASSES} classes are possible. Merge classes (synonyms: 'a,b;c').")
    return names
