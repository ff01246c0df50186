"""The SkyScript benchmark layouts (CSV ``filepath,label`` + ``classnames.txt``; CSV ``filepath,<caption>``)
as ``EVAL_DATASETS`` registry entries, with the splits FarSLIP's tests use (docs/reference/method.md §3.5,
docs/reference/paper-results.md §1.3-1.4).

Layout under a benchmark root ``DATA_ROOT`` (SkyScript's ``BENCHMARK_DATASET_ROOT_DIR``)::

    aid/aid_img_txt_pairs_test.csv         aid/classnames.txt
    eurosat/eurosat_img_txt_pairs_test.csv eurosat/classnames.txt
    fmow/fmow_img_txt_pairs_val.csv        fmow/classnames.txt
    millionaid/img_txt_pairs_train.csv     ...  nwpu/, patternnet/ (train CSVs = the whole set)
    rsicb256/img_txt_pairs_train.csv       SkyScript_cls/img_txt_pairs_val.csv
    RSICD/RSICD_img_txt_pairs_test.csv     RSITMD/RSITMD_img_txt_pairs_test.csv
    ucmcaptions/ucmcaptions_img_txt_pairs_test.csv
    SkyScript_test_30K_filtered_by_CLIP_openai.csv

``filepath`` values are relative to an image root (for the benchmarks ``DATA_ROOT``, as in SkyScript's
scripts; for a CSV of your own its folder; absolute paths are kept).

Bad rows never turn into a silently wrong number. A missing image or a label that is not a class is an
error by default (:class:`BenchmarkDataError`, naming the row, the value and the fix); with
``on_bad_row="skip"`` the row is skipped and counted in ``skipped`` (reported as ``n_skipped`` in the
results). Rows with an empty label are dropped and counted, as the reference drops null labels. A
dataset left with no rows is an error.
"""
from __future__ import annotations

import collections
import csv
import difflib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Any, Callable, Counter, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset

from farslip_ext.errors import ClassNamesError, DataError
from farslip_ext.io import load_rgb_image, read_class_lines
from farslip_ext.registry import EVAL_DATASETS

__all__ = [
    "BenchmarkDataError",
    "ClassificationBenchmark",
    "RetrievalBenchmark",
    "CLASSIFICATION_BENCHMARKS",
    "RETRIEVAL_BENCHMARKS",
    "PUBLISHED_CLASSIFICATION",
    "PUBLISHED_RETRIEVAL",
    "classification_benchmark",
    "retrieval_benchmark",
    "load_classnames",
    "read_csv_rows",
    "SceneClassificationCsv",
    "ImageTextRetrievalCsv",
    "ImageFiles",
    "load_image",
    "resolve_benchmark_datasets",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
BAD_ROW_POLICIES = ("error", "skip")


class BenchmarkDataError(DataError):
    """A benchmark file is missing, malformed, or lists an image or class that does not exist."""


@dataclass(frozen=True)
class ClassificationBenchmark:
    """One zero-shot classification benchmark: CSV and class list relative to the benchmark root."""

    name: str
    csv: str
    classnames: str
    split: str
    img_key: str = "filepath"
    label_key: str = "label"
    sep: str = ","


@dataclass(frozen=True)
class RetrievalBenchmark:
    """One image-text retrieval benchmark (docs/reference/method.md §4.6: caption prefix, caption column)."""

    name: str
    csv: str
    caption_key: str
    caption_prefix: str
    split: str
    img_key: str = "filepath"
    sep: str = ","


def _cls(name: str, folder: str, csv_name: str, split: str) -> ClassificationBenchmark:
    return ClassificationBenchmark(name, f"{folder}/{csv_name}", f"{folder}/classnames.txt", split)


#: The 8 scene-classification sets and the splits of FarSLIP's table (docs/reference/paper-results.md §1.3).
CLASSIFICATION_BENCHMARKS: Dict[str, ClassificationBenchmark] = {b.name: b for b in (
    _cls("SkyScript_cls", "SkyScript_cls", "img_txt_pairs_val.csv", "val"),
    _cls("aid", "aid", "aid_img_txt_pairs_test.csv", "test"),
    _cls("eurosat", "eurosat", "eurosat_img_txt_pairs_test.csv", "test"),
    _cls("fmow", "fmow", "fmow_img_txt_pairs_val.csv", "val"),
    _cls("millionaid", "millionaid", "img_txt_pairs_train.csv", "train"),
    _cls("patternnet", "patternnet", "img_txt_pairs_train.csv", "train"),
    _cls("nwpu", "nwpu", "img_txt_pairs_train.csv", "train"),
    _cls("rsicb", "rsicb256", "img_txt_pairs_train.csv", "train"),
)}

SATELLITE_CAPTION_PREFIX = "a satellite image. "

#: RSICD, RSITMD, UCM-captions (prefixed captions) and SkyScript test 30K (docs/reference/method.md §3.5, §4.6).
RETRIEVAL_BENCHMARKS: Dict[str, RetrievalBenchmark] = {b.name: b for b in (
    RetrievalBenchmark("RSICD", "RSICD/RSICD_img_txt_pairs_test.csv", "title", SATELLITE_CAPTION_PREFIX, "test"),
    RetrievalBenchmark("RSITMD", "RSITMD/RSITMD_img_txt_pairs_test.csv", "title", SATELLITE_CAPTION_PREFIX, "test"),
    RetrievalBenchmark("UCM", "ucmcaptions/ucmcaptions_img_txt_pairs_test.csv", "title", SATELLITE_CAPTION_PREFIX,
                       "test"),
    RetrievalBenchmark("SkyScript", "SkyScript_test_30K_filtered_by_CLIP_openai.csv", "title_multi_objects", "",
                       "test"),
)}

#: The datasets of the paper's tables, in column order (SkyScript retrieval has no published number).
PUBLISHED_CLASSIFICATION: Tuple[str, ...] = ("SkyScript_cls", "aid", "eurosat", "fmow", "millionaid", "patternnet",
                                             "nwpu", "rsicb")
PUBLISHED_RETRIEVAL: Tuple[str, ...] = ("RSICD", "RSITMD", "UCM")

_RETRIEVAL_ALIASES = {"ucmcaptions": "UCM", "ucm-captions": "UCM", "ucm_captions": "UCM", "skyscript_test": "SkyScript",
                      "skyscript-test": "SkyScript"}
_CLASSIFICATION_ALIASES = {"rsicb256": "rsicb", "skyscript": "SkyScript_cls", "resisc45": "nwpu",
                           "nwpu-resisc45": "nwpu"}


def _lookup(name: str, table: Dict[str, Any], aliases: Dict[str, str], what: str) -> Any:
    folded = {k.lower(): k for k in table}
    key = aliases.get(name.lower(), name)
    key = folded.get(key.lower(), key)
    if key in table:
        return table[key]
    close = difflib.get_close_matches(name, list(table) + list(aliases), n=3, cutoff=0.5)
    raise KeyError(f"unknown {what} benchmark {name!r}"
                   f"{' (did you mean ' + ', '.join(map(repr, close)) + '?)' if close else ''}; "
                   f"known: {list(table)}. For your own data pass the CSV file itself (--csv).")


def classification_benchmark(name: str) -> ClassificationBenchmark:
    """The spec of a classification benchmark by name (case-insensitive; ``rsicb256`` = ``rsicb``)."""
    return _lookup(name, CLASSIFICATION_BENCHMARKS, _CLASSIFICATION_ALIASES, "classification")


def retrieval_benchmark(name: str) -> RetrievalBenchmark:
    """The spec of a retrieval benchmark by name (case-insensitive; ``ucmcaptions`` = ``UCM``)."""
    return _lookup(name, RETRIEVAL_BENCHMARKS, _RETRIEVAL_ALIASES, "retrieval")


# --------------------------------------------------------------------------------------------- files
def read_csv_rows(path: PathLike, columns: Sequence[str], sep: str = ",") -> List[Dict[str, str]]:
    """Rows of a CSV as dicts; every name in ``columns`` must be a header column."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark CSV not found: {path}. Check --data-root (the folder that holds the "
                                f"benchmark folders) or the --csv path.")
    with open(path, "r", encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter=sep)
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        if missing:
            raise BenchmarkDataError(f"{path}: no column(s) {missing}; the header has {header} "
                                     f"(separator {sep!r}). Pass the right column name (--img-key/--label-key/"
                                     f"--caption-key) or separator (--sep).")
        return [dict(r) for r in reader]


def load_classnames(path: PathLike) -> List[str]:
    """One class per line (SkyScript ``classnames.txt``), read with the project's one class-file policy
    (:func:`farslip_ext.io.read_class_lines`: trailing blank lines ignored, blank or repeated lines are errors)."""
    try:
        return read_class_lines(path)
    except ClassNamesError as e:
        raise BenchmarkDataError(str(e)) from None


def _resolve(root: Optional[Path], p: str) -> str:
    q = Path(p)
    if not q.is_absolute() and root is not None:
        q = root / q
    return str(q)


def _check_policy(on_bad_row: str) -> None:
    if on_bad_row not in BAD_ROW_POLICIES:
        raise ValueError(f"on_bad_row={on_bad_row!r}; choose one of {BAD_ROW_POLICIES}")


def _missing_images_error(csv_file: Path, missing: List[Tuple[int, str, str]], n_rows: int,
                          image_root: Optional[Path]) -> BenchmarkDataError:
    row, raw, resolved = missing[0]
    hint = ""
    if raw and not Path(raw).is_absolute():
        for cand in (csv_file.parent, csv_file.parent.parent):
            if cand != image_root and (cand / raw).is_file():
                hint = f" The file exists under {cand}: pass --image-root {cand}."
                break
    return BenchmarkDataError(
        f"{csv_file}: {len(missing)} of {n_rows} rows name an image that does not exist, e.g. line {row}: "
        f"{raw!r} -> {resolved}. Images are looked up under the image root {image_root} (--image-root; "
        f"default: --data-root).{hint} To skip and count such rows instead, use --on-bad-row skip "
        f"(on_bad_row='skip').")


def load_image(path: str) -> Any:
    """An RGB PIL image; a file that cannot be decoded is a :class:`BenchmarkDataError` naming it."""
    try:
        return load_rgb_image(path)
    except DataError as e:
        raise BenchmarkDataError(str(e)) from e.__cause__


class ImageFiles(Dataset):
    """Images by path, through ``transform`` (the model's eval preprocessing)."""

    def __init__(self, paths: Sequence[str], transform: Optional[Callable] = None) -> None:
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        img = load_image(self.paths[i])
        return self.transform(img) if self.transform is not None else img


@EVAL_DATASETS.register_module()
class SceneClassificationCsv(Dataset):
    """A zero-shot scene-classification set in the SkyScript layout (CSV ``filepath,label`` +
    ``classnames.txt``), docs/reference/method.md §3.5. Items are ``(image, class_index)``.

    Args:
        csv_file: the CSV.
        classnames: a ``classnames.txt`` path or the list of class names (index = line number).
        image_root: folder the CSV's relative ``filepath`` values are relative to (default: the CSV's folder;
            the benchmark layouts use the benchmark root, see :meth:`from_benchmark`).
        transform: image transform (the model's eval preprocessing); ``None`` yields PIL images.
        label_mode: ``"name"`` (labels are class names), ``"index"`` (0-based indices) or ``"auto"``
            (names if every label is a class name, else indices if every label is an integer).
        on_bad_row: ``"error"`` or ``"skip"`` (missing image, unknown class); skips are counted in ``skipped``.
    """

    def __init__(self, csv_file: PathLike, classnames: Union[PathLike, Sequence[str]],
                 image_root: Optional[PathLike] = None, transform: Optional[Callable] = None,
                 img_key: str = "filepath", label_key: str = "label", sep: str = ",", label_mode: str = "auto",
                 on_bad_row: str = "error", name: Optional[str] = None) -> None:
        _check_policy(on_bad_row)
        if label_mode not in ("auto", "name", "index"):
            raise ValueError(f"label_mode={label_mode!r}; choose 'auto', 'name' or 'index'")
        self.csv_file = Path(csv_file)
        self.name = name or self.csv_file.parent.name
        if isinstance(classnames, (str, os.PathLike)):
            self.classnames_file: Optional[Path] = Path(classnames)
            self.classnames = load_classnames(classnames)
        else:
            self.classnames_file = None
            self.classnames = list(classnames)
            if not self.classnames:
                raise BenchmarkDataError(f"{self.name}: empty class list")
        self.image_root = Path(image_root) if image_root is not None else self.csv_file.parent
        self.transform = transform
        self.skipped: Counter[str] = collections.Counter()

        rows = read_csv_rows(self.csv_file, (img_key, label_key), sep=sep)
        self.n_rows = len(rows)
        labelled = []
        for i, r in enumerate(rows):
            label = (r.get(label_key) or "").strip()
            if not label:
                self.skipped["empty_label"] += 1
                continue
            labelled.append((i + 2, (r.get(img_key) or "").strip(), label))  # +2: header is line 1
        if self.skipped["empty_label"]:
            logger.warning("%s: dropped %d row(s) with an empty label (as the reference drops null labels)",
                           self.csv_file, self.skipped["empty_label"])

        index = {c: i for i, c in enumerate(self.classnames)}
        if label_mode == "auto":
            if all(lab in index for _, _, lab in labelled):
                label_mode = "name"
            elif labelled and all(_is_int(lab) for _, _, lab in labelled):
                label_mode = "index"
            else:
                label_mode = "name"
        self.label_mode = label_mode

        samples: List[Tuple[str, int]] = []
        missing: List[Tuple[int, str, str]] = []
        for line, raw, label in labelled:
            target = index.get(label) if label_mode == "name" else (int(label) if _is_int(label) else None)
            if target is None or not 0 <= target < len(self.classnames):
                if on_bad_row == "error":
                    raise self._unknown_label(line, label)
                self.skipped["unknown_label"] += 1
                continue
            path = _resolve(self.image_root, raw) if raw else ""
            if not raw or not os.path.isfile(path):
                missing.append((line, raw, path))
                continue
            samples.append((path, target))
        if missing:
            if on_bad_row == "error":
                raise _missing_images_error(self.csv_file, missing, self.n_rows, self.image_root)
            self.skipped["missing_image"] += len(missing)
        for why, n in self.skipped.items():
            if why != "empty_label":
                logger.warning("%s: skipped %d row(s): %s", self.csv_file, n, why)
        if not samples:
            raise BenchmarkDataError(f"{self.csv_file}: no usable rows ({self.n_rows} rows read, skipped "
                                     f"{dict(self.skipped)}); an empty dataset has no accuracy")
        self.samples = samples

    def _unknown_label(self, line: int, label: str) -> BenchmarkDataError:
        src = self.classnames_file or "the class list"
        if self.label_mode == "index":
            what = f"label index {label} is outside 0..{len(self.classnames) - 1}"
        else:
            close = difflib.get_close_matches(label, self.classnames, n=3)
            what = (f"label {label!r} is not a class in {src}"
                    f"{' (did you mean ' + ', '.join(map(repr, close)) + '?)' if close else ''}")
        return BenchmarkDataError(f"{self.csv_file}, line {line}: {what} ({len(self.classnames)} classes). Fix the "
                                  f"CSV or the class list, or skip and count such rows with --on-bad-row skip.")

    @property
    def n_skipped(self) -> int:
        return int(sum(self.skipped.values()))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Tuple[Any, int]:
        path, target = self.samples[i]
        img = load_image(path)
        return (self.transform(img) if self.transform is not None else img), target

    @classmethod
    def from_benchmark(cls, name: str, data_root: PathLike, image_root: Optional[PathLike] = None,
                       **kwargs: Any) -> "SceneClassificationCsv":
        """One of :data:`CLASSIFICATION_BENCHMARKS` under ``data_root`` (images under ``image_root`` or
        ``data_root``)."""
        spec = classification_benchmark(name)
        root = Path(data_root)
        _check_layout(spec.name, root, (spec.csv, spec.classnames))
        return cls(root / spec.csv, root / spec.classnames, image_root=image_root if image_root is not None else root,
                   img_key=spec.img_key, label_key=spec.label_key, sep=spec.sep, name=spec.name, **kwargs)


def _check_layout(name: str, root: Path, files: Sequence[str]) -> None:
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        if not root.is_dir():
            where = f"the data root {root} does not exist"
        else:
            where = f"{root} lacks {missing}"
        raise FileNotFoundError(f"benchmark {name!r} expects {list(files)} under the data root (SkyScript layout, "
                                f"docs/evaluation.md), but {where}. Check --data-root, or leave {name!r} out of "
                                f"--datasets.")


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


@EVAL_DATASETS.register_module()
class ImageTextRetrievalCsv:
    """An image-text retrieval set from a CSV of ``(filepath, caption)`` rows (docs/reference/method.md §4.6).

    Unique images (by resolved path) and unique captions (after the prefix) are kept once each, in
    order of first appearance; the ground truth is many-to-many: image ``i`` and caption ``t`` match
    when any row pairs them.

    Attributes:
        images: unique image paths; ``captions``: unique captions (prefix applied);
        image_to_texts / text_to_images: sorted index lists of the matches; ``skipped``: counted skips.
    """

    def __init__(self, csv_file: PathLike, image_root: Optional[PathLike] = None, caption_key: str = "title",
                 caption_prefix: str = "", img_key: str = "filepath", sep: str = ",", on_bad_row: str = "error",
                 name: Optional[str] = None) -> None:
        _check_policy(on_bad_row)
        self.csv_file = Path(csv_file)
        self.name = name or self.csv_file.stem
        self.image_root = Path(image_root) if image_root is not None else self.csv_file.parent
        self.caption_prefix = caption_prefix
        self.skipped: Counter[str] = collections.Counter()
        rows = read_csv_rows(self.csv_file, (img_key, caption_key), sep=sep)
        self.n_rows = len(rows)

        img_index: Dict[str, int] = {}
        txt_index: Dict[str, int] = {}
        pairs = set()
        missing: List[Tuple[int, str, str]] = []
        exists: Dict[str, bool] = {}
        for i, r in enumerate(rows):
            line = i + 2
            raw = (r.get(img_key) or "").strip()
            caption = r.get(caption_key)
            if caption is None or not caption.strip():
                if on_bad_row == "error":
                    raise BenchmarkDataError(f"{self.csv_file}, line {line}: empty caption in column {caption_key!r}. "
                                             f"Fix the CSV, or skip and count such rows with --on-bad-row skip.")
                self.skipped["empty_caption"] += 1
                continue
            path = _resolve(self.image_root, raw) if raw else ""
            if path not in exists:
                exists[path] = bool(raw) and os.path.isfile(path)
            if not exists[path]:
                missing.append((line, raw, path))
                continue
            text = caption_prefix + caption
            ii = img_index.setdefault(path, len(img_index))
            ti = txt_index.setdefault(text, len(txt_index))
            pairs.add((ii, ti))
        if missing:
            if on_bad_row == "error":
                raise _missing_images_error(self.csv_file, missing, self.n_rows, self.image_root)
            self.skipped["missing_image"] += len(missing)
        for why, n in self.skipped.items():
            logger.warning("%s: skipped %d row(s): %s", self.csv_file, n, why)
        if not pairs:
            raise BenchmarkDataError(f"{self.csv_file}: no usable rows ({self.n_rows} rows read, skipped "
                                     f"{dict(self.skipped)}); an empty dataset has no recall")
        self.images: List[str] = list(img_index)
        self.captions: List[str] = list(txt_index)
        self.pairs: List[Tuple[int, int]] = sorted(pairs)
        self.image_to_texts: List[List[int]] = [[] for _ in self.images]
        self.text_to_images: List[List[int]] = [[] for _ in self.captions]
        for ii, ti in self.pairs:
            self.image_to_texts[ii].append(ti)
            self.text_to_images[ti].append(ii)

    @property
    def n_skipped(self) -> int:
        return int(sum(self.skipped.values()))

    def image_dataset(self, transform: Optional[Callable] = None) -> ImageFiles:
        """The unique images as a torch ``Dataset``."""
        return ImageFiles(self.images, transform)

    def positives(self) -> torch.Tensor:
        """The ``(n_pairs, 2)`` tensor of matching ``(image, caption)`` index pairs."""
        return torch.tensor(self.pairs, dtype=torch.long).reshape(-1, 2)

    @classmethod
    def from_benchmark(cls, name: str, data_root: PathLike, image_root: Optional[PathLike] = None,
                       **kwargs: Any) -> "ImageTextRetrievalCsv":
        """One of :data:`RETRIEVAL_BENCHMARKS` under ``data_root`` (images under ``image_root`` or ``data_root``)."""
        spec = retrieval_benchmark(name)
        root = Path(data_root)
        _check_layout(spec.name, root, (spec.csv,))
        return cls(root / spec.csv, image_root=image_root if image_root is not None else root,
                   caption_key=spec.caption_key, caption_prefix=spec.caption_prefix, img_key=spec.img_key,
                   sep=spec.sep, name=spec.name, **kwargs)


def resolve_benchmark_datasets(datasets: Iterable[Any], cls: Any, data_root: Optional[PathLike],
                               image_root: Optional[PathLike] = None, on_bad_row: str = "error") -> List[Any]:
    """Turn benchmark names (under ``data_root``) into ``cls`` datasets; ready datasets pass through.
    A name without ``data_root`` or a dataset listed twice is an error."""
    out: List[Any] = []
    for d in datasets:
        if isinstance(d, str):
            if data_root is None:
                raise ValueError(f"dataset {d!r} is named, so data_root (--data-root, the benchmark folder) is needed")
            d = cls.from_benchmark(d, data_root, image_root=image_root, on_bad_row=on_bad_row)
        if any(d.name == o.name for o in out):
            raise ValueError(f"dataset {d.name!r} is listed twice")
        out.append(d)
    return out
