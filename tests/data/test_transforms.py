"""Transforms: multi-crop boxes and views (docs/reference/method.md §1.1), stage-2 jitter (§3.4), region crops and padding (§2.1)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

import farslip_ext.data  # noqa: F401  (registers the components before the registry snapshot)
from farslip_ext.data.transforms import (
    OPENAI_MEAN,
    OPENAI_STD,
    EvalTransform,
    MultiCropTransform,
    RegionCropper,
    SquashTransform,
    Stage2TrainTransform,
)
from farslip_ext.registry import SAMPLE_TRANSFORMS


def _image(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _reference_view(img: Image.Image, size: int) -> torch.Tensor:
    """torchvision v1 spelling of the reference view: Resize((S,S), bicubic), ToTensor, Normalize."""
    x = TF.to_tensor(TF.resize(img, [size, size], interpolation=InterpolationMode.BICUBIC))
    return TF.normalize(x, OPENAI_MEAN, OPENAI_STD)


def test_openai_constants_match_open_clip():
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    assert OPENAI_MEAN == tuple(OPENAI_DATASET_MEAN) and OPENAI_STD == tuple(OPENAI_DATASET_STD)


def test_multicrop_global_view_is_squash_resize_of_full_image():
    img = _image(100, 80)
    out = MultiCropTransform(image_size=64, num_crops=2)(img)
    assert type(out["global_image"]) is torch.Tensor and out["global_image"].shape == (3, 64, 64)
    torch.testing.assert_close(out["global_image"], _reference_view(img, 64), rtol=0, atol=1e-6)


def test_multicrop_boxes_and_crops_match_hand_computation(monkeypatch):
    img = _image(100, 80, seed=1)
    params = iter([(10, 20, 40, 30), (0, 0, 80, 100), (79, 99, 1, 1)])  # (top, left, height, width)
    seen = []

    def fake_get_params(image, scale, ratio):
        seen.append((image.size, tuple(scale), tuple(ratio)))
        return next(params)

    monkeypatch.setattr(T.RandomResizedCrop, "get_params", staticmethod(fake_get_params))
    out = MultiCropTransform(image_size=64, num_crops=3)(img)
    # crops are drawn on the ORIGINAL image with the reference scale/ratio ranges
    assert seen == [((100, 80), (0.3, 0.7), (0.75, 4 / 3))] * 3
    expected = torch.tensor(
        [
            [20 / 100, 10 / 80, 50 / 100, 50 / 80, 1.0],
            [0.0, 0.0, 1.0, 1.0, 1.0],
            [99 / 100, 79 / 80, 1.0, 1.0, 1.0],
        ]
    )
    torch.testing.assert_close(out["subset_boxes"], expected, rtol=0, atol=1e-7)
    assert out["subset_images"].shape == (3, 3, 64, 64)
    torch.testing.assert_close(out["subset_images"][0], _reference_view(img.crop((20, 10, 50, 50)), 64), rtol=0, atol=1e-6)
    torch.testing.assert_close(out["subset_images"][1], out["global_image"], rtol=0, atol=0)


def test_multicrop_real_params_are_seeded_and_in_range():
    img = _image(120, 90, seed=2)
    t = MultiCropTransform(image_size=32, num_crops=4)
    torch.manual_seed(0)
    a = t(img)
    torch.manual_seed(0)
    b = t(img)
    torch.testing.assert_close(a["subset_boxes"], b["subset_boxes"], rtol=0, atol=0)
    boxes = a["subset_boxes"]
    assert boxes.shape == (4, 5) and torch.all(boxes[:, 4] == 1)
    assert torch.all(boxes[:, :4] >= 0) and torch.all(boxes[:, :4] <= 1)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert torch.all(area > 0.25) and torch.all(area < 0.75)  # scale (0.3, 0.7) up to pixel rounding


def test_stage2_transform_jitter_and_grayscale_switches():
    img = _image(90, 70, seed=3)
    plain = Stage2TrainTransform(image_size=48, color_jitter_prob=0.0, gray_scale_prob=0.0)(img)
    torch.testing.assert_close(plain, _reference_view(img, 48), rtol=0, atol=1e-6)
    gray = Stage2TrainTransform(image_size=48, color_jitter_prob=0.0, gray_scale_prob=1.0)(img)
    mean, std = torch.tensor(OPENAI_MEAN)[:, None, None], torch.tensor(OPENAI_STD)[:, None, None]
    raw = gray * std + mean
    assert gray.shape == (3, 48, 48)
    torch.testing.assert_close(raw[0], raw[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(raw[1], raw[2], atol=1e-5, rtol=0)
    t = Stage2TrainTransform(image_size=48)
    torch.manual_seed(0)
    a = t(img)
    torch.manual_seed(0)
    b = t(img)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the default recipe does jitter: some draw differs from the plain view
    assert any(not torch.allclose(t(img), plain) for _ in range(5))


def test_eval_transform_is_short_side_resize_and_center_crop():
    img = _image(96, 64, seed=4)
    ref = TF.normalize(TF.to_tensor(TF.center_crop(TF.resize(img, 32, InterpolationMode.BICUBIC), 32)), OPENAI_MEAN, OPENAI_STD)
    torch.testing.assert_close(EvalTransform(32)(img), ref, rtol=0, atol=1e-6)


def test_transforms_build_from_registry():
    t = SAMPLE_TRANSFORMS.build(dict(type="MultiCropTransform", image_size=32, num_crops=2))
    assert isinstance(t, MultiCropTransform) and t.num_crops == 2
    assert isinstance(SAMPLE_TRANSFORMS.build(dict(type="Stage2TrainTransform", image_size=32)), Stage2TrainTransform)
    rc = SAMPLE_TRANSFORMS.build(dict(type="RegionCropper", image_size=32, transform=dict(type="SquashTransform", image_size=32)))
    assert isinstance(rc.transform, SquashTransform)


# ---------------------------------------------------------------------------------------------------
# RegionCropper

REGIONS = [
    {"box": (10, 10, 60, 50), "category": "forest", "category_id": 0},  # keep, area 2000
    {"box": (0, 0, 10, 10), "category": "road", "category_id": 5},  # small: 100 < 20**2
    {"box": (0, 0, 200, 100), "category": "farmland", "category_id": 1},  # large: 20000 > 90**2
    {"box": (250, 10, 300, 50), "category": "water", "category_id": 3},  # outside after clipping
    {"box": (180, 60, 260, 120), "category": "residential", "category_id": 2, "cap": "red roofs"},  # clipped
    {"box": (100, 20, 150, 80), "category": "road", "category_id": 5},  # keep
]


def _cropper(**kw):
    kw.setdefault("transform", SquashTransform(32))
    return RegionCropper(image_size=32, min_size=20, max_size=90, **kw)


def test_region_cropper_filters_clips_pads_and_counts():
    img = _image(200, 100, seed=5)
    rc = _cropper(max_boxes=4, shuffle=False)
    out = rc(img, REGIONS)
    assert rc.stats == {
        "dropped_boxes_outside": 1,
        "dropped_boxes_small": 1,
        "dropped_boxes_large": 1,
        "unused_boxes": 0,
        "kept_boxes": 3,
    }
    expected = torch.tensor(
        [
            [10 / 200, 10 / 100, 60 / 200, 50 / 100, 1],
            [180 / 200, 60 / 100, 1.0, 1.0, 1],
            [100 / 200, 20 / 100, 150 / 200, 80 / 100, 1],
            [0, 0, 0, 0, 0],
        ],
        dtype=torch.float32,
    )
    torch.testing.assert_close(out["boxes"], expected, rtol=0, atol=1e-7)
    assert out["local_categories"].tolist() == [0, -1, 5, -1]
    assert out["local_texts"] == ["a satellite image of forest", "red roofs", "a satellite image of road", ""]
    assert out["local_images"].shape == (4, 3, 32, 32)
    torch.testing.assert_close(out["local_images"][0], SquashTransform(32)(img.crop((10, 10, 60, 50))), rtol=0, atol=0)
    torch.testing.assert_close(out["local_images"][1], SquashTransform(32)(img.crop((180, 60, 200, 100))), rtol=0, atol=0)
    assert torch.count_nonzero(out["local_images"][3]) == 0


def test_region_cropper_keeps_at_most_k_and_shuffles_with_torch_rng():
    img = _image(200, 100, seed=6)
    rc = _cropper(max_boxes=2, shuffle=True)
    orders = set()
    for s in range(8):
        torch.manual_seed(s)
        out = rc(img, REGIONS)
        assert out["boxes"][:, 4].tolist() == [1.0, 1.0]
        orders.add(tuple(out["local_categories"].tolist()))
    assert rc.stats["unused_boxes"] == 8 and rc.stats["kept_boxes"] == 16 and rc.stats["dropped_boxes_small"] == 8
    assert len(orders) > 1 and orders <= {(0, -1), (-1, 0), (0, 5), (5, 0), (-1, 5), (5, -1)}
    torch.manual_seed(3)
    a = rc(img, REGIONS)
    torch.manual_seed(3)
    b = rc(img, REGIONS)
    torch.testing.assert_close(a["boxes"], b["boxes"], rtol=0, atol=0)


def test_region_cropper_with_tokenizer_pads_zero_tokens():
    import open_clip

    tok = open_clip.get_tokenizer("farslip-test-tiny")
    img = _image(200, 100, seed=7)
    out = _cropper(max_boxes=5, shuffle=False, tokenizer=tok)(img, REGIONS)
    assert out["local_texts"].shape == (5, 77) and out["local_texts"].dtype == torch.int64
    torch.testing.assert_close(out["local_texts"][0], tok(["a satellite image of forest"])[0])
    assert torch.count_nonzero(out["local_texts"][3:]) == 0
    assert out["local_categories"].tolist() == [0, -1, 5, -1, -1]


def test_region_cropper_with_no_valid_box_is_all_padding():
    out = _cropper(max_boxes=3)(_image(64, 64), [{"box": (0, 0, 5, 5), "category": "road", "category_id": 5}])
    assert torch.count_nonzero(out["boxes"]) == 0 and out["local_categories"].tolist() == [-1, -1, -1]
    assert out["local_texts"] == ["", "", ""]


def test_region_cropper_rejects_transform_of_wrong_size():
    rc = RegionCropper(image_size=32, min_size=None, transform=SquashTransform(16))
    with pytest.raises(ValueError, match="image_size"):
        rc(_image(64, 64), [{"box": (0, 0, 30, 30), "category": "road", "category_id": 5}])
