"""The eight OVSS benchmarks as data: on-disk layout, label encoding, class files, reference settings.

One :class:`Benchmark` per dataset of the FarSLIP OVSS table (ovss-protocol.md §1.8, §2.4, §5). This
module imports nothing from mmseg, so the CLI, the presets and the converters can use it freely; the
mmseg configs in ``configs/`` carry the same values (a test keeps the two in step).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple, Union

from farslip_ext.errors import FarSLIPError

__all__ = ["Benchmark", "BENCHMARKS", "BENCHMARK_ORDER", "get_benchmark", "resolve_benchmarks", "find_dataset_root",
           "DatasetNotFoundError"]


class DatasetNotFoundError(FarSLIPError, FileNotFoundError):
    """A benchmark's folder (or its image/label folders) is missing under the data root."""


@dataclass(frozen=True)
class Benchmark:
    """One OVSS benchmark (ovss-protocol.md §1.8 and §2.4).

    ``roots`` are folder names under the data root, the first one canonical (others are the spellings
    of the reference repos: RS-OVSS writes ``loveDA`` and ``UDD5``, SegEarth-OV ``UDD/UDD/UDD5``).
    ``raw_label_values`` are the values a label file may hold on disk (before ``reduce_zero_label``).
    """

    key: str
    name: str  # as in the published table (``load_published_results()["ovss_miou"]``)
    dataset_type: str
    custom: bool  # registered by farslip_ext (True) or shipped by mmseg (False)
    roots: Tuple[str, ...]
    img_dir: str
    ann_dir: str
    img_suffix: str
    seg_map_suffix: str
    reduce_zero_label: bool
    classes: Tuple[str, ...]
    classname_file: str
    raw_label_values: FrozenSet[int]
    segearth_prob_thd: float
    segearth_bg_idx: int
    batch_size: int
    official_release: str = ""
    notes: str = ""
    palette: Tuple[Tuple[int, int, int], ...] = field(default=())

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def config_file(self) -> Path:
        """The thin mmseg config of this benchmark."""
        return Path(__file__).resolve().parent / "configs" / f"{self.key}.py"

    def converter_command(self) -> str:
        return f"farslip ovss-convert {self.key} <official-release-folder> --data-root <data-root>"


def _vals(n: int, extra: Sequence[int] = ()) -> FrozenSet[int]:
    return frozenset(list(range(n)) + list(extra))


_ISPRS_CLASSES = ("impervious_surface", "building", "low_vegetation", "tree", "car", "clutter")
_ISPRS_PALETTE = ((255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0))

BENCHMARKS: Dict[str, Benchmark] = {
    b.key: b
    for b in (
        Benchmark(
            key="openearthmap", name="OpenEarthMap", dataset_type="OpenEarthMapDataset", custom=True,
            roots=("OpenEarthMap",), img_dir="img_dir/val", ann_dir="ann_dir/val",
            img_suffix=".tif", seg_map_suffix=".tif", reduce_zero_label=False,
            classes=("background", "bareland", "grass", "pavement", "road", "tree", "water", "cropland", "building"),
            classname_file="cls_openearthmap.txt", raw_label_values=_vals(9, (255,)),
            segearth_prob_thd=0.1, segearth_bg_idx=0, batch_size=2,
            official_release="OpenEarthMap_wo_xBD: <region>/images/*.tif, <region>/labels/*.tif, val.txt",
            notes="label 0 (unknown) is scored as a ninth class 'background', as in both reference repos",
            palette=((0, 0, 0), (128, 0, 0), (0, 255, 36), (148, 148, 148), (255, 255, 255), (34, 97, 38),
                     (0, 69, 255), (75, 181, 73), (222, 31, 7)),
        ),
        Benchmark(
            key="loveda", name="LoveDA", dataset_type="LoveDADataset", custom=False,
            roots=("LoveDA", "loveDA"), img_dir="img_dir/val", ann_dir="ann_dir/val",
            img_suffix=".png", seg_map_suffix=".png", reduce_zero_label=True,
            classes=("background", "building", "road", "water", "barren", "forest", "agricultural"),
            classname_file="cls_loveda.txt", raw_label_values=_vals(8),
            segearth_prob_thd=0.3, segearth_bg_idx=0, batch_size=8,
            official_release="Val/{Rural,Urban}/{images_png,masks_png}/*.png (or Val.zip)",
            notes="0 = no-data (ignored through reduce_zero_label)",
        ),
        Benchmark(
            key="potsdam", name="Potsdam", dataset_type="PotsdamDataset", custom=False,
            roots=("potsdam", "Potsdam"), img_dir="img_dir/val", ann_dir="ann_dir/val",
            img_suffix=".png", seg_map_suffix=".png", reduce_zero_label=True,
            classes=_ISPRS_CLASSES, classname_file="cls_potsdam.txt", raw_label_values=_vals(7),
            segearth_prob_thd=0.1, segearth_bg_idx=5, batch_size=8,
            official_release="2_Ortho_RGB/top_potsdam_<i>_<j>_RGB.tif, "
                             "5_Labels_all_noBoundary/top_potsdam_<i>_<j>_label_noBoundary.tif (or their zips)",
            notes="0 = boundary/undefined (ignored through reduce_zero_label)", palette=_ISPRS_PALETTE,
        ),
        Benchmark(
            key="vaihingen", name="Vaihingen", dataset_type="ISPRSDataset", custom=False,
            roots=("vaihingen", "Vaihingen"), img_dir="img_dir/val", ann_dir="ann_dir/val",
            img_suffix=".png", seg_map_suffix=".png", reduce_zero_label=True,
            classes=_ISPRS_CLASSES, classname_file="cls_vaihingen.txt", raw_label_values=_vals(7),
            segearth_prob_thd=0.1, segearth_bg_idx=5, batch_size=8,
            official_release="top/top_mosaic_09cm_area<N>.tif (IRRG), "
                             "top_mosaic_09cm_area<N>_noBoundary.tif (eroded ground truth) (or their zips)",
            notes="IRRG false colour; 0 = boundary (ignored through reduce_zero_label)", palette=_ISPRS_PALETTE,
        ),
        Benchmark(
            key="udd5", name="UDD5", dataset_type="UDD5Dataset", custom=True,
            roots=("UDD5", "UDD/UDD/UDD5"), img_dir="val/src", ann_dir="val/gt",
            img_suffix=".JPG", seg_map_suffix=".png", reduce_zero_label=False,
            classes=("vegetation", "building", "road", "vehicle", "other"),
            classname_file="cls_udd5.txt", raw_label_values=_vals(5, (255,)),
            segearth_prob_thd=0.4, segearth_bg_idx=4, batch_size=2,
            official_release="UDD5/val/{src/*.JPG, gt/*.png}",
            palette=((107, 142, 35), (102, 102, 156), (128, 64, 128), (0, 0, 142), (0, 0, 0)),
        ),
        Benchmark(
            key="vdd", name="VDD", dataset_type="VDDDataset", custom=True,
            roots=("VDD",), img_dir="test/src", ann_dir="test/gt",
            img_suffix=".JPG", seg_map_suffix=".png", reduce_zero_label=False,
            classes=("other", "wall", "road", "vegetation", "vehicle", "roof", "water"),
            classname_file="cls_vdd.txt", raw_label_values=_vals(7, (255,)),
            segearth_prob_thd=0.3, segearth_bg_idx=0, batch_size=2,
            official_release="VDD/test/{src/*.JPG, gt/*.png}",
            palette=((0, 0, 0), (102, 102, 156), (128, 64, 128), (107, 142, 35), (0, 0, 142), (70, 70, 70),
                     (28, 42, 168)),
        ),
        Benchmark(
            key="uavid", name="UAVid", dataset_type="UAVidDataset", custom=True,
            roots=("UAVid",), img_dir="img_dir/test", ann_dir="ann_dir/test",
            img_suffix=".png", seg_map_suffix=".png", reduce_zero_label=False,
            classes=("background", "building", "road", "car", "tree", "vegetation", "human"),
            classname_file="cls_uavid.txt", raw_label_values=_vals(7, (255,)),
            segearth_prob_thd=0.3, segearth_bg_idx=0, batch_size=8,
            official_release="test_gt/<seq>/{Images,Labels}/<frame>.png (colour labels)",
            notes="moving car (7) is merged into car (3); 255 = padding",
            palette=((0, 0, 0), (128, 0, 0), (128, 64, 128), (192, 0, 192), (0, 128, 0), (128, 128, 0),
                     (64, 64, 0)),
        ),
        Benchmark(
            key="isaid", name="iSAID", dataset_type="iSAIDDataset", custom=False,
            roots=("iSAID",), img_dir="img_dir/val", ann_dir="ann_dir/val",
            img_suffix=".png", seg_map_suffix="_instance_color_RGB.png", reduce_zero_label=False,
            classes=("background", "ship", "store_tank", "baseball_diamond", "tennis_court", "basketball_court",
                     "Ground_Track_Field", "Bridge", "Large_Vehicle", "Small_Vehicle", "Helicopter",
                     "Swimming_pool", "Roundabout", "Soccer_ball_field", "plane", "Harbor"),
            classname_file="cls_isaid.txt", raw_label_values=_vals(16, (255,)),
            segearth_prob_thd=0.4, segearth_bg_idx=0, batch_size=8,
            official_release="val/images/P*.png (DOTA), val/Semantic_masks/images/P*_instance_color_RGB.png "
                             "(or their zips)",
            notes="896 crops with overlap 384; 255 = padding of small images",
        ),
    )
}

#: Column order of the published table (ovss-protocol.md §4.1).
BENCHMARK_ORDER: Tuple[str, ...] = ("openearthmap", "loveda", "potsdam", "vaihingen", "udd5", "vdd", "uavid", "isaid")
assert set(BENCHMARK_ORDER) == set(BENCHMARKS)

_ALIASES = {b.name.lower(): b.key for b in BENCHMARKS.values()}
_ALIASES.update({"oem": "openearthmap", "udd": "udd5", "isprs": "vaihingen"})


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called ``name`` (key like ``loveda`` or table name like ``LoveDA``; case-insensitive)."""
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in BENCHMARKS:
        close = difflib.get_close_matches(str(name).lower(), list(BENCHMARKS) + list(_ALIASES), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise KeyError(f"unknown OVSS dataset {name!r}{hint}; choose from {list(BENCHMARK_ORDER)} or 'all'")
    return BENCHMARKS[key]


def resolve_benchmarks(datasets: Union[None, str, Sequence[str]]) -> List[Benchmark]:
    """``"all"``/None -> the eight in table order; a comma-separated string or a list -> those, in that order."""
    if datasets is None or (isinstance(datasets, str) and datasets.strip().lower() in ("all", "")):
        return [BENCHMARKS[k] for k in BENCHMARK_ORDER]
    items = [s.strip() for s in datasets.split(",")] if isinstance(datasets, str) else list(datasets)
    out: List[Benchmark] = []
    for item in items:
        if not item:
            continue
        if str(item).lower() == "all":
            return [BENCHMARKS[k] for k in BENCHMARK_ORDER]
        b = get_benchmark(item)
        if b not in out:
            out.append(b)
    if not out:
        raise ValueError(f"no OVSS dataset selected from {datasets!r}; choose from {list(BENCHMARK_ORDER)} or 'all'")
    return out


def find_dataset_root(bench: Benchmark, data_root: Union[str, Path]) -> Path:
    """The benchmark's folder under ``data_root`` (first existing spelling of ``bench.roots``).

    Raises :class:`DatasetNotFoundError` naming every path tried, the expected layout and the converter.
    """
    data_root = Path(data_root)
    tried: List[Path] = []
    for rel in bench.roots:
        root = data_root / rel
        tried.append(root)
        if root.is_dir():
            missing = [root / d for d in (bench.img_dir, bench.ann_dir) if not (root / d).is_dir()]
            if missing:
                raise DatasetNotFoundError(
                    f"{bench.name}: {root} exists but lacks {', '.join(str(m) for m in missing)}. Expected "
                    f"{root}/{bench.img_dir}/*{bench.img_suffix} and {root}/{bench.ann_dir}/*{bench.seg_map_suffix}. "
                    f"Create it from the official release ({bench.official_release}) with `{bench.converter_command()}`."
                )
            return root
    raise DatasetNotFoundError(
        f"{bench.name}: dataset folder not found; tried {', '.join(str(t) for t in tried)}. Expected "
        f"<data-root>/{bench.roots[0]}/{bench.img_dir}/*{bench.img_suffix} and "
        f"<data-root>/{bench.roots[0]}/{bench.ann_dir}/*{bench.seg_map_suffix}. Pass the right --data-root, or "
        f"create the folder from the official release ({bench.official_release}) with "
        f"`{bench.converter_command()}`."
    )


def benchmark_for_dataset_type(dataset_type: str) -> Optional[Benchmark]:
    for b in BENCHMARKS.values():
        if b.dataset_type == dataset_type:
            return b
    return None
