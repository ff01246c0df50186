"""Class-name files: one line per class, synonyms separated by commas (ovss-protocol.md §1.2, §1.9).

Line ``i`` is class ``i``; ``building,roof,house`` gives class ``i`` three names whose probabilities are
max-merged after the softmax. Whitespace around names is stripped (the reference strips only the
newline); an empty line or an empty name is an error, because the reference silently turns it into a
class whose text is the empty string.

The benchmark files ship in the catalogue (``registry/classnames/cls_<dataset>.txt``) and are named in
configs as ``"catalogue:cls_<dataset>.txt"``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

from farslip_ext.errors import ClassNamesError
from farslip_ext.io import read_class_lines

__all__ = ["ClassNames", "ClassNamesError", "load_class_names", "parse_class_lines", "catalogue_classnames_dir",
           "resolve_classname_path", "CATALOGUE_PREFIX"]

logger = logging.getLogger(__name__)

CATALOGUE_PREFIX = "catalogue:"

ClassNamesSpec = Union[str, Path, Sequence[str], Sequence[Sequence[str]], "ClassNames"]


@dataclass(frozen=True)
class ClassNames:
    """Parsed class names: ``classes[i]`` holds the names (synonyms) of class ``i``."""

    classes: Tuple[Tuple[str, ...], ...]
    source: str = "<list>"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def query_words(self) -> List[str]:
        """All names, flat, class by class (the text queries Q)."""
        return [n for names in self.classes for n in names]

    @property
    def query_idx(self) -> List[int]:
        """The class owning each query word."""
        return [i for i, names in enumerate(self.classes) for _ in names]

    def __len__(self) -> int:
        return self.num_classes


def catalogue_classnames_dir() -> Path:
    """``<catalogue>/classnames`` (``registry/classnames`` in a checkout, package data when installed)."""
    from farslip_ext.catalogue import catalogue_dir

    return catalogue_dir() / "classnames"


def resolve_classname_path(spec: Union[str, Path]) -> Path:
    """A path from ``"catalogue:cls_x.txt"`` or a plain file path; a missing file is a clear error."""
    s = str(spec)
    if s.startswith(CATALOGUE_PREFIX):
        name = s[len(CATALOGUE_PREFIX):]
        folder = catalogue_classnames_dir()
        path = folder / name
        if not path.is_file():
            shipped = sorted(p.name for p in folder.glob("*.txt")) if folder.is_dir() else []
            raise FileNotFoundError(f"class-name file {s!r}: {path} does not exist; the catalogue ships {shipped}. "
                                    f"Use one of them, or pass a path to your own file.")
        return path
    path = Path(s).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"class-name file {s!r} not found. Pass an existing text file (one class per line, "
                                f"synonyms separated by commas), a list of class names, or "
                                f"'{CATALOGUE_PREFIX}cls_<dataset>.txt' for a shipped benchmark file.")
    return path


def parse_class_lines(lines: Sequence[str], source: str = "<list>") -> ClassNames:
    """Parse class lines (``"a,b"`` = one class with two names) into :class:`ClassNames`."""
    classes: List[Tuple[str, ...]] = []
    where = f"class-name file {source}" if source != "<list>" else "class-name list"
    for i, line in enumerate(lines):
        if not isinstance(line, str):
            raise ClassNamesError(f"{where}: entry {i} is {line!r}, not a string")
        if not line.strip():
            raise ClassNamesError(
                f"{where}: line {i + 1} is empty or blank. Every line is one class (line number = class index); "
                f"remove the blank line (also a blank line at the end of the file) or put the class name there.")
        names = tuple(n.strip() for n in line.strip().split(","))
        if any(not n for n in names):
            raise ClassNamesError(
                f"{where}: line {i + 1} ({line.strip()!r}) has an empty name; synonyms are separated by single "
                f"commas with a name on each side (e.g. 'building,roof,house'). Remove the stray comma.")
        classes.append(names)
    if not classes:
        raise ClassNamesError(f"{where} is empty; it needs one line per class")
    seen: Dict[str, int] = {}
    for ci, names in enumerate(classes):
        for n in names:
            if n in seen:
                raise ClassNamesError(
                    f"{where}: the name {n!r} is given for class {seen[n]} ({', '.join(classes[seen[n]])}) and again "
                    f"for class {ci} ({', '.join(names)}); a name can belong to one class only (the two would split "
                    f"its probability and lower the mIoU). Remove one of them.")
            seen[n] = ci
    return ClassNames(tuple(classes), source=source)


def load_class_names(spec: ClassNamesSpec) -> ClassNames:
    """Class names from a file path, ``"catalogue:<file>"``, a list of lines (``["a,b", "c"]``), a list of
    per-class name lists (``[["a", "b"], ["c"]]``) or a :class:`ClassNames`."""
    if isinstance(spec, ClassNames):
        return spec
    if spec is None:
        raise ClassNamesError("no class names given: pass class_names= a file path, "
                              f"'{CATALOGUE_PREFIX}cls_<dataset>.txt' or a list of class names")
    if isinstance(spec, (str, Path)):
        path = resolve_classname_path(spec)
        return parse_class_lines(read_class_lines(path), source=str(path))
    items = list(spec)
    if items and all(isinstance(x, (list, tuple)) for x in items):
        return parse_class_lines([",".join(str(n) for n in x) for x in items])
    return parse_class_lines(items)
