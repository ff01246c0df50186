"""Known-answer fakes for the evaluator tests: a CLIP whose embeddings are looked up from designed tables."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from PIL import Image


class IdTransform:
    """'Preprocessing' for the fake model: the image's id is the red value of its top-left pixel."""

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return torch.tensor([float(img.getpixel((0, 0))[0])])


class FakeTokenizer:
    """Knows only the exact prompts it was given: any other text (a wrong template) is a KeyError."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.vocab = {t: i for i, t in enumerate(texts)}

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.tensor([[self.vocab[t]] for t in texts])


class FakeCLIP(torch.nn.Module):
    """encode_image/encode_text return designed embeddings looked up by image id / prompt."""

    def __init__(self, image_table: torch.Tensor, text_table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("image_table", image_table.float())
        self.register_buffer("text_table", text_table.float())

    def encode_image(self, x: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        f = self.image_table[x[:, 0].round().long()]
        return torch.nn.functional.normalize(f, dim=-1) if normalize else f

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        f = self.text_table[tokens[:, 0]]
        return torch.nn.functional.normalize(f, dim=-1) if normalize else f


def save_id_png(path: Path, image_id: int, fill: int = 3) -> None:
    """An 8×8 PNG whose red channel is ``image_id`` (what :class:`IdTransform` reads back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (image_id, fill, fill)).save(path)


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain comma-separated file (no quoting: the values of the tests hold no commas)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(str(x) for x in r) + "\n")
