"""``farslip segment`` / ``farslip_ext.geo``: streamed segmentation of real and large rasters (issue #7).

Real data: tests/fixtures/landsat/lsat7_2000_b1234_crop.tif, a 128x128 crop of Landsat 7 ETM+ bands 1-4 of the
GRASS GIS North Carolina sample data (CC BY-SA 3.0; float32, nodata -99999, ~14 % nodata collar), made by
tools/make_landsat_fixture.py. Expected values are computed independently: the percentile stretch with
numpy on the full array, the labels by calling FarSLIPSeg's own ``predict`` on the whole stretched image,
nodata from the raw values. The large raster (6000x6000x3 uint16, 216 MB uncompressed) is generated in
tmp_path and never committed; its peak memory is the ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` of a small
launcher process that runs the segmentation as its child.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from rasterio.transform import from_origin
from rasterio.windows import Window

from farslip_ext.cli import main as cli_main
from tests.helpers.ovss_fixtures import blocky_image, tiny_checkpoint

LANDSAT = Path(__file__).resolve().parents[1] / "fixtures" / "landsat" / "lsat7_2000_b1234_crop.tif"
CLASSES = "building,roof;road;water;forest,trees"
MEAN = np.array([122.771, 116.746, 104.094]).reshape(3, 1, 1)
STD = np.array([68.501, 66.632, 70.323]).reshape(3, 1, 1)
FAST = ["--window", "64", "--stride", "32", "--no-overviews"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("seg-ckpt") / "tiny.pt", seed=3)


def run_cli(capsys, *argv):
    """``farslip segment ...`` in-process: (exit code, parsed JSON summary or None, stderr)."""
    code = cli_main(["segment", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def landsat_raw(bands=(3, 2, 1)):
    with rasterio.open(LANDSAT) as src:
        return src.read(list(bands)), src.nodata


def expected_stretch(raw, nodata):
    valid = (raw != nodata).all(axis=0)
    lo = np.array([np.percentile(b[valid].astype(np.float64), 2) for b in raw])
    hi = np.array([np.percentile(b[valid].astype(np.float64), 98) for b in raw])
    return lo, hi, valid


def derived(tmp_path, name, dtype, scale=1.0, offset=0.0, nodata=0, hole=None):
    """A copy of the Landsat fixture with values ``raw*scale+offset`` in ``dtype`` (same CRS/transform),
    optionally with a rectangle ``hole=(r0, r1, c0, c1)`` set to nodata."""
    with rasterio.open(LANDSAT) as src:
        raw, prof = src.read(), src.profile
    bad = raw == prof["nodata"]
    data = raw.astype(np.float64) * scale + offset
    data[bad] = nodata
    if hole is not None:
        data[:, hole[0]:hole[1], hole[2]:hole[3]] = nodata
    prof.update(dtype=dtype, nodata=nodata, predictor=1)
    path = tmp_path / name
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data.astype(dtype))
    return path


# --------------------------------------------------------------------------------------------- real scene
def test_landsat_georeferencing_nodata_and_whole_image_equivalence(ckpt, tmp_path, capsys):
    out = tmp_path / "out" / "mask.tif"
    code, res, err = run_cli(capsys, LANDSAT, "--classes", CLASSES, "--bands", "3,2,1", "--model", ckpt,
                             "--window", "64", "--stride", "32", "--tile", "256", "--device", "cpu",
                             "--probabilities", "--progress", "-o", out)
    assert code == 0, err
    assert "tile" in err  # the tqdm progress bar
    with rasterio.open(LANDSAT) as src, rasterio.open(out) as m:
        assert m.crs == src.crs and m.crs is not None
        assert m.transform == src.transform
        assert (m.width, m.height) == (src.width, src.height) == (128, 128)
        assert m.count == 1 and m.dtypes[0] == "uint8" and m.nodata == 255
        assert m.profile["tiled"] and m.compression.name == "deflate"
        assert json.loads(m.tags()["FARSLIP_CLASSES"]) == [["building", "roof"], ["road"], ["water"], ["forest", "trees"]]
        assert m.colormap(1)[255][3] == 0  # nodata transparent in the colour table
        mask, crs, transform = m.read(1), m.crs, m.transform
    assert res["georeferenced"] is True and res["width"] == 128 and res["bands"] == [3, 2, 1]
    assert res["transform"] == [28.5, 0.0, 630876.0, 0.0, -28.5, 228000.0]

    # nodata: exactly the pixels where one of the selected bands is -99999
    raw, nodata = landsat_raw()
    lo, hi, valid = expected_stretch(raw, nodata)
    assert 0.1 < (~valid).mean() < 0.2
    assert np.array_equal(mask == 255, ~valid)
    assert res["nodata_pixels"] == int((~valid).sum())
    assert set(np.unique(mask[valid])) <= {0, 1, 2, 3}
    counts = np.bincount(mask[valid], minlength=4)
    assert list(res["pixel_counts"].values()) == counts.tolist()

    # the stretch: 2/98 % percentiles of the valid pixels (the raster is smaller than the sample: all of it)
    assert res["stretch"]["method"] == "percentile"
    np.testing.assert_allclose(res["stretch"]["low"], lo, rtol=1e-6)
    np.testing.assert_allclose(res["stretch"]["high"], hi, rtol=1e-6)

    # one tile = the whole image: labels == FarSLIPSeg.predict on the stretched, normalised, nodata-filled image
    from farslip_ext.segmentation import FarSLIPSeg

    seg = FarSLIPSeg(clip=str(ckpt), class_names=["building,roof", "road", "water", "forest,trees"],
                     slide_crop=64, slide_stride=32, device="cpu")
    x = np.clip((raw.astype(np.float64) - lo[:, None, None]) / (hi - lo)[:, None, None] * 255.0, 0, 255)
    x = (x - MEAN) / STD
    x[:, ~valid] = 0.0
    ds = seg.predict(torch.from_numpy(x).float()[None])[0]
    want = ds.pred_sem_seg.data[0].numpy()
    agree = (want == mask)[valid].mean()
    assert agree > 0.999, agree  # float32 vs float64 stretch may flip a near-tie pixel (measured: 1.0)
    with rasterio.open(out.with_name("mask.prob.tif")) as p:
        prob = p.read(1)
        assert p.crs == crs and p.transform == transform and p.dtypes[0] == "float32"
    assert np.isnan(prob[~valid]).all()
    np.testing.assert_allclose(prob[valid], ds.seg_logits.data.amax(0).numpy()[valid], atol=1e-4)
    assert prob[valid].min() >= 1.0 / 6 - 1e-6  # the top of 6 names' softmax (max-merged per class)


def test_tiles_with_halo_reproduce_the_whole_image_run(ckpt, tmp_path, capsys):
    """Tiles of 32 px with a halo of one window (32), all on the stride grid (16), see exactly the windows
    of a whole-image run, so the labels are identical although the image is cut into 16 tiles."""
    common = [LANDSAT, "--classes", CLASSES, "--bands", "3,2,1", "--model", ckpt, "--device", "cpu", "--window",
              "32", "--stride", "16", "--probabilities", "--no-overlay"]
    code, whole, err = run_cli(capsys, *common, "--tile", "128", "-o", tmp_path / "whole.tif")
    assert code == 0, err
    code, tiled, err = run_cli(capsys, *common, "--tile", "32", "--halo", "32", "-o", tmp_path / "tiled.tif")
    assert code == 0, err
    assert whole["tiles"] == 1 and tiled["tiles"] == 16
    with rasterio.open(tmp_path / "whole.tif") as a, rasterio.open(tmp_path / "tiled.tif") as b:
        assert np.array_equal(a.read(1), b.read(1))
    with rasterio.open(tmp_path / "whole.prob.tif") as a, rasterio.open(tmp_path / "tiled.prob.tif") as b:
        np.testing.assert_allclose(a.read(1), b.read(1), atol=1e-6, equal_nan=True)
    # the control: without the halo the windows at tile borders lack context and the labels change there
    code, _, err = run_cli(capsys, *common, "--tile", "32", "--halo", "0", "-o", tmp_path / "nohalo.tif")
    assert code == 0, err
    with rasterio.open(tmp_path / "whole.tif") as a, rasterio.open(tmp_path / "nohalo.tif") as b:
        assert (a.read(1) != b.read(1)).mean() > 0.01


def test_band_selection_and_16bit_scaling(ckpt, tmp_path, capsys):
    """A uint16 version (raw*100+1000, nodata 0, plus a 64x64 nodata hole) gives the labels of the float
    version with the same hole: the percentile stretch is invariant to the linear rescale. All-nodata
    tiles are skipped and stay nodata."""
    hole = (32, 96, 32, 96)
    f32 = derived(tmp_path, "f32.tif", "float32", nodata=-99999.0, hole=hole)
    u16 = derived(tmp_path, "u16.tif", "uint16", scale=100.0, offset=1000.0, nodata=0, hole=hole)
    common = ["--classes", CLASSES, "--bands", "3,2,1", "--model", ckpt, "--device", "cpu", "--window", "32",
              "--stride", "16", "--tile", "32", "--no-overviews", "--no-overlay"]
    code, rf, err = run_cli(capsys, f32, *common, "-o", tmp_path / "f32_mask.tif")
    assert code == 0, err
    code, ru, err = run_cli(capsys, u16, *common, "-o", tmp_path / "u16_mask.tif")
    assert code == 0, err
    np.testing.assert_allclose(ru["stretch"]["low"], np.array(rf["stretch"]["low"]) * 100 + 1000, rtol=1e-9)
    np.testing.assert_allclose(ru["stretch"]["high"], np.array(rf["stretch"]["high"]) * 100 + 1000, rtol=1e-9)
    with rasterio.open(tmp_path / "f32_mask.tif") as a, rasterio.open(tmp_path / "u16_mask.tif") as b:
        ma, mb = a.read(1), b.read(1)
        assert b.crs == a.crs and b.transform == a.transform
    assert np.array_equal(ma == 255, mb == 255)
    assert (ma[32:96, 32:96] == 255).all()
    assert (ma == mb).mean() > 0.999
    assert rf["tiles_skipped_nodata"] == ru["tiles_skipped_nodata"] == 4  # the cores inside the hole

    # band order matters: 1,2,3 feeds blue as red (a different stretch order and different labels)
    code, r123, err = run_cli(capsys, u16, *common[:2], "--bands", "1,2,3", *common[4:], "-o", tmp_path / "u123.tif")
    assert code == 0, err
    assert r123["bands"] == [1, 2, 3] and r123["stretch"]["low"] == ru["stretch"]["low"][::-1]

    # fixed range == no stretch for data already in 0..255 (the float fixture's values are 14..255)
    code, rr, err = run_cli(capsys, LANDSAT, *common[:6], "--value-range", "0,255", *common[6:], "-o", tmp_path / "r.tif")
    assert code == 0, err
    code, rn, err = run_cli(capsys, LANDSAT, *common[:6], "--stretch", "none", *common[6:], "-o", tmp_path / "n.tif")
    assert code == 0, err
    assert rr["stretch"]["method"] == "range" and rn["stretch"]["method"] == "none"
    with rasterio.open(tmp_path / "r.tif") as a, rasterio.open(tmp_path / "n.tif") as b:
        assert np.array_equal(a.read(1), b.read(1))


def test_overlay_png_has_the_map_and_a_legend(ckpt, tmp_path, capsys):
    from farslip_ext.geo.overlay import class_colors

    out = tmp_path / "m.tif"
    code, res, err = run_cli(capsys, LANDSAT, "--classes", CLASSES, "--bands", "3,2,1", "--model", ckpt,
                             "--device", "cpu", *FAST, "--tile", "128", "--overlay-size", "256", "-o", out)
    assert code == 0, err
    assert res["overlay"] == str(tmp_path / "m.overlay.png")
    img = Image.open(res["overlay"])
    img.verify()
    img = np.asarray(Image.open(res["overlay"]).convert("RGB"))
    assert img.shape[0] == 256 and img.shape[1] > 256 + 100  # 128 px scene enlarged 2x, then the legend
    legend = img[:, 256:].reshape(-1, 3)
    for c in class_colors(4):  # every class swatch is drawn in the legend
        assert (legend == c).all(axis=1).sum() > 50, c
    with rasterio.open(out) as m:
        mask = m.read(1)
    nod = np.repeat(np.repeat(mask == 255, 2, 0), 2, 1)
    assert (img[:256, :256][nod] == 0).all()  # nodata drawn black
    assert img[:256, :256][~nod].mean() > 20


def test_plain_png_without_georeferencing(ckpt, tmp_path, capsys):
    rgb = blocky_image(70, 90, np.random.default_rng(1))
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    code, res, err = run_cli(capsys, path, "--classes", "building,road,water", "--model", ckpt, "--device", "cpu",
                             *FAST, "--tile", "64")
    assert code == 0, err
    assert res["georeferenced"] is False and res["crs"] is None and res["stretch"]["method"] == "none"
    assert res["mask"] == str(tmp_path / "photo.seg.png") and "no georeferencing" in err
    mask = np.asarray(Image.open(res["mask"]))
    assert mask.shape == (70, 90) and set(np.unique(mask)) <= {0, 1, 2}
    assert not (tmp_path / "photo.seg.png.aux.xml").exists()
    assert sum(res["pixel_counts"].values()) == 70 * 90


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("case", ["missing", "unreadable", "unknown_band", "no_rgb_bands", "empty_classes",
                                  "stray_comma", "one_class", "window_gt_tile", "output_exists"])
def test_clear_errors_before_any_model_loads(case, tmp_path, capsys, hf_cache):
    """Each usage error names the value and the fix; the default model (released weights, absent here)
    is never reached, so these come first."""
    img, extra, want = LANDSAT, ["--bands", "3,2,1", "--classes", "building,water"], []
    if case == "missing":
        img, want = tmp_path / "nope.tif", ["nope.tif", "does not exist"]
    elif case == "unreadable":
        img = tmp_path / "scene.tif"
        img.write_bytes(b"this is not a GeoTIFF\n" * 10)
        want = ["scene.tif", "cannot read", "as a raster"]
    elif case == "unknown_band":
        extra = ["--bands", "3,2,9", "--classes", "building,water"]
        want = ["band 9 does not exist", "4 bands", "1..4", "ETM+ band 3 (red)"]
    elif case == "no_rgb_bands":
        extra = ["--classes", "building,water"]
        want = ["4 bands", "--bands", "3,2,1"]
    elif case == "empty_classes":
        extra = ["--bands", "3,2,1", "--classes", " "]
        want = ["empty class list", "--classes 'building,road,water'"]
    elif case == "stray_comma":
        extra = ["--bands", "3,2,1", "--classes", "building,,water"]
        want = ["class 2 is empty", "'building,,water'"]
    elif case == "one_class":
        extra = ["--bands", "3,2,1", "--classes", "water"]
        want = ["only one class", "background"]
    elif case == "window_gt_tile":
        extra += ["--window", "128", "--tile", "64"]
        want = ["--window 128 is larger than --tile 64", "--tile 128"]
    elif case == "output_exists":
        (tmp_path / "m.tif").write_bytes(b"x")
        extra += ["-o", tmp_path / "m.tif"]
        want = ["m.tif already exists", "--overwrite"]
    code, _, err = run_cli(capsys, img, *extra)
    assert code == 2
    assert err.startswith("farslip segment: error: ")
    for w in want:
        assert w in err, (w, err)
    assert "ZhenShiL" not in err


def test_missing_released_weights_say_how_to_get_them(tmp_path, capsys, hf_cache):
    out = tmp_path / "out" / "m.tif"
    code, _, err = run_cli(capsys, LANDSAT, "--bands", "3,2,1", "--classes", "building,water", "-o", out)
    assert code == 2
    assert "hf download ZhenShiL/FarSLIP FarSLIP2_ViT-B-16.pt" in err and "HF_HUB_CACHE" in err
    assert not out.parent.exists()  # nothing half-written


def test_class_list_forms(tmp_path):
    from farslip_ext.geo import parse_classes

    assert parse_classes("building, road ,water").classes == (("building",), ("road",), ("water",))
    assert parse_classes("building,roof;road;").classes == (("building", "roof"), ("road",))
    f = tmp_path / "cls.txt"
    f.write_text("building,roof\nroad\n", encoding="utf-8")
    assert parse_classes(str(f)).classes == (("building", "roof"), ("road",))
    assert parse_classes("catalogue:cls_loveda.txt").num_classes == 7
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        parse_classes(str(tmp_path / "missing.txt"))


def test_tiles_partition_the_raster():
    from farslip_ext.geo import iter_tiles

    cover = np.zeros((70, 130), dtype=int)
    for t in iter_tiles(130, 70, 32, 8):
        r, c, h, w = t.core
        cover[r:r + h, c:c + w] += 1
        rr, cc, hh, ww = t.read
        assert rr == max(0, r - 8) and cc == max(0, c - 8) and rr + hh == min(70, r + h + 8)
    assert (cover == 1).all()


# ----------------------------------------------------------------------------------------------- memory
def _write_big(path: Path, n: int, block: int = 512) -> int:
    """An ``n``×``n``×3 uint16 tiled GeoTIFF written block row by block row (smooth patterns + a nodata
    corner); returns its uncompressed size in bytes."""
    prof = dict(driver="GTiff", width=n, height=n, count=3, dtype="uint16", nodata=0, crs="EPSG:32633",
                transform=from_origin(500000, 5000000, 10, 10), tiled=True, blockxsize=256, blockysize=256)
    x = np.arange(n, dtype=np.float32)[None, :]
    with rasterio.open(path, "w", **prof) as dst:
        for r in range(0, n, block):
            h = min(block, n - r)
            y = np.arange(r, r + h, dtype=np.float32)[:, None]
            base = (np.sin(x / 97.0) * np.cos(y / 131.0) + 1.0) * 9000.0 + 500.0
            data = np.stack([base, (x * 7 + y * 3) % 20000 + 300, np.broadcast_to(y * 2 + 400, base.shape)])
            data[:, : max(0, min(h, n // 5 - r)), : n // 10] = 0  # nodata corner: rows < n/5, cols < n/10
            dst.write(data.astype(np.uint16), window=Window(0, r, n, h))
    return n * n * 3 * 2


_CHILD = textwrap.dedent("""
    import json, os, resource, sys
    import numpy as np
    from farslip_ext.geo import segment_raster

    class Stub:  # a cheap TilePredictor: the model's memory depends on the tile size only, not the raster
        window = 64
        num_classes = 3
        def predict(self, rgb, valid):
            return (rgb[0] > 128).astype(np.uint8) + (rgb[1] > 128), rgb[2] / 255.0

    small, big, out = sys.argv[1:4]
    kw = dict(predictor=Stub(), tile=1024, probabilities=True, progress=False, gdal_cache_mb=32)
    segment_raster(small, "building,road,water", out + "/small_mask.tif", **kw)   # warm-up: full-size tiles
    warm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = segment_raster(big, "building,road,water", out + "/big_mask.tif", **kw)
    print(json.dumps(dict(warm_kb=warm, result=res.as_dict())), flush=True)
    os._exit(0)  # skip interpreter teardown: torch's atexit work adds ~100 MB of RSS unrelated to the raster
""")

_CONTROL = textwrap.dedent("""
    import os, resource, sys, rasterio
    with rasterio.open(sys.argv[1]) as src:
        warm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        data = src.read()
    print(warm, data.nbytes, flush=True)
    os._exit(0)
""")


_LAUNCHER = textwrap.dedent("""
    import json, resource, subprocess, sys
    p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    sys.stdout.write(p.stdout)
    sys.stderr.write(p.stderr)
    print(json.dumps(dict(rc=p.returncode, maxrss_kb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)))
""")


def _run_measured(args):
    """Run ``python *args`` under a small launcher process and return (its stdout, its peak RSS in KiB) from
    the launcher's ``getrusage(RUSAGE_CHILDREN).ru_maxrss``. The launcher matters: Linux carries the RSS
    high-water mark of the process that forks over ``exec``, so a child forked straight from this (large)
    pytest process would report pytest's RSS as its own peak."""
    p = subprocess.run([sys.executable, "-c", _LAUNCHER, sys.executable, *args], capture_output=True, text=True,
                       timeout=300)
    lines = p.stdout.strip().splitlines()
    rep = json.loads(lines[-1])
    assert p.returncode == 0 and rep["rc"] == 0, p.stderr[-3000:]
    return "\n".join(lines[:-1]), rep["maxrss_kb"]


def test_large_raster_streams_in_bounded_memory(tmp_path):
    big, small = tmp_path / "big.tif", tmp_path / "small.tif"
    raster_bytes = _write_big(big, 6000)
    _write_big(small, 1200)
    assert raster_bytes == 216_000_000
    out, peak_kb = _run_measured(["-c", _CHILD, str(small), str(big), str(tmp_path)])
    rep = json.loads(out.strip().splitlines()[-1])
    growth = (peak_kb - rep["warm_kb"]) * 1024
    res = rep["result"]
    # the control: reading the same raster in one call grows the peak by its full size
    cout, cpeak_kb = _run_measured(["-c", _CONTROL, str(big)])
    cwarm_kb, nbytes = (int(v) for v in cout.split())
    control_growth = (cpeak_kb - cwarm_kb) * 1024
    print(f"\nlarge raster {raster_bytes / 1e6:.0f} MB: peak RSS {peak_kb / 1024:.0f} MiB, after warm-up "
          f"{rep['warm_kb'] / 1024:.0f} MiB, growth {growth / 2**20:.1f} MiB; one-call read grows "
          f"{control_growth / 2**20:.0f} MiB; seconds {res['seconds']}")
    assert nbytes == raster_bytes and control_growth > 0.9 * raster_bytes  # the measurement sees a full read
    assert growth < 0.25 * raster_bytes, growth  # streaming: the raster never is in memory

    with rasterio.open(big) as src, rasterio.open(res["mask"]) as m, rasterio.open(res["probability"]) as p:
        assert m.crs == src.crs == p.crs and m.transform == src.transform == p.transform
        assert (m.width, m.height) == (6000, 6000) and m.overviews(1)
        w = Window(0, 0, 600, 1200)
        assert (m.read(1, window=w) == 255).all() and np.isnan(p.read(1, window=w)).all()
        strip = m.read(1, window=Window(0, 2000, 6000, 64))
        raw = src.read([1, 2], window=Window(0, 2000, 6000, 64)).astype(np.float64)
    lo, hi = np.array(res["stretch"]["low"][:2]), np.array(res["stretch"]["high"][:2])
    x = np.clip((raw - lo[:, None, None]) / (hi - lo)[:, None, None] * 255.0, 0, 255)
    want = (x[0] > 128).astype(np.uint8) + (x[1] > 128)
    assert (strip == want).mean() > 0.999  # the streamed mask is the stub's answer on the scaled input
    assert res["nodata_pixels"] == 600 * 1200 and res["tiles"] == 36
    assert sum(res["pixel_counts"].values()) == 6000 * 6000 - 600 * 1200


# ------------------------------------------------------------------------------ stacks and presets
def _single_bands(tmp_path, half_res_band=None):
    """Bands 3, 2, 1 of the Landsat fixture as single-band GeoTIFFs; ``half_res_band`` is written at half the
    resolution (2x2 averages, same extent)."""
    from rasterio.enums import Resampling
    from rasterio.transform import Affine

    paths = {}
    with rasterio.open(LANDSAT) as src:
        prof = dict(src.profile, count=1)
        for b in (3, 2, 1):
            p = tmp_path / f"B{b}.tif"
            if b == half_res_band:
                data = src.read(b, out_shape=(64, 64), resampling=Resampling.average)[None]
                meta = dict(prof, width=64, height=64, transform=src.transform @ Affine.scale(2))
            else:
                data, meta = src.read([b]), prof
            with rasterio.open(p, "w", **meta) as dst:
                dst.write(data)
            paths[b] = p
    return [paths[3], paths[2], paths[1]]


def test_single_band_files_are_stacked_like_one_raster(ckpt, tmp_path, capsys):
    common = ["--classes", CLASSES, "--model", ckpt, "--device", "cpu", *FAST, "--tile", "128", "--no-overlay"]
    code, ref, err = run_cli(capsys, LANDSAT, "--bands", "3,2,1", *common, "-o", tmp_path / "ref.tif")
    assert code == 0, err
    files = _single_bands(tmp_path)
    code, res, err = run_cli(capsys, *files, *common, "-o", tmp_path / "stack.tif")
    assert code == 0, err
    assert res["inputs"] == [str(f) for f in files] and res["bands"] == [1, 2, 3] and res["resampled"] == {}
    assert res["stretch"] == ref["stretch"] and res["pixel_counts"] == ref["pixel_counts"]
    with rasterio.open(tmp_path / "ref.tif") as a, rasterio.open(tmp_path / "stack.tif") as b:
        assert np.array_equal(a.read(1), b.read(1)) and b.crs == a.crs and b.transform == a.transform


def test_a_coarser_band_is_resampled_to_the_finest_with_a_note(ckpt, tmp_path, capsys):
    """B1 at half resolution: the stack is on the 128x128 grid, and its labels are those of a 3-band file whose
    B1 was upsampled independently (rasterio's bilinear read)."""
    from rasterio.enums import Resampling

    files = _single_bands(tmp_path, half_res_band=1)
    with rasterio.open(files[0]) as r, rasterio.open(files[1]) as g, rasterio.open(files[2]) as b:
        up = b.read(1, out_shape=(128, 128), resampling=Resampling.bilinear)
        prof = dict(r.profile, count=3)
        manual = tmp_path / "manual.tif"
        with rasterio.open(manual, "w", **prof) as dst:
            dst.write(np.stack([r.read(1), g.read(1), up]))
    common = ["--classes", CLASSES, "--model", ckpt, "--device", "cpu", *FAST, "--tile", "128", "--no-overlay"]
    code, res, err = run_cli(capsys, *files, *common, "-o", tmp_path / "stack.tif")
    assert code == 0, err
    assert "B1.tif (64x64) is resampled (bilinear) to the finest input grid" in err
    assert res["resampled"] == {str(files[2]): [64, 64]} and (res["width"], res["height"]) == (128, 128)
    code, ref, err = run_cli(capsys, manual, "--bands", "1,2,3", *common, "-o", tmp_path / "manual_mask.tif")
    assert code == 0, err
    with rasterio.open(tmp_path / "manual_mask.tif") as a, rasterio.open(tmp_path / "stack.tif") as b:
        assert np.array_equal(a.read(1), b.read(1))


def test_stack_errors_and_band_presets(ckpt, tmp_path, capsys, hf_cache):
    files = _single_bands(tmp_path)
    with rasterio.open(LANDSAT) as src:  # another extent: shifted by 10 pixels
        prof = dict(src.profile, count=1, transform=src.transform @ rasterio.Affine.translation(10, 0))
        with rasterio.open(tmp_path / "shifted.tif", "w", **prof) as dst:
            dst.write(src.read([1]))
    code, _, err = run_cli(capsys, files[0], files[1], tmp_path / "shifted.tif", "--classes", "a,b")
    assert code == 2 and "must cover the same extent" in err and "shifted.tif" in err
    code, _, err = run_cli(capsys, files[0], LANDSAT, "--classes", "a,b")
    assert code == 2 and "has 4 bands; pass single-band files" in err
    code, _, err = run_cli(capsys, LANDSAT, "--bands", "landsat7-rbg", "--classes", "a,b")
    assert code == 2 and "did you mean 'landsat7-rgb'" in err and "sentinel2-rgb" in err
    code, res, err = run_cli(capsys, LANDSAT, "--bands", "landsat7-rgb", "--classes", CLASSES, "--model", ckpt,
                             "--device", "cpu", *FAST, "--tile", "128", "--no-overlay", "-o", tmp_path / "p.tif")
    assert code == 0, err
    assert res["bands"] == [3, 2, 1]


def test_duplicate_class_names_are_an_error_everywhere(tmp_path, capsys):
    from farslip_ext.geo import ClassListError, parse_classes, segment_raster

    code, _, err = run_cli(capsys, LANDSAT, "--bands", "3,2,1", "--classes", "water,road,Water")
    assert code == 2 and "the name 'Water' is given for class 0 (water) and again for class 2" in err
    f = tmp_path / "cls.txt"
    f.write_text("water\nroad\nwater\n", encoding="utf-8")
    code, _, err = run_cli(capsys, LANDSAT, "--bands", "3,2,1", "--classes", f)
    assert code == 2 and "'water' (lines 1 and 3) appear more than once" in err
    with pytest.raises(ClassListError, match="given for class 0 .* and again for class 1"):
        segment_raster(LANDSAT, ["water,lake", "lake"], tmp_path / "m.tif", bands="3,2,1")
    names = parse_classes("building,roof;road;water")  # distinct classes = distinct summary/legend entries
    assert names.labels == ["building (roof)", "road", "water"]


def test_python_api_takes_the_cli_class_string(ckpt):
    from farslip_ext.geo import build_predictor

    pred = build_predictor("water;forest,trees;road", str(ckpt), device="cpu", window=32,
                           templates=["a photo of {c}."], text_cache=False)
    assert pred.num_classes == 3 and pred.window == 32
    labels, top = pred.predict(np.full((3, 40, 40), 100.0, dtype=np.float32), np.ones((40, 40), dtype=bool))
    assert labels.shape == (40, 40) and labels.max() < 3 and top.min() >= 1.0 / 4 - 1e-6


def test_farslip_segment_imports_no_mmseg_or_mmcv(ckpt, tmp_path):
    rgb = blocky_image(40, 50, np.random.default_rng(2))
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    code = textwrap.dedent(f"""
        import json, sys
        from farslip_ext.cli import main
        rc = main(['segment', {str(tmp_path / 'photo.png')!r}, '--classes', 'building,road,water', '--model',
                   {str(ckpt)!r}, '--device', 'cpu', '--window', '32', '--no-overviews', '--no-progress'])
        print(json.dumps(dict(rc=rc, mm=sorted(m for m in sys.modules if m.split('.')[0] in ('mmseg', 'mmcv')))),
              file=sys.stderr)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env=dict(__import__("os").environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
    rep = json.loads(out.stderr.strip().splitlines()[-1])
    assert rep == {"rc": 0, "mm": []}, out.stderr[-2000:]
    assert json.loads(out.stdout)["mask"] == str(tmp_path / "photo.seg.png")
