"""``farslip segment IMAGE... --classes "building,road,water"``: open-vocabulary segmentation of a GeoTIFF,
a plain image or a stack of single-band files, of any size, streamed tile by tile (docs/segment.md).
Heavy modules (rasterio, torch) are imported only when the command runs; mmseg and mmcv never are."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

#: ``--pretrained`` when not given, in order of preference: the released stage-2, then stage-1 weights of
#: the architecture (``farslip-vitb16`` has s2; ``farslip-vitb32`` only s1, its s2 is ``farslip-vitb32-ctx248``).
DEFAULT_TAGS = ("s2", "s1")


def default_tag(model: str) -> Optional[str]:
    """The tag ``farslip segment --model MODEL`` uses without ``--pretrained`` (None: not a FarSLIP model)."""
    from farslip_ext.catalogue import CATALOGUE

    tags = CATALOGUE.entries().get(model, {})
    return next((t for t in DEFAULT_TAGS if t in tags), None)


def _pretrained(args: argparse.Namespace) -> Optional[str]:
    if args.pretrained is None:
        return default_tag(args.model)
    return "random" if args.pretrained.lower() in ("none", "random") else args.pretrained


def _run(args: argparse.Namespace) -> int:
    from farslip_ext.geo import segment_raster

    extra = {k: getattr(args, k) for k in ("prob_thd", "bg_idx", "templates", "window_batch_size")
             if getattr(args, k) is not None}
    progress = False if args.no_progress else True if args.progress else None
    res = segment_raster(
        args.image if len(args.image) > 1 else args.image[0], args.classes, args.output, model=args.model,
        pretrained=_pretrained(args), bands=args.bands, stretch=args.stretch, percentiles=args.percentiles,
        value_range=args.value_range, window=args.window, stride=args.stride, tile=args.tile, halo=args.halo,
        probabilities=args.probabilities, overlay=not args.no_overlay, overlay_size=args.overlay_size,
        overviews=not args.no_overviews, overwrite=args.overwrite, preset=args.preset, device=args.device,
        precision=args.precision, progress=progress, gdal_cache_mb=args.gdal_cache_mb, **extra)
    print(json.dumps(res.as_dict(), indent=2))
    if not res.georeferenced:
        print(f"note: {res.image} has no georeferencing (CRS/transform); {res.mask} is a plain image mask",
              file=sys.stderr)
    return 0


def register(sub) -> None:
    from farslip_ext.geo.raster import BAND_PRESETS

    p = sub.add_parser(
        "segment", help="open-vocabulary segmentation of a GeoTIFF / image of any size (streamed tiles)",
        description="Segment IMAGE into the --classes and write a uint8 class mask (GeoTIFF with the input's "
                    "CRS/transform, 255 = nodata), a PNG overlay with a legend, and optionally the top class "
                    "probability. The raster is streamed in tiles, so its size does not matter. Several single-band "
                    "files of one scene (same CRS and extent) are stacked as bands 1..N in the order given.",
        epilog="examples: farslip segment scene.tif --classes 'building,road,water,vegetation' ; "
               "farslip segment S2.tif --bands sentinel2-rgb --classes 'building,roof;road;water,river;forest' "
               "-o out/mask.tif ; farslip segment B04.jp2 B03.jp2 B02.jp2 --classes 'building,road,water,forest'")
    p.add_argument("image", nargs="+",
                   help="GeoTIFF, PNG, JPEG or any GDAL raster; or several single-band files of one scene (e.g. "
                        "B04.jp2 B03.jp2 B02.jp2 = R,G,B), coarser ones resampled to the finest with a note")
    p.add_argument("--classes", required=True,
                   help="'a,b,c' (one name per class), 'a,a2;b;c' (';' separates classes, ',' synonyms) or a class-name "
                        "file (one class per line, synonyms comma-separated); a name given twice is an error")
    p.add_argument("-o", "--output", default=None,
                   help="mask path, .tif or .png (default: IMAGE_STEM.seg.tif beside the (first) image; .seg.png if "
                        "it is not georeferenced). The overlay is MASK_STEM.overlay.png, the probabilities "
                        "MASK_STEM.prob.tif")
    g = p.add_argument_group("model")
    g.add_argument("--model", default="farslip-vitb16",
                   help="the CLIP: farslip name, stock open_clip name, hf-hub:ORG/REPO, local-dir:PATH or a checkpoint "
                        "file (default farslip-vitb16)")
    g.add_argument("--pretrained", default=None,
                   help="its weights: tag (s1, s2, openai, ...) or checkpoint path; default: the model's released "
                        "stage-2 weights (s2), else its stage-1 weights (s1); 'random' (or 'none') = random "
                        "weights on purpose")
    g.add_argument("--preset", default="farslip",
                   help="segmentor settings: farslip (default; the FarSLIP protocol), segearth (SegEarth-OV's "
                        "λ=-0.3 and native-size windows) or a plugin's preset")
    g.add_argument("--templates", default=None,
                   help="prompt templates: openai (the 80 ImageNet prompts, default), farslip, skyscript")
    g.add_argument("--prob-thd", dest="prob_thd", type=float, default=None,
                   help="pixels whose top probability is below this get --bg-idx (default 0: off)")
    g.add_argument("--bg-idx", dest="bg_idx", type=int, default=None,
                   help="class index given to low-confidence pixels (default 0)")
    g.add_argument("--device", default="auto", help="where the model runs: auto (CUDA if available), cpu, cuda, cuda:1")
    g.add_argument("--precision", default="auto",
                   help="model precision: auto (fp16 on CUDA, fp32 on CPU), fp32, fp16, bf16, amp")
    g.add_argument("--window-batch-size", dest="window_batch_size", type=int, default=None,
                   help="most windows per forward pass (default 128; lower it to save memory)")
    r = p.add_argument_group("input bands and scaling")
    r.add_argument("--bands", default=None,
                   help="1-based R,G,B bands, e.g. 4,3,2 (Sentinel-2, Landsat 8/9) or 3,2,1 (Landsat 4-7), one band = "
                        "grey, or a preset: " + ", ".join(BAND_PRESETS))
    r.add_argument("--stretch", default="auto", choices=["auto", "percentile", "range", "none"],
                   help="scaling to 0..255: auto (uint8 as is, other types percentile), percentile, range (with "
                        "--value-range), none (values used as they are)")
    r.add_argument("--percentiles", default="2,98", help="LOW,HIGH percentiles of the stretch (default 2,98)")
    r.add_argument("--value-range", dest="value_range", default=None,
                   help="fixed LOW,HIGH for all bands instead of percentiles, e.g. 0,10000")
    t = p.add_argument_group("windows and tiles (pixels)")
    t.add_argument("--window", type=int, default=None,
                   help="sliding-window crop, resized to the model input (default 224; larger = coarser view)")
    t.add_argument("--stride", type=int, default=None, help="sliding-window stride (default window/2)")
    t.add_argument("--tile", type=int, default=1024, help="streamed tile size (default 1024; >= window)")
    t.add_argument("--halo", type=int, default=None,
                   help="context read around each tile (default window/2; >= window with tile and halo multiples of "
                        "the stride gives exactly the whole-image labels)")
    t.add_argument("--gdal-cache-mb", dest="gdal_cache_mb", type=int, default=64,
                   help="GDAL block cache cap in MB (default 64)")
    o = p.add_argument_group("outputs")
    o.add_argument("--probabilities", action="store_true", help="also write the top class probability (float32)")
    o.add_argument("--no-overlay", dest="no_overlay", action="store_true", help="skip the PNG overlay")
    o.add_argument("--overlay-size", dest="overlay_size", type=int, default=1024,
                   help="long side of the overlay in pixels (default 1024)")
    o.add_argument("--no-overviews", dest="no_overviews", action="store_true", help="skip the mask's overviews")
    o.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    o.add_argument("--no-progress", dest="no_progress", action="store_true", help="no progress output at all")
    o.add_argument("--progress", action="store_true",
                   help="a progress bar even when stderr is not a terminal (default: a bar on a terminal, periodic log "
                        "lines otherwise)")
    p.set_defaults(func=_run)
