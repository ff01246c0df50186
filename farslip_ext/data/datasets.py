"""Map-style datasets: MGRS-200k JSON (stage 2), SkyScript-style CSVs and generic image-text files.

docs/reference/method.md §2.1 (the stage-2 item), §3.2 (MGRS-200k ``text_info.json``), §3.3 (SkyScript
CSV) and docs/reference/method.md §3.5 (classification CSVs). Each is a :class:`~farslip_ext.data.base.SkippingDataset`: it keeps
a ``stats`` dict of counters (``seen``, ``yielded``, ``skipped_*``, ``dropped_boxes*``) and skips an
unreadable item (logged, counted) by returning the next readable one; with DataLoader workers each
worker process counts its own copy.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from PIL import Image

from farslip_ext.data.base import SkippingDataset, SkipSample
from farslip_ext.data.collate import TokenizerSpec
from farslip_ext.data.transforms import (
    REGION_PROMPT,
    EvalTransform,
    RegionCropper,
    Stage2TrainTransform,
    TransformSpec,
    build_transform,
)
from farslip_ext.io import load_rgb_image, read_class_lines
from farslip_ext.registry import TRAIN_DATASETS

__all__ = [
    "BBox",
    "parse_bbox",
    "read_classnames",
    "load_image",
    "SkipSample",
    "ImageTextDataset",
    "SkyScriptCsvDataset",
    "MGRSJsonDataset",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

# ---------------------------------------------------------------------------------------------------
# boxes


class BBox(NamedTuple):
    """A parsed MGRS box in original pixels; ``width``/``height`` are the annotated image size (or None)."""

    x1: float
    y1: float
    x2: float
    y2: float
    width: Optional[float]
    height: Optional[float]
    source: str  # "names" | "order" | "sequence"


_BBOX_ALIASES: Dict[str, Tuple[str, ...]] = {
    "x1": ("x1", "xmin", "x_min", "left", "x0"),
    "y1": ("y1", "ymin", "y_min", "top", "y0"),
    "x2": ("x2", "xmax", "x_max", "right"),
    "y2": ("y2", "ymax", "y_max", "bottom"),
    "width": ("w", "width", "img_w", "img_width", "image_width", "imgw"),
    "height": ("h", "height", "img_h", "img_height", "image_height", "imgh"),
}
_ALIAS_TO_FIELD = {a: f for f, aliases in _BBOX_ALIASES.items() for a in aliases}
_XYWH_MARKERS = {"x", "y"}


def _num(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError(f"bbox {what} is not a number: {v!r}")
    try:
        return float(v)
    except ValueError:
        raise ValueError(f"bbox {what} is not a number: {v!r}") from None


def parse_bbox(bbox: Any) -> BBox:
    """Read an MGRS-200k ``bbox`` by field name (docs/reference/method.md §3.2, §7.23).

    The reference unpacks the dict's *values in insertion order* as ``(x1, y1, x2, y2, W, H)``. Here
    the fields are read by name, case-insensitively, with the aliases ``x1/xmin/left/x0``,
    ``y1/ymin/top/y0``, ``x2/xmax/right``, ``y2/ymax/bottom``, ``W/width/img_w/image_width``,
    ``H/height/img_h/image_height``. Only when *no* key is a known name is the insertion order used
    (``source == "order"``, 4 or 6 values). A list/tuple is read positionally (``"sequence"``).

    Args:
        bbox: A dict or a sequence of 4 or 6 numbers.

    Returns:
        The parsed :class:`BBox` (values are not validated; NaN or ``x2 <= x1`` pass through).

    Raises:
        ValueError: unreadable box: some corner names present but not all four, ``x/y/w/h``
            boxes, a wrong number of values, or non-numbers.
    """
    if isinstance(bbox, Mapping):
        lower: Dict[str, Any] = {}
        for k, v in bbox.items():
            lk = str(k).lower()
            if lk in lower:
                raise ValueError(f"bbox has keys that differ only in case: {list(bbox)}")
            lower[lk] = v
        fields = {_ALIAS_TO_FIELD[k]: v for k, v in lower.items() if k in _ALIAS_TO_FIELD}
        if fields:
            corners = ("x1", "y1", "x2", "y2")
            absent = [c for c in corners if c not in fields]
            if absent:
                kind = " (x/y/w/h boxes are not supported)" if _XYWH_MARKERS & set(lower) else ""
                raise ValueError(f"bbox {dict(bbox)!r} lacks the corner field(s) {absent}{kind}")
            vals = [_num(fields[c], c) for c in corners]
            w = _num(fields["width"], "width") if "width" in fields else None
            h = _num(fields["height"], "height") if "height" in fields else None
            return BBox(*vals, w, h, "names")
        values, source = list(bbox.values()), "order"
    elif isinstance(bbox, (list, tuple)):
        values, source = list(bbox), "sequence"
    else:
        raise ValueError(f"bbox must be a dict or a list of numbers, got {type(bbox).__name__}")
    if len(values) not in (4, 6):
        raise ValueError(f"bbox must have 4 or 6 values (x1, y1, x2, y2[, W, H]), got {len(values)}: {bbox!r}")
    nums = [_num(v, "value") for v in values]
    w, h = (nums[4], nums[5]) if len(nums) == 6 else (None, None)
    return BBox(nums[0], nums[1], nums[2], nums[3], w, h, source)


# ---------------------------------------------------------------------------------------------------
# shared helpers


def read_classnames(path: PathLike) -> List[str]:
    """Class names of a classification benchmark, one per line (the project's one class-file policy,
    :func:`farslip_ext.io.read_class_lines`)."""
    return read_class_lines(path)


def load_image(path: PathLike) -> Image.Image:
    """Open, fully decode and convert an image to RGB (raises on missing or corrupt files)."""
    return load_rgb_image(path)


def _resolve(root: Optional[Path], rel: str) -> Path:
    p = Path(rel)
    return p if p.is_absolute() or root is None else root / p


#: The name this base class had before it became public (:class:`farslip_ext.data.base.SkippingDataset`).
_SkippingDataset = SkippingDataset


def _apply_global_transform(transform: Callable[..., Any], img: Image.Image) -> Dict[str, Any]:
    out = transform(img)
    if isinstance(out, Mapping):
        if "global_image" not in out:
            raise ValueError(f"a transform returning a dict must provide 'global_image', got {sorted(out)}")
        return dict(out)
    return {"global_image": out}


# ---------------------------------------------------------------------------------------------------
# image-text files


def _read_table(path: Path, fmt: Optional[str], sep: Optional[str]) -> List[Dict[str, Any]]:
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt in ("csv", "tsv", "txt"):
        delim = sep or ("\t" if fmt == "tsv" else ",")
        with open(path, newline="", encoding="utf-8") as f:
            return [dict(r) for r in csv.DictReader(f, delimiter=delim)]
    if fmt in ("jsonl", "ndjson"):
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    if fmt == "json":
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, list):
            raise ValueError(f"{path}: a JSON table must be a list of objects")
        return data
    raise ValueError(f"{path}: unknown table format {fmt!r}; use csv, tsv, jsonl or json (or pass fmt=)")


def _label(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return v
    return v


@TRAIN_DATASETS.register_module()
class ImageTextDataset(SkippingDataset):
    """Image-text (or image-label) pairs from a CSV/TSV/JSONL table (docs/reference/method.md §3.3, §3.5).

    Each row names an image (``filepath_key``, relative to ``image_root``; default: the table's
    folder) and optionally a caption (``caption_key``) and a label (``label_key``). Items are
    ``{"global_image": (3, S, S), "global_text": (L,) tokens or str, "label": int|str}``
    (keys present only when configured).

    Args:
        path: The table file.
        image_root: Folder the file paths are relative to (absolute paths are used as they are).
        caption_key: Caption column (``None`` for classification tables).
        filepath_key: Image path column.
        label_key: Label column (ints are parsed; other values stay strings).
        transform: ``None`` (:class:`EvalTransform`), a callable or ``dict(type=...)``.
        tokenizer: ``None`` (raw strings), an open_clip model name, dict or callable.
        context_length: Tokenizer context override (77 / 248).
        image_size: Size of the default transform.
        fmt: ``"csv"``, ``"tsv"``, ``"jsonl"`` or ``"json"``; inferred from the suffix by default.
        sep: CSV delimiter override.
        max_skip: How many unreadable items in a row ``__getitem__`` skips before raising.
    """

    def __init__(
        self,
        path: PathLike,
        image_root: Optional[PathLike] = None,
        caption_key: Optional[str] = "title",
        filepath_key: str = "filepath",
        label_key: Optional[str] = None,
        transform: TransformSpec = None,
        tokenizer: TokenizerSpec = None,
        context_length: Optional[int] = None,
        image_size: int = 224,
        fmt: Optional[str] = None,
        sep: Optional[str] = None,
        max_skip: int = 100,
    ) -> None:
        super().__init__(max_skip, tokenizer=tokenizer, context_length=context_length)
        self.path = Path(path)
        self.image_root = Path(image_root) if image_root is not None else self.path.parent
        self.caption_key, self.filepath_key, self.label_key = caption_key, filepath_key, label_key
        self.rows = _read_table(self.path, fmt, sep)
        if self.rows:
            have = set(self.rows[0])
            need = [k for k in (filepath_key, caption_key, label_key) if k is not None]
            absent = [k for k in need if k not in have]
            if absent:
                raise KeyError(f"{self.path}: column(s) {absent} not found; columns are {sorted(have)}")
        self.transform = build_transform(transform, lambda: EvalTransform(image_size))
        logger.info("%s: %d rows from %s", type(self).__name__, len(self.rows), self.path)

    def __len__(self) -> int:
        return len(self.rows)

    def item_name(self, idx: int) -> str:
        return str(self.rows[idx].get(self.filepath_key))

    def load(self, idx: int) -> Dict[str, Any]:
        row = self.rows[idx]
        img = load_image(_resolve(self.image_root, str(row[self.filepath_key])))
        sample = _apply_global_transform(self.transform, img)
        if self.caption_key is not None:
            sample["global_text"] = self.tokenize(str(row[self.caption_key]))
        if self.label_key is not None:
            sample["label"] = _label(row[self.label_key])
        return sample


@TRAIN_DATASETS.register_module()
class SkyScriptCsvDataset(ImageTextDataset):
    """SkyScript-style CSV (``filepath,title,label``; docs/reference/method.md §3.3): the reference's per-epoch validation set.

    Same as :class:`ImageTextDataset` with CSV format and ``caption_key="title"``; use
    ``caption_key="title_multi_objects"`` for the SkyScript test 30K file (docs/reference/method.md §3.5).
    """

    def __init__(
        self,
        csv: PathLike,
        image_root: Optional[PathLike] = None,
        caption_key: str = "title",
        label_key: Optional[str] = None,
        filepath_key: str = "filepath",
        transform: TransformSpec = None,
        tokenizer: TokenizerSpec = None,
        context_length: Optional[int] = None,
        image_size: int = 224,
        sep: str = ",",
        max_skip: int = 100,
    ) -> None:
        super().__init__(
            csv,
            image_root=image_root,
            caption_key=caption_key,
            filepath_key=filepath_key,
            label_key=label_key,
            transform=transform,
            tokenizer=tokenizer,
            context_length=context_length,
            image_size=image_size,
            fmt="csv",
            sep=sep,
            max_skip=max_skip,
        )


# ---------------------------------------------------------------------------------------------------
# MGRS-200k


@TRAIN_DATASETS.register_module()
class MGRSJsonDataset(SkippingDataset):
    """Stage-2 dataset over MGRS-200k ``text_info.json`` (``JsonDataset``; docs/reference/method.md §2.1, §3.2).

    Each item: the global image ``image_root / global_filepath`` through ``transform`` (default
    :class:`Stage2TrainTransform`), the first non-empty caption among ``caption_keys`` (reference:
    ``global_caption`` then ``detailed_caption``; use ``("detailed_caption",)`` for long captions with
    a 248-token tokenizer), and up to ``max_boxes`` object crops from ``segment`` via
    :class:`RegionCropper`.

    Boxes are read by field name (:func:`parse_bbox`, fixing docs/reference/method.md §7.23). If the annotated image size
    (``W``/``H`` fields) differs from the decoded image, the box is rescaled to the decoded image
    (``rescaled_boxes``). Dropped with a count: unreadable boxes, NaN/inf values, ``x2 <= x1`` or
    ``y2 <= y1``, segments without a ``cap`` and without ``category``/``category_id``
    (``dropped_boxes_malformed``), and by the cropper: boxes outside the image after clipping,
    too small, too large. ``dropped_boxes`` is their sum. Items whose image is missing
    (``skipped_missing``) or unreadable (``skipped_corrupt``), without a caption
    (``skipped_no_caption``) or not a JSON object (``skipped_malformed_item``) are skipped.

    Item keys: ``global_image (3,S,S)``, ``global_text (L,)`` (str without tokenizer), ``boxes (K,5)``,
    ``local_images (K,3,S,S)``, ``local_texts (K,L)`` (K str without tokenizer), ``local_categories (K,)``;
    plus ``subset_images``/``subset_boxes`` when ``transform`` is a :class:`MultiCropTransform`.

    Args:
        json_path: ``text_info.json`` (a JSON list of items).
        image_root: Folder of the global images (``.../mgrs/global_imgs``); default: the JSON's folder.
        transform: Global-image transform (``None`` -> :class:`Stage2TrainTransform`).
        region_cropper: ``None`` (built from the next five arguments), a :class:`RegionCropper` or its config.
        max_boxes: K (4).
        min_size: Minimum box side, pixels (64).
        max_size: Maximum box side, pixels (1024).
        shuffle_boxes: Shuffle the segments before keeping K (reference: yes).
        region_transform: Per-crop transform (``None`` -> :class:`Stage2TrainTransform`).
        template: Region prompt (``"a satellite image of {}"``).
        caption_keys: Caption fields, first non-empty wins.
        tokenizer: ``None``, an open_clip model name, dict or callable.
        context_length: Tokenizer context override (77 / 248).
        image_size: Output side ``S`` of the default transforms.
        max_skip: How many unreadable items in a row ``__getitem__`` skips before raising.
    """

    STAT_KEYS = SkippingDataset.STAT_KEYS + (
        "skipped_no_caption",
        "skipped_malformed_item",
        "dropped_boxes_malformed",
        "rescaled_boxes",
        "bbox_order_fallback",
    )

    def __init__(
        self,
        json_path: PathLike,
        image_root: Optional[PathLike] = None,
        transform: TransformSpec = None,
        region_cropper: Union[None, RegionCropper, Mapping[str, Any]] = None,
        max_boxes: int = 4,
        min_size: Optional[float] = 64,
        max_size: Optional[float] = 1024,
        shuffle_boxes: bool = True,
        region_transform: TransformSpec = None,
        template: str = REGION_PROMPT,
        caption_keys: Sequence[str] = ("global_caption", "detailed_caption"),
        tokenizer: TokenizerSpec = None,
        context_length: Optional[int] = None,
        image_size: int = 224,
        max_skip: int = 100,
    ) -> None:
        super().__init__(max_skip, tokenizer=tokenizer, context_length=context_length)
        self.json_path = Path(json_path)
        self.image_root = Path(image_root) if image_root is not None else self.json_path.parent
        with open(self.json_path, encoding="utf-8") as f:
            items = json.load(f)
        if not isinstance(items, list):
            raise ValueError(f"{self.json_path}: MGRS text_info.json must be a JSON list, got {type(items).__name__}")
        self.items: List[Mapping[str, Any]] = items
        self.caption_keys = tuple(caption_keys)
        self.transform = build_transform(transform, lambda: Stage2TrainTransform(image_size))
        if region_cropper is None:
            self.cropper = RegionCropper(
                max_boxes=max_boxes,
                min_size=min_size,
                max_size=max_size,
                shuffle=shuffle_boxes,
                image_size=image_size,
                transform=region_transform,
                template=template,
                tokenizer=self.tokenizer,
            )
        else:
            self.cropper = build_transform(region_cropper)
            if getattr(self.cropper, "tokenizer", None) is None and self.tokenizer is not None:
                self.cropper.tokenizer = self.tokenizer
        self._warned_order = False
        logger.info("MGRSJsonDataset: %d items from %s (images under %s)", len(items), self.json_path, self.image_root)

    @property
    def stats(self) -> Dict[str, int]:
        s = dict(self._stats)
        for k, v in getattr(self.cropper, "stats", {}).items():
            s[k] = s.get(k, 0) + v
        s["dropped_boxes"] = sum(
            s.get(k, 0)
            for k in ("dropped_boxes_malformed", "dropped_boxes_outside", "dropped_boxes_small", "dropped_boxes_large")
        )
        return s

    def reset_stats(self) -> None:
        super().reset_stats()
        for k in getattr(self.cropper, "stats", {}):
            self.cropper.stats[k] = 0

    def __len__(self) -> int:
        return len(self.items)

    def item_name(self, idx: int) -> str:
        item = self.items[idx]
        return str(item.get("global_filepath")) if isinstance(item, Mapping) else "?"

    def caption_of(self, item: Mapping[str, Any]) -> Optional[str]:
        """The first non-empty caption among ``caption_keys`` (reference: ``global_caption or detailed_caption``)."""
        for k in self.caption_keys:
            v = item.get(k)
            if isinstance(v, str) and v.strip():
                return v
        return None

    def regions_of(self, item: Mapping[str, Any], width: int, height: int, where: str = "") -> List[Dict[str, Any]]:
        """The item's segments as cropper regions in pixels of a ``width x height`` image.

        Malformed segments are dropped and counted (see the class docstring).
        """
        regions: List[Dict[str, Any]] = []
        for n, seg in enumerate(item.get("segment") or ()):
            try:
                if not isinstance(seg, Mapping) or "bbox" not in seg:
                    raise ValueError("segment has no 'bbox'")
                b = parse_bbox(seg["bbox"])
                if b.source == "order":
                    self.count("bbox_order_fallback")
                    if not self._warned_order:
                        self._warned_order = True
                        logger.warning(
                            "%s: bbox %r has no known field names; reading its values in insertion order as "
                            "(x1, y1, x2, y2[, W, H]) like the reference (further occurrences are only counted)",
                            self.json_path, seg["bbox"],
                        )
                coords = (b.x1, b.y1, b.x2, b.y2)
                if not all(math.isfinite(c) for c in coords):
                    raise ValueError(f"non-finite box {coords}")
                if b.x2 <= b.x1 or b.y2 <= b.y1:
                    raise ValueError(f"empty box {coords}")
                sx = sy = 1.0
                if b.width and b.height and math.isfinite(b.width) and math.isfinite(b.height):
                    if (b.width, b.height) != (float(width), float(height)):
                        sx, sy = width / b.width, height / b.height
                        self.count("rescaled_boxes")
                cap = seg.get("cap")
                has_cap = isinstance(cap, str) and bool(cap.strip())
                if not has_cap and ("category" not in seg or "category_id" not in seg):
                    raise ValueError("segment has neither a 'cap' nor 'category' and 'category_id'")
                regions.append(
                    {
                        "box": (b.x1 * sx, b.y1 * sy, b.x2 * sx, b.y2 * sy),
                        "category": seg.get("category"),
                        "category_id": int(seg["category_id"]) if "category_id" in seg else -1,
                        "cap": cap if has_cap else None,
                    }
                )
            except (ValueError, TypeError, KeyError) as e:
                self.count("dropped_boxes_malformed")
                logger.warning("MGRSJsonDataset: %s segment %d dropped: %s", where, n, e)
        return regions

    def load(self, idx: int) -> Dict[str, Any]:
        item = self.items[idx]
        if not isinstance(item, Mapping):
            raise SkipSample("skipped_malformed_item", f"item is a {type(item).__name__}, not an object")
        caption = self.caption_of(item)
        if caption is None:
            raise SkipSample("skipped_no_caption", f"no non-empty caption among {self.caption_keys}")
        rel = item.get("global_filepath")
        if not isinstance(rel, str) or not rel:
            raise SkipSample("skipped_missing", "item has no 'global_filepath'")
        img = load_image(_resolve(self.image_root, rel))
        sample = _apply_global_transform(self.transform, img)
        sample["global_text"] = self.tokenize(caption)
        regions = self.regions_of(item, img.width, img.height, where=rel)
        sample.update(self.cropper(img, regions))
        return sample
