"""Shared file helpers: hashing, the cache root, atomic writes, images and class-name lists.

One implementation of each, used by the loader, the hub, checkpoints, evaluators, segmentation and
data. Nothing here imports torch or another farslip_ext module beyond :mod:`farslip_ext.errors`.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from pathlib import Path
from typing import Iterator, List, Optional, Union

from farslip_ext.errors import ClassNamesError, DataError, DestinationExistsError

__all__ = [
    "PathLike",
    "sha256_file",
    "cache_root",
    "atomic_path",
    "check_destination",
    "load_rgb_image",
    "read_class_lines",
]

PathLike = Union[str, "os.PathLike[str]"]


def sha256_file(path: PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def cache_root() -> Path:
    """``$FARSLIP_CACHE``, else ``$XDG_CACHE_HOME/farslip_ext``, else ``~/.cache/farslip_ext``.

    Converted weights live in ``converted/``, URL downloads in ``downloads/``, text embeddings in
    ``text_embeddings/``.
    """
    root = os.environ.get("FARSLIP_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "farslip_ext"


@contextlib.contextmanager
def atomic_path(dst: PathLike, mode: Optional[int] = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside ``dst``; on success it replaces ``dst`` atomically (``os.replace``).

    On any failure the partial file is removed, so ``dst`` is either the old file or the complete new
    one. A full disk becomes an ``OSError`` that says "no space left" and names ``dst``. ``mode`` sets
    the permissions of the result (writers such as safetensors create files readable by the owner only).
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.partial")
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, dst)
    except OSError as e:
        _remove_quietly(tmp)
        if e.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left on the device while writing {dst}; the partial file was "
                                        f"removed and {dst.name} is unchanged. Free space or write elsewhere.") from e
        raise
    except BaseException:
        _remove_quietly(tmp)
        raise


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def check_destination(dst: PathLike, *, src: Optional[PathLike] = None, overwrite: bool = False,
                      what: str = "destination") -> Path:
    """Refuse to write ``dst`` over its own source (by resolved path) or over existing data without
    ``overwrite``. A folder counts as existing when it holds any file."""
    dst_p = Path(dst)
    if src is not None and Path(src).exists() and dst_p.exists() and os.path.samefile(src, dst_p):
        raise DestinationExistsError(f"the {what} {dst} is the source file itself; write to another path")
    if src is not None and dst_p.resolve() == Path(src).resolve():
        raise DestinationExistsError(f"the {what} {dst} is the source file itself; write to another path")
    exists = dst_p.is_file() or (dst_p.is_dir() and any(dst_p.iterdir()))
    if exists and not overwrite:
        kind = "folder holds files" if dst_p.is_dir() else "file exists"
        raise DestinationExistsError(f"the {what} {dst} already exists ({kind}); pass --overwrite "
                                     f"(overwrite=True) to replace it, or choose another path")
    return dst_p


def load_rgb_image(path: PathLike):
    """Open, fully decode and convert an image to RGB (a PIL image).

    A missing file raises ``FileNotFoundError``; a file PIL cannot decode raises
    :class:`~farslip_ext.errors.DataError` naming the path (the PIL error is chained).
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise
    except Exception as e:  # PIL raises OSError, UnidentifiedImageError, SyntaxError, ValueError ...
        raise DataError(f"cannot read image {path}: {type(e).__name__}: {e}") from e


def read_class_lines(path: PathLike) -> List[str]:
    """The lines of a class-name file, stripped: one class per line, line ``i`` is class ``i``.

    The one policy for every class-name file of the project (OVSS, zero-shot classification, training
    validation): UTF-8 (a BOM is ignored); blank lines at the end of the file are ignored; a blank line
    between classes is an error (the reference code would turn it into a class named ``""`` and shift
    every later class); a line that appears twice is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class-name file not found: {path} (expected one class per line)")
    try:
        with open(path, "r", encoding="utf-8-sig") as f:
            lines = [line.strip() for line in f.read().splitlines()]
    except UnicodeDecodeError as e:
        raise ClassNamesError(f"class-name file {path} is not UTF-8 text ({e}); save it as UTF-8") from None
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ClassNamesError(f"class-name file {path} lists no classes; it needs one line per class")
    blank = [i + 1 for i, n in enumerate(lines) if not n]
    if blank:
        raise ClassNamesError(f"{path}: line {blank[0]} is empty or blank (blank lines: {blank[:5]}). Every line is one "
                              f"class (line number = class index); remove the blank line or put the class name there.")
    first: dict = {}
    dups = []
    for i, n in enumerate(lines):
        if n in first:
            dups.append(f"{n!r} (lines {first[n] + 1} and {i + 1})")
        first.setdefault(n, i)
    if dups:
        raise ClassNamesError(f"{path}: class(es) {', '.join(dups[:5])} appear more than once; list each class once "
                              f"(put synonyms of one class on one line, separated by commas)")
    return lines
