"""The tile grid of a streamed segmentation: core tiles that partition the raster, each read with a halo.

A tile's *core* (``tile`` × ``tile`` pixels, smaller at the right/bottom border) is what gets written; it
is read together with up to ``halo`` pixels of context on every side (clipped at the raster border), so
the sliding windows near a core's edge see the neighbouring pixels as they would in a whole-image run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

from farslip_ext.geo.errors import TilingError

__all__ = ["Tile", "iter_tiles", "check_tiling", "count_tiles"]


@dataclass(frozen=True)
class Tile:
    """Core and read (core + halo) rectangles in pixels: ``(row, col, height, width)``."""

    core: Tuple[int, int, int, int]
    read: Tuple[int, int, int, int]

    @property
    def core_in_read(self) -> Tuple[slice, slice]:
        """Row/column slices of the core inside the read block."""
        r, c, h, w = self.core
        return slice(r - self.read[0], r - self.read[0] + h), slice(c - self.read[1], c - self.read[1] + w)

    def window(self, which: str = "core"):
        """A ``rasterio.windows.Window`` of the core or the read rectangle."""
        from rasterio.windows import Window

        r, c, h, w = self.core if which == "core" else self.read
        return Window(c, r, w, h)


def check_tiling(window: int, stride: int, tile: int, halo: Optional[int]) -> int:
    """Validate the sizes (clear errors naming the value and the fix); returns the halo (default: window // 2)."""
    for name, v in (("--window", window), ("--stride", stride), ("--tile", tile)):
        if int(v) < 1:
            raise TilingError(f"{name} {v} must be a positive number of pixels")
    if stride > window:
        raise TilingError(f"--stride {stride} is larger than --window {window}: the sliding windows would leave pixels "
                          f"uncovered. Use --stride {window} or less (e.g. {max(1, window // 2)}).")
    if window > tile:
        raise TilingError(f"--window {window} is larger than --tile {tile}: every tile must hold at least one full model "
                          f"window. Use --tile {window} or larger (tiles of 1024-2048 px are typical), or a smaller "
                          f"--window.")
    halo = window // 2 if halo is None else int(halo)
    if halo < 0:
        raise TilingError(f"--halo {halo} must be >= 0 (pixels of context read around each tile)")
    return halo


def iter_tiles(width: int, height: int, tile: int, halo: int) -> Iterator[Tile]:
    """Tiles in row-major order; the cores partition ``height × width`` exactly."""
    for r in range(0, height, tile):
        h = min(tile, height - r)
        r0, r1 = max(0, r - halo), min(height, r + h + halo)
        for c in range(0, width, tile):
            w = min(tile, width - c)
            c0, c1 = max(0, c - halo), min(width, c + w + halo)
            yield Tile((r, c, h, w), (r0, c0, r1 - r0, c1 - c0))


def count_tiles(width: int, height: int, tile: int) -> int:
    """Number of tiles of the grid."""
    return -(-width // tile) * -(-height // tile)
