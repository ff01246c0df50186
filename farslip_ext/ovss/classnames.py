"""Class names: one class per line, synonyms separated by commas (docs/reference/ovss-evaluation.md#12-text-side-and-templates).

One rule for every entry point (configs, ``FarSLIPSeg``, :func:`~farslip_ext.ovss.build_predictor`,
``farslip segment --classes``). A string is

* a **class-name file** when it starts with ``classnames:`` (a file of a ``farslip_classname_paths``
  folder: the built-in ``registry/classnames`` first, then the plugins'; ``catalogue:`` is the old
  spelling), ends with ``.txt`` or is an existing path: line ``i`` is class ``i``, read by
  :func:`farslip_ext.io.read_class_lines`;
* otherwise an **inline list**: ``"building,road,water"`` (commas separate classes, one name each) or,
  as soon as a ``;`` appears, ``"building,roof,house;road,street;water"`` (``;`` separates classes, commas
  the synonyms of one class).

Whitespace around names is stripped (the reference strips only the newline). An empty class or name
is an error, and so is a name given twice (compared case-insensitively with runs of spaces collapsed:
the tokenizer lower-cases, so ``Water`` and ``water`` are the same prompt and would split its
probability).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

from farslip_ext.errors import ClassNamesError
from farslip_ext.io import read_class_lines

__all__ = ["ClassNames", "ClassNamesError", "ClassNamesSpec", "load_class_names", "parse_class_lines",
           "parse_class_string", "resolve_classname_path", "is_class_file_spec", "classname_dirs",
           "CLASSNAMES_PREFIX", "CATALOGUE_PREFIX"]

CLASSNAMES_PREFIX = "classnames:"
#: The old prefix of shipped class files (same lookup as ``classnames:``).
CATALOGUE_PREFIX = "catalogue:"
_PREFIXES = (CLASSNAMES_PREFIX, CATALOGUE_PREFIX)
_EXAMPLE = "'building,road,water' (or 'building,roof;road;water' for synonyms, or a class-name file)"


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
        """All names, flat, class by class (the text queries)."""
        return [n for names in self.classes for n in names]

    @property
    def query_idx(self) -> List[int]:
        """The class owning each query word."""
        return [i for i, names in enumerate(self.classes) for _ in names]

    @property
    def labels(self) -> List[str]:
        """One display name per class: ``"building (roof, house)"``."""
        return [n[0] + (f" ({', '.join(n[1:])})" if len(n) > 1 else "") for n in self.classes]

    def __len__(self) -> int:
        return self.num_classes


ClassNamesSpec = Union[str, Path, Sequence[str], Sequence[Sequence[str]], ClassNames]


def classname_dirs() -> List[Path]:
    """Folders searched for ``classnames:<file>``: the built-in one first, then each plugin's."""
    from farslip_ext.plugins import hook_paths

    return hook_paths("farslip_classname_paths")


def is_class_file_spec(spec: str) -> bool:
    """Whether a string names a class-name file (see the module doc) rather than an inline list."""
    s = spec.strip()
    return s.startswith(_PREFIXES) or s.lower().endswith(".txt") or Path(s).expanduser().is_file()


def resolve_classname_path(spec: Union[str, Path]) -> Path:
    """The file of ``"classnames:cls_x.txt"`` (or ``catalogue:``) or of a plain path; missing is a clear error."""
    s = str(spec).strip()
    for prefix in _PREFIXES:
        if s.startswith(prefix):
            name = s[len(prefix):]
            dirs = classname_dirs()
            for d in dirs:
                if (d / name).is_file():
                    return d / name
            shipped = sorted({p.name for d in dirs if d.is_dir() for p in d.glob("*.txt")})
            raise FileNotFoundError(f"class-name file {s!r}: no {name} in {[str(d) for d in dirs]}; available: "
                                    f"{shipped}. Use one of them, pass a path to your own file, or add a folder "
                                    f"through a plugin's farslip_classname_paths hook.")
    path = Path(s).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"class-name file {s!r} not found. Pass an existing text file (one class per line, "
                                f"synonyms separated by commas), an inline list such as {_EXAMPLE}, or "
                                f"'{CLASSNAMES_PREFIX}cls_<dataset>.txt' for a shipped benchmark file.")
    return path


def _key(name: str) -> str:
    return re.sub(r"\s+", " ", name).strip().lower()


def parse_class_lines(lines: Sequence[str], source: str = "<list>") -> ClassNames:
    """Parse class lines (``"a,b"`` = one class with two names) into :class:`ClassNames`."""
    classes: List[Tuple[str, ...]] = []
    where = f"class-name file {source}" if source != "<list>" and not source.startswith("--") else (
        source if source != "<list>" else "class-name list")
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
            k = _key(n)
            if k in seen:
                raise ClassNamesError(
                    f"{where}: the name {n!r} is given for class {seen[k]} ({', '.join(classes[seen[k]])}) and again "
                    f"for class {ci} ({', '.join(names)}); a name can belong to one class only (the two would split "
                    f"its probability and lower the mIoU; names are compared ignoring case). Remove one of them.")
            seen[k] = ci
    return ClassNames(tuple(classes), source=source)


def parse_class_string(spec: str) -> ClassNames:
    """An inline class list (``"a,b,c"`` or ``"a,a2;b;c"``, see the module doc)."""
    text = spec.strip()
    source = f"--classes {text!r}"
    if not text:
        raise ClassNamesError(f"empty class list ({source}): name at least two classes, e.g. {_EXAMPLE}")
    sep = ";" if ";" in text else ","
    parts = [p.strip() for p in text.split(sep)]
    if sep == ";" and len(parts) > 1 and not parts[-1]:
        parts = parts[:-1]  # one trailing ';' is harmless
    for i, p in enumerate(parts):
        if not p:
            raise ClassNamesError(f"{source}: {sep!r}-separated class {i + 1} is empty (a stray {sep!r}?). "
                                  f"Write {_EXAMPLE}.")
        if sep == ";" and any(not n.strip() for n in p.split(",")):
            raise ClassNamesError(f"{source}: class {i + 1} ({p!r}) has an empty synonym (a stray ','?). Synonyms of "
                                  f"one class are separated by single commas, e.g. 'building,roof,house'.")
    return parse_class_lines(parts, source=source)


def load_class_names(spec: ClassNamesSpec) -> ClassNames:
    """Class names from a file (path, ``classnames:<file>``), an inline string (``"a,b;c"``), a list of
    lines (``["a,b", "c"]``), a list of per-class name lists (``[["a", "b"], ["c"]]``) or a :class:`ClassNames`."""
    if isinstance(spec, ClassNames):
        return spec
    if spec is None:
        raise ClassNamesError(f"no class names given: pass a class-name file, '{CLASSNAMES_PREFIX}cls_<dataset>.txt', "
                              f"an inline list such as {_EXAMPLE}, or a list of class names")
    if isinstance(spec, Path) or (isinstance(spec, str) and is_class_file_spec(spec)):
        path = resolve_classname_path(spec)
        return parse_class_lines(read_class_lines(path), source=str(path))
    if isinstance(spec, str):
        return parse_class_string(spec)
    items = list(spec)
    if items and all(isinstance(x, (list, tuple)) for x in items):
        return parse_class_lines([",".join(str(n) for n in x) for x in items])
    return parse_class_lines(items)
