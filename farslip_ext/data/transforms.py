"""Image transforms of the FarSLIP training and evaluation pipelines (docs/reference/method.md §1.1, §2.1, §3.4).

All transforms take a decoded :class:`PIL.Image.Image` and return plain ``torch.Tensor`` values
normalised with the OpenAI CLIP mean/std. They are registered in
:data:`farslip_ext.registry.SAMPLE_TRANSFORMS` and can be built from configs::

    SAMPLE_TRANSFORMS.build(dict(type="MultiCropTransform", image_size=224, num_crops=4))

* :class:`MultiCropTransform` - stage 1 (RS5M): a squash-resized global view plus K random crops of
  the original image and their normalised boxes (docs/reference/method.md §1.1).
* :class:`Stage2TrainTransform` - stage 2 globals and region crops: squash resize, colour jitter
  (p=0.8), grayscale (p=0.2) (docs/reference/method.md §3.4).
* :class:`EvalTransform` - the upstream open_clip validation transform: resize the short side and
  center-crop (docs/reference/method.md §3.4). Note the reference trains on squashed images but evaluates on centre crops
  (docs/reference/method.md §7.15); :class:`SquashTransform` is the matching "squash" alternative.
* :class:`RegionCropper` - stage 2 (MGRS-200k) object crops, padded to K regions (docs/reference/method.md §2.1).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF
from torchvision.transforms import v2

from farslip_ext.data.collate import TokenizerSpec, build_tokenizer
from farslip_ext.registry import SAMPLE_TRANSFORMS

__all__ = [
    "OPENAI_MEAN",
    "OPENAI_STD",
    "REGION_PROMPT",
    "SquashTransform",
    "EvalTransform",
    "MultiCropTransform",
    "Stage2TrainTransform",
    "RegionCropper",
    "build_transform",
]

logger = logging.getLogger(__name__)

#: OpenAI CLIP normalisation (docs/reference/method.md §3.4); the same numbers as ``open_clip.constants.OPENAI_DATASET_MEAN/STD``.
OPENAI_MEAN: Tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD: Tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

#: The region prompt of stage 2 (docs/reference/method.md §2.1); ``{}`` is the category name.
REGION_PROMPT = "a satellite image of {}"

ImageSize = Union[int, Tuple[int, int]]
TransformSpec = Union[None, Callable[..., Any], Mapping[str, Any]]


def _size2(image_size: ImageSize) -> Tuple[int, int]:
    if isinstance(image_size, int):
        return (image_size, image_size)
    h, w = image_size
    return (int(h), int(w))


def _interp(mode: Union[str, InterpolationMode]) -> InterpolationMode:
    if isinstance(mode, InterpolationMode):
        return mode
    try:
        return InterpolationMode(mode.lower())
    except ValueError:
        raise ValueError(
            f"unknown interpolation {mode!r}; use one of {[m.value for m in InterpolationMode]}"
        ) from None


def _to_rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")


def _tensor_tail(mean: Sequence[float], std: Sequence[float]) -> List[Any]:
    """ToTensor + Normalize in torchvision.transforms.v2 spelling, returning a plain tensor."""
    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
        v2.ToPureTensor(),
    ]


def build_transform(spec: TransformSpec, default: Optional[Callable[[], Callable[..., Any]]] = None) -> Any:
    """Resolve a transform argument of a dataset.

    Args:
        spec: ``None`` (use ``default()``), a callable (used as is) or a ``dict(type=...)`` config
            built from :data:`~farslip_ext.registry.SAMPLE_TRANSFORMS`.
        default: Factory for the default transform when ``spec`` is ``None``.

    Returns:
        The transform callable (or ``None`` when both ``spec`` and ``default`` are ``None``).
    """
    if spec is None:
        return default() if default is not None else None
    if isinstance(spec, Mapping):
        return SAMPLE_TRANSFORMS.build(dict(spec))
    if callable(spec):
        return spec
    raise TypeError(f"a transform must be None, a callable or a dict(type=...) config, got {type(spec).__name__}")


@SAMPLE_TRANSFORMS.register_module()
class SquashTransform:
    """Resize both sides to ``image_size`` (aspect ratio not kept), RGB, ToTensor, Normalize.

    This is the view the reference builds for every training image before augmentation (docs/reference/method.md §1.1, §3.4):
    ``Resize((S, S), bicubic)``, no crop, no flip.

    Args:
        image_size: Output side ``S`` (or ``(H, W)``).
        mean: Normalisation mean (OpenAI by default).
        std: Normalisation std (OpenAI by default).
        interpolation: Resize interpolation (``"bicubic"`` in the reference).
    """

    def __init__(
        self,
        image_size: ImageSize = 224,
        mean: Sequence[float] = OPENAI_MEAN,
        std: Sequence[float] = OPENAI_STD,
        interpolation: Union[str, InterpolationMode] = "bicubic",
    ) -> None:
        self.image_size = _size2(image_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.interpolation = _interp(interpolation)
        self.transform = v2.Compose(
            [v2.Resize(self.image_size, interpolation=self.interpolation), v2.Lambda(_to_rgb)]
            + _tensor_tail(self.mean, self.std)
        )

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.transform(img)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image_size={self.image_size}, interpolation={self.interpolation.value})"


@SAMPLE_TRANSFORMS.register_module()
class EvalTransform:
    """The open_clip validation transform: resize the short side to ``S``, center-crop ``S``, normalise.

    Used by the reference for the SkyScript validation CSV and all benchmarks (docs/reference/method.md §3.3, §3.4).

    Args:
        image_size: Output side ``S``.
        mean: Normalisation mean.
        std: Normalisation std.
        interpolation: Resize interpolation.
    """

    def __init__(
        self,
        image_size: int = 224,
        mean: Sequence[float] = OPENAI_MEAN,
        std: Sequence[float] = OPENAI_STD,
        interpolation: Union[str, InterpolationMode] = "bicubic",
    ) -> None:
        self.image_size = int(image_size)
        self.interpolation = _interp(interpolation)
        self.transform = v2.Compose(
            [
                v2.Resize(self.image_size, interpolation=self.interpolation),
                v2.CenterCrop(self.image_size),
                v2.Lambda(_to_rgb),
            ]
            + _tensor_tail(mean, std)
        )

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.transform(img)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image_size={self.image_size})"


@SAMPLE_TRANSFORMS.register_module()
class Stage2TrainTransform:
    """Stage-2 training transform for global images and region crops (docs/reference/method.md §3.4).

    ``Resize((S, S))`` squash (bicubic), RGB, ``ColorJitter(0.4, 0.4, 0.2, 0.1)`` applied with
    probability 0.8, ``Grayscale(3)`` with probability 0.2, ToTensor, Normalize. Randomness comes
    from torch's global generator (seeded per DataLoader worker).

    Args:
        image_size: Output side ``S``.
        color_jitter: ``(brightness, contrast, saturation, hue)``; ``None`` disables jitter.
        color_jitter_prob: Probability of applying the jitter.
        gray_scale_prob: Probability of converting to 3-channel grayscale.
        mean: Normalisation mean.
        std: Normalisation std.
        interpolation: Resize interpolation.
    """

    def __init__(
        self,
        image_size: ImageSize = 224,
        color_jitter: Optional[Sequence[float]] = (0.4, 0.4, 0.2, 0.1),
        color_jitter_prob: float = 0.8,
        gray_scale_prob: float = 0.2,
        mean: Sequence[float] = OPENAI_MEAN,
        std: Sequence[float] = OPENAI_STD,
        interpolation: Union[str, InterpolationMode] = "bicubic",
    ) -> None:
        self.image_size = _size2(image_size)
        ops: List[Any] = [v2.Resize(self.image_size, interpolation=_interp(interpolation)), v2.Lambda(_to_rgb)]
        if color_jitter is not None and color_jitter_prob > 0:
            b, c, s, h = color_jitter
            jitter = v2.ColorJitter(brightness=b, contrast=c, saturation=s, hue=h)
            ops.append(v2.RandomApply([jitter], p=color_jitter_prob))
        if gray_scale_prob > 0:
            ops.append(v2.RandomGrayscale(p=gray_scale_prob))
        self.transform = v2.Compose(ops + _tensor_tail(mean, std))

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.transform(img)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform})"


@SAMPLE_TRANSFORMS.register_module()
class MultiCropTransform:
    """Stage-1 multi-crop view (``DataAugmentationMulticrop``, docs/reference/method.md §1.1).

    * ``global_image``: the whole image squash-resized to ``(S, S)`` (bicubic), ToTensor, Normalize.
      No crop, flip or colour jitter (reference behaviour).
    * ``subset_images`` ``(K, 3, S, S)``: K crop boxes drawn with
      ``torchvision.transforms.RandomResizedCrop.get_params(img, scale, ratio)`` on the *original*
      image; each crop is cut from the original image and squash-resized like the global view.
    * ``subset_boxes`` ``(K, 5)``: ``[x1/W, y1/H, x2/W, y2/H, 1.0]`` with the original ``W, H``;
      since the global view is squashed these coordinates are valid on its token grid as they are.

    Args:
        image_size: Output side ``S``.
        num_crops: K (``--max-boxes``; 4 in the recipe).
        scale: Area fraction range of a crop (hard-coded ``(0.3, 0.7)`` in the reference).
        ratio: Aspect-ratio range of a crop.
        mean: Normalisation mean.
        std: Normalisation std.
        interpolation: Resize interpolation.
    """

    def __init__(
        self,
        image_size: ImageSize = 224,
        num_crops: int = 4,
        scale: Tuple[float, float] = (0.3, 0.7),
        ratio: Tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        mean: Sequence[float] = OPENAI_MEAN,
        std: Sequence[float] = OPENAI_STD,
        interpolation: Union[str, InterpolationMode] = "bicubic",
    ) -> None:
        if num_crops < 1:
            raise ValueError(f"num_crops must be >= 1, got {num_crops}")
        self.num_crops = int(num_crops)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.view = SquashTransform(image_size, mean, std, interpolation)

    def crop_params(self, img: Image.Image) -> Tuple[int, int, int, int]:
        """One crop ``(top, left, height, width)`` from ``RandomResizedCrop.get_params`` (torch RNG)."""
        return T.RandomResizedCrop.get_params(img, scale=list(self.scale), ratio=list(self.ratio))

    def __call__(self, img: Image.Image) -> Dict[str, torch.Tensor]:
        img = _to_rgb(img)
        W, H = img.size
        crops, boxes = [], []
        for _ in range(self.num_crops):
            i, j, h, w = self.crop_params(img)
            crops.append(self.view(TF.crop(img, i, j, h, w)))
            boxes.append([j / W, i / H, (j + w) / W, (i + h) / H, 1.0])
        return {
            "global_image": self.view(img),
            "subset_images": torch.stack(crops),
            "subset_boxes": torch.tensor(boxes, dtype=torch.float32),
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(image_size={self.view.image_size}, num_crops={self.num_crops}, "
            f"scale={self.scale}, ratio={self.ratio})"
        )


@SAMPLE_TRANSFORMS.register_module()
class RegionCropper:
    """Stage-2 object crops of one image, padded to exactly ``max_boxes`` rows (docs/reference/method.md §2.1).

    Each region is ``{"box": (x1, y1, x2, y2) in pixels of this image, "category": str,
    "category_id": int, "cap": optional str}``. For every region, in order:

    1. the box is clipped to the image (the reference "expands" with scale 1, i.e. only clips);
       a box with no area left is dropped (``dropped_boxes_outside``);
    2. a box whose clipped area is ``< min_size**2`` (``dropped_boxes_small``) or ``> max_size**2``
       (``dropped_boxes_large``) is dropped;
    3. the surviving boxes are shuffled (``shuffle=True``, torch RNG) and the first ``max_boxes``
       kept (the rest count as ``unused_boxes``, not as drops). The reference shuffles first and
       stops at K valid boxes; checking all boxes gives the same distribution and exact counters.

    Each kept box is cut from the image and passed through ``transform`` (by default
    :class:`Stage2TrainTransform`, its own random jitter per crop). Its text is the segment's
    ``cap`` when present (label ``-1``), else ``template.format(category)`` (label ``category_id``).

    Padding rows: zero image, zero box (validity column 0), category ``-1`` and, when a tokenizer is
    given, zero tokens; without a tokenizer the text is ``""`` (:class:`~farslip_ext.data.collate.FarSLIPCollate`
    zeroes the tokens of rows with validity 0).

    Returns a dict: ``boxes`` ``(K, 5)`` = ``[x1/W, y1/H, x2/W, y2/H, valid]``, ``local_images``
    ``(K, 3, S, S)``, ``local_categories`` ``(K,)`` int64, ``local_texts`` (``(K, L)`` tokens or K strings).

    Args:
        max_boxes: K (4 in the recipe).
        min_size: Minimum box side in pixels (area threshold ``min_size**2``); ``None`` disables.
        max_size: Maximum box side in pixels (area threshold ``max_size**2``); ``None`` disables.
        shuffle: Shuffle the valid boxes before keeping ``max_boxes``.
        image_size: Side of the padding images (must match the transform's output).
        transform: Per-crop transform: callable, ``dict(type=...)`` or ``None`` (Stage2TrainTransform).
        template: Prompt for category-labelled regions.
        tokenizer: Optional tokenizer (an open_clip model name, ``dict(name=, context_length=)`` or a
            callable ``List[str] -> LongTensor (n, L)``).
    """

    STAT_KEYS = ("dropped_boxes_outside", "dropped_boxes_small", "dropped_boxes_large", "unused_boxes", "kept_boxes")

    def __init__(
        self,
        max_boxes: int = 4,
        min_size: Optional[float] = 64,
        max_size: Optional[float] = 1024,
        shuffle: bool = True,
        image_size: int = 224,
        transform: TransformSpec = None,
        template: str = REGION_PROMPT,
        tokenizer: TokenizerSpec = None,
    ) -> None:
        if max_boxes < 1:
            raise ValueError(f"max_boxes must be >= 1, got {max_boxes}")
        self.max_boxes = int(max_boxes)
        self.min_size = min_size
        self.max_size = max_size
        self.shuffle = shuffle
        self.image_size = int(image_size)
        self.transform = build_transform(transform, lambda: Stage2TrainTransform(self.image_size))
        self.template = template
        self.tokenizer = build_tokenizer(tokenizer)
        self.stats: Dict[str, int] = {k: 0 for k in self.STAT_KEYS}

    def select(self, regions: Sequence[Mapping[str, Any]], width: int, height: int) -> List[Dict[str, Any]]:
        """Clip, filter and (optionally) shuffle ``regions``; returns at most ``max_boxes`` of them.

        The returned regions carry the clipped float ``box``. Updates ``self.stats``.
        """
        valid: List[Dict[str, Any]] = []
        for reg in regions:
            x1, y1, x2, y2 = (float(v) for v in reg["box"])
            x1, x2 = min(max(x1, 0.0), float(width)), min(max(x2, 0.0), float(width))
            y1, y2 = min(max(y1, 0.0), float(height)), min(max(y2, 0.0), float(height))
            if x2 <= x1 or y2 <= y1:
                self.stats["dropped_boxes_outside"] += 1
                continue
            area = (x2 - x1) * (y2 - y1)
            if self.min_size is not None and area < float(self.min_size) ** 2:
                self.stats["dropped_boxes_small"] += 1
                continue
            if self.max_size is not None and area > float(self.max_size) ** 2:
                self.stats["dropped_boxes_large"] += 1
                continue
            valid.append({**reg, "box": (x1, y1, x2, y2)})
        if self.shuffle and len(valid) > 1:
            valid = [valid[k] for k in torch.randperm(len(valid)).tolist()]
        kept = valid[: self.max_boxes]
        self.stats["unused_boxes"] += len(valid) - len(kept)
        self.stats["kept_boxes"] += len(kept)
        return kept

    def text_of(self, region: Mapping[str, Any]) -> Tuple[str, int]:
        """``(text, label)`` of a region: its ``cap`` with label -1, else the category prompt (docs/reference/method.md §2.1)."""
        cap = region.get("cap")
        if isinstance(cap, str) and cap.strip():
            return cap, -1
        return self.template.format(region["category"]), int(region["category_id"])

    def __call__(self, img: Image.Image, regions: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
        img = _to_rgb(img)
        W, H = img.size
        K, S = self.max_boxes, self.image_size
        kept = self.select(regions, W, H)
        boxes = torch.zeros(K, 5, dtype=torch.float32)
        images = torch.zeros(K, 3, S, S, dtype=torch.float32)
        cats = torch.full((K,), -1, dtype=torch.int64)
        texts = [""] * K
        for k, reg in enumerate(kept):
            x1, y1, x2, y2 = reg["box"]
            # PIL crops on integer pixel edges; round outwards so the crop covers the box.
            crop = img.crop((math.floor(x1), math.floor(y1), math.ceil(x2), math.ceil(y2)))
            out = self.transform(crop)
            if out.shape[-2:] != (S, S):
                raise ValueError(
                    f"RegionCropper(image_size={S}) got a {tuple(out.shape[-2:])} crop from its transform; "
                    f"set image_size to the transform's output size"
                )
            images[k] = out
            boxes[k] = torch.tensor([x1 / W, y1 / H, x2 / W, y2 / H, 1.0])
            texts[k], cats[k] = self.text_of(reg)
        result: Dict[str, Any] = {"boxes": boxes, "local_images": images, "local_categories": cats}
        if self.tokenizer is not None:
            tokens = self.tokenizer(texts)
            tokens[len(kept):] = 0
            result["local_texts"] = tokens
        else:
            result["local_texts"] = texts
        return result

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(max_boxes={self.max_boxes}, min_size={self.min_size}, "
            f"max_size={self.max_size}, shuffle={self.shuffle}, image_size={self.image_size})"
        )
