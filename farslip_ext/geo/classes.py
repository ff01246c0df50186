"""``--classes`` of ``farslip segment``: the class list of an open-vocabulary segmentation.

Three forms (decided in issue #7; docs/segment.md):

* ``"building,road,water"`` — commas separate **classes**, one name each (the common case);
* ``"building,roof,house;road,street;water"`` — as soon as a ``;`` appears, ``;`` separates classes and
  commas separate the **synonyms** of one class (exactly the class-name file syntax with ``;`` for the
  line break); synonyms are max-merged after the softmax like in the OVSS benchmarks;
* a class-name file (an existing path, anything ending in ``.txt``, or ``catalogue:cls_<dataset>.txt``) —
  one class per line, synonyms separated by commas (the format of ``registry/classnames``).

Class ``i`` is mask value ``i``; 255 is reserved for nodata, so at most 255 classes. At least two classes
are required (a softmax over one class is 1 everywhere). Parsing itself is the OVSS one
(:func:`farslip_ext.segmentation.classnames.parse_class_lines`); this module only splits the CLI string
and gives CLI-worded errors.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Sequence, Union

from farslip_ext.geo.errors import ClassListError

if TYPE_CHECKING:  # pragma: no cover
    from farslip_ext.segmentation.classnames import ClassNames

__all__ = ["parse_classes", "MAX_CLASSES"]

#: Mask values 0..254 are classes, 255 is nodata.
MAX_CLASSES = 255

_EXAMPLE = "--classes 'building,road,water' (or 'building,roof;road;water' for synonyms, or a class-name file)"


def _is_file_spec(spec: str) -> bool:
    from farslip_ext.segmentation.classnames import CATALOGUE_PREFIX

    return spec.startswith(CATALOGUE_PREFIX) or spec.lower().endswith(".txt") or Path(spec).expanduser().is_file()


def _split(spec: str) -> List[str]:
    if ";" in spec:
        sep, what = ";", "';'-separated class"
    else:
        sep, what = ",", "','-separated class"
    parts = [p.strip() for p in spec.split(sep)]
    if sep == ";" and parts and not parts[-1] and len(parts) > 1:
        parts = parts[:-1]  # one trailing ';' is harmless
    for i, p in enumerate(parts):
        if not p:
            raise ClassListError(f"--classes {spec!r}: {what} {i + 1} is empty (a stray {sep!r}?). Write {_EXAMPLE}.")
        if sep == ";" and any(not n.strip() for n in p.split(",")):
            raise ClassListError(f"--classes {spec!r}: class {i + 1} ({p!r}) has an empty synonym (a stray ','?). "
                                 f"Synonyms of one class are separated by single commas, e.g. 'building,roof,house'.")
    return parts


def parse_classes(spec: Union[str, Path, Sequence[str], "ClassNames"]) -> "ClassNames":
    """The :class:`~farslip_ext.segmentation.classnames.ClassNames` of a ``--classes`` value (see the module
    doc), a class-name file, a list of class lines (``["building,roof", "road"]``) or a ``ClassNames``."""
    from farslip_ext.segmentation.classnames import ClassNames, ClassNamesError, load_class_names, parse_class_lines

    if isinstance(spec, ClassNames):
        names = spec
    elif spec is None or (isinstance(spec, (str, Path)) and not str(spec).strip()):
        raise ClassListError(f"empty class list (--classes {'' if spec is None else str(spec)!r}): name at least two "
                             f"classes, e.g. {_EXAMPLE}")
    elif isinstance(spec, Path) or (isinstance(spec, str) and _is_file_spec(spec.strip())):
        try:
            names = load_class_names(str(spec).strip())
        except ClassNamesError as e:
            raise ClassListError(str(e)) from None
    elif isinstance(spec, str):
        lines = _split(spec.strip())
        try:
            names = parse_class_lines(lines, source=f"--classes {spec.strip()!r}")
        except ClassNamesError as e:  # pragma: no cover - _split catches the malformed cases first
            raise ClassListError(str(e)) from None
    else:
        items = [str(x) for x in spec]
        if not items:
            raise ClassListError(f"empty class list: name at least two classes, e.g. {_EXAMPLE}")
        try:
            names = load_class_names(items)
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
