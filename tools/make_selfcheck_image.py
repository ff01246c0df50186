"""Regenerate farslip_ext/assets/selfcheck_scene.png: a seeded synthetic nadir scene (fields, a river,
a road and building blocks), 224x224 RGB. Run: python tools/make_selfcheck_image.py"""
from pathlib import Path

import numpy as np
from PIL import Image


def make(size: int = 224, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), np.float32)
    img[:] = (96, 140, 70)  # farmland
    img[: size // 2, size // 2:] = (60, 100, 50)  # forest
    yy, xx = np.mgrid[:size, :size]
    river = np.abs(yy - (0.6 * size + 12 * np.sin(xx / 17.0))) < 9
    img[river] = (40, 70, 120)
    road = np.abs(xx - 0.3 * size) < 4
    img[road] = (128, 128, 128)
    for _ in range(14):
        y, x = rng.integers(8, size // 2 - 16), rng.integers(int(0.3 * size) + 8, size - 16)
        h, w = rng.integers(6, 14, size=2)
        img[y:y + h, x:x + w] = (180, 90, 70)
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "farslip_ext" / "assets" / "selfcheck_scene.png"
    make().save(out, optimize=True)
    print(out, out.stat().st_size, "bytes")
