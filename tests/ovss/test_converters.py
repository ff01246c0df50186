"""Converters from fabricated official releases to the evaluated layout (docs/reference/ovss-evaluation.md §5, §6).

Expected crops and label values are written out by hand here (tile origins worked out on paper,
colour->index via the palettes of the spec), and every written label must be a single-channel 'L'
image whose values are the expected indices."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.helpers.ovss_fixtures import (
    ISAID_RGB,
    ISPRS_RGB,
    UAVID_RGB,
    blocky_image,
    colourise,
    random_label,
    write_rgb,
    zip_folder,
)


def _L(path):
    with Image.open(path) as im:
        assert im.mode == "L", f"{path} is {im.mode}"
        return np.asarray(im)


def _rgb(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_tile_origins_by_hand():
    from farslip_ext.ovss.converters import clip_starts, tile_starts

    assert clip_starts(6000, 512) == [0, 512, 1024, 1536, 2048, 2560, 3072, 3584, 4096, 4608, 5120, 5488]  # 12/side
    assert clip_starts(1024, 512) == [0, 512]
    assert clip_starts(40, 16) == [0, 16, 24]
    assert tile_starts(3840, 1280, 1280) == [0, 1280, 2560]  # UAVid 3840 wide -> 3 columns
    assert tile_starts(4096, 1280, 1280) == [0, 1280, 2560, 2816]
    assert tile_starts(1000, 896, 512) == [0, 104]  # iSAID: overlap 384
    assert tile_starts(30, 16, 10) == [0, 10, 14]


def test_potsdam_colour_labels_crops_and_split(tmp_path):
    from farslip_ext.ovss.converters import convert_dataset

    rng = np.random.default_rng(0)
    src = tmp_path / "Potsdam"
    idx = {}
    for tile in ("2_13", "2_10"):  # 2_13 is a val tile, 2_10 a train tile
        img = blocky_image(40, 50, rng)
        idx[tile] = random_label(40, 50, range(7), rng, block=4)
        write_rgb(src / "2_Ortho_RGB" / f"top_potsdam_{tile}_RGB.tif", img, "TIFF")
        write_rgb(src / "5_Labels_all_noBoundary" / f"top_potsdam_{tile}_label_noBoundary.tif",
                  colourise(idx[tile], ISPRS_RGB), "TIFF")
        idx[tile + "img"] = img
    rep = convert_dataset("potsdam", src, tmp_path / "data", clip_size=16, progress=False)
    out = tmp_path / "data" / "potsdam"
    # rows: clip_starts(40, 16) = 0, 16, 24; cols: clip_starts(50, 16) = 0, 16, 32, 34
    names = sorted(p.name for p in (out / "ann_dir" / "val").iterdir())
    expect = sorted(f"2_13_{x0}_{y0}_{min(x0 + 16, 50)}_{min(y0 + 16, 40)}.png"
                    for y0 in (0, 16, 24) for x0 in (0, 16, 32, 34))
    assert names == expect and rep.images == 12
    assert sorted(p.name for p in (out / "img_dir" / "val").iterdir()) == expect
    lab = _L(out / "ann_dir" / "val" / "2_13_34_24_50_40.png")
    assert np.array_equal(lab, idx["2_13"][24:40, 34:50])
    assert np.array_equal(_rgb(out / "img_dir" / "val" / "2_13_16_0_32_16.png"), idx["2_13img"][0:16, 16:32])


def test_vaihingen_needs_top_folder_and_eroded_labels(tmp_path):
    from farslip_ext.ovss.converters import convert_dataset

    rng = np.random.default_rng(1)
    src = tmp_path / "Vaihingen"
    lab = random_label(20, 24, range(7), rng, block=4)
    write_rgb(src / "top" / "top_mosaic_09cm_area2.tif", blocky_image(20, 24, rng), "TIFF")
    write_rgb(src / "top" / "top_mosaic_09cm_area1.tif", blocky_image(20, 24, rng), "TIFF")  # train area
    gt = src / "gt_eroded"
    write_rgb(gt / "top_mosaic_09cm_area2_noBoundary.tif", colourise(lab, ISPRS_RGB), "TIFF")
    write_rgb(gt / "top_mosaic_09cm_area1_noBoundary.tif", colourise(lab, ISPRS_RGB), "TIFF")
    convert_dataset("vaihingen", src, tmp_path / "data", clip_size=16, progress=False)
    names = sorted(p.name for p in (tmp_path / "data" / "vaihingen" / "ann_dir" / "val").iterdir())
    assert names == ["area2_0_0_16_16.png", "area2_0_4_16_20.png", "area2_8_0_24_16.png", "area2_8_4_24_20.png"]
    assert np.array_equal(_L(tmp_path / "data" / "vaihingen" / "ann_dir" / "val" / names[3]), lab[4:20, 8:24])


def test_isaid_palette_padding_and_names(tmp_path):
    from farslip_ext.ovss.converters import convert_dataset

    rng = np.random.default_rng(2)
    src = tmp_path / "iSAID" / "val"
    big = random_label(20, 30, range(16), rng, block=2)
    small = random_label(10, 12, range(16), rng, block=2)
    for pid, lab in (("P0003", big), ("P0017", small)):
        write_rgb(src / "images" / f"{pid}.png", blocky_image(*lab.shape, rng), "PNG")
        write_rgb(src / "Semantic_masks" / "images" / f"{pid}_instance_color_RGB.png", colourise(lab, ISAID_RGB), "PNG")
    write_rgb(tmp_path / "iSAID" / "train" / "images" / "P0999.png", blocky_image(20, 30, rng), "PNG")  # other split
    write_rgb(tmp_path / "iSAID" / "train" / "Semantic_masks" / "images" / "P0999_instance_color_RGB.png",
              colourise(big, ISAID_RGB), "PNG")
    convert_dataset("isaid", tmp_path / "iSAID", tmp_path / "data", patch=16, overlap=6, progress=False)
    ann = tmp_path / "data" / "iSAID" / "ann_dir" / "val"
    # P0003 (20x30): x origins 0, 10, 14; y origins 0, 4.  P0017 (10x12) is padded to 16x16: one tile.
    expect = sorted([f"P0003_{y}_{y + 16}_{x}_{x + 16}_instance_color_RGB.png" for x in (0, 10, 14) for y in (0, 4)]
                    + ["P0017_0_16_0_16_instance_color_RGB.png"])
    assert sorted(p.name for p in ann.iterdir()) == expect
    assert np.array_equal(_L(ann / "P0003_4_20_14_30_instance_color_RGB.png"), big[4:20, 14:30])
    padded = _L(ann / "P0017_0_16_0_16_instance_color_RGB.png")
    assert np.array_equal(padded[:10, :12], small) and (padded[10:] == 255).all() and (padded[:, 12:] == 255).all()
    img = _rgb(tmp_path / "data" / "iSAID" / "img_dir" / "val" / "P0017_0_16_0_16.png")
    assert (img[10:] == 0).all()


def test_uavid_moving_car_and_sequence_names(tmp_path):
    from farslip_ext.ovss.converters import convert_dataset

    rng = np.random.default_rng(3)
    lab8 = random_label(30, 50, range(8), rng, block=2)
    lab8[0, :8] = 7  # some moving car for sure
    src = tmp_path / "UAVid" / "test_gt" / "seq21"
    write_rgb(src / "Images" / "000100.png", blocky_image(30, 50, rng), "PNG")
    write_rgb(src / "Labels" / "000100.png", colourise(lab8, UAVID_RGB), "PNG")
    convert_dataset("uavid", tmp_path / "UAVid", tmp_path / "data", tile_h=16, tile_w=20, progress=False)
    ann = tmp_path / "data" / "UAVid" / "ann_dir" / "test"
    # x: tile_starts(50, 20, 20) = 0, 20, 30; y: tile_starts(30, 16, 16) = 0, 14
    expect = sorted(f"seq21_000100_{y}_{y + 16}_{x}_{x + 20}.png" for x in (0, 20, 30) for y in (0, 14))
    assert sorted(p.name for p in ann.iterdir()) == expect
    exp = np.where(lab8 == 7, 3, lab8)
    got = _L(ann / "seq21_000100_0_16_0_20.png")
    assert np.array_equal(got, exp[0:16, 0:20]) and (got[0, :8] == 3).all()


def test_loveda_zip_with_p_mode_masks(tmp_path):
    """'P' masks with a palette (what the SegEarth-OV issues are about) come out as 'L' with the same indices."""
    from farslip_ext.ovss.converters import convert_dataset

    rng = np.random.default_rng(4)
    stage = tmp_path / "stage"
    labs = {}
    for region, name in (("Rural", "2522.png"), ("Urban", "4191.png")):
        lab = random_label(16, 16, range(8), rng, block=2)
        labs[name] = lab
        write_rgb(stage / region / "images_png" / name, blocky_image(16, 16, rng), "PNG")
        p = Image.fromarray(lab, "L").convert("P")
        p.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 13) % 256)])
        (stage / region / "masks_png").mkdir(parents=True, exist_ok=True)
        p.save(stage / region / "masks_png" / name)
    (tmp_path / "release").mkdir()
    zip_folder(stage, tmp_path / "release" / "Val.zip", "Val")
    rep = convert_dataset("loveda", tmp_path / "release", tmp_path / "data", progress=False)
    assert rep.images == 2
    for name, lab in labs.items():
        assert np.array_equal(_L(tmp_path / "data" / "LoveDA" / "ann_dir" / "val" / name), lab)


def test_openearthmap_val_list_udd5_vdd(tmp_path):
    from farslip_ext.ovss.converters import convert_dataset

    rng = np.random.default_rng(5)
    oem = tmp_path / "OpenEarthMap_wo_xBD"
    labs = {}
    for name in ("aachen_1.tif", "aachen_2.tif"):
        labs[name] = random_label(12, 16, range(9), rng)
        write_rgb(oem / "aachen" / "images" / name, blocky_image(12, 16, rng), "TIFF")
        (oem / "aachen" / "labels").mkdir(parents=True, exist_ok=True)
        Image.fromarray(labs[name], "L").save(oem / "aachen" / "labels" / name)
    (oem / "val.txt").write_text("aachen_2.tif\n")
    convert_dataset("openearthmap", oem, tmp_path / "data", progress=False)
    ann = tmp_path / "data" / "OpenEarthMap" / "ann_dir" / "val"
    assert [p.name for p in ann.iterdir()] == ["aachen_2.tif"]
    assert np.array_equal(_L(ann / "aachen_2.tif"), labs["aachen_2.tif"])
    assert (tmp_path / "data" / "OpenEarthMap" / "img_dir" / "val" / "aachen_2.tif").read_bytes() == \
        (oem / "aachen" / "images" / "aachen_2.tif").read_bytes()

    for key, split, n in (("udd5", "val", 5), ("vdd", "test", 7)):
        rel = tmp_path / key.upper()
        lab = random_label(12, 16, range(n), rng)
        write_rgb(rel / split / "src" / "DJI_0001.jpg", blocky_image(12, 16, rng), "JPEG")  # lower-case suffix
        (rel / split / "gt").mkdir(parents=True)
        Image.fromarray(lab, "L").convert("P").save(rel / split / "gt" / "DJI_0001.png")
        convert_dataset(key, rel, tmp_path / "data", progress=False)
        root = tmp_path / "data" / key.upper()
        assert (root / split / "src" / "DJI_0001.JPG").is_file()  # the suffix the dataset lists
        assert np.array_equal(_L(root / split / "gt" / "DJI_0001.png"), lab)


def test_bad_sources_are_clear_errors(tmp_path):
    from farslip_ext.ovss.converters import LabelFormatError, LabelRangeError, convert_dataset, validate_layout

    rng = np.random.default_rng(6)
    rel = tmp_path / "VDD"
    write_rgb(rel / "test" / "src" / "a.JPG", blocky_image(8, 8, rng), "JPEG")
    (rel / "test" / "gt").mkdir(parents=True)
    bad = np.full((8, 8), 9, np.uint8)
    Image.fromarray(bad, "L").save(rel / "test" / "gt" / "a.png")
    with pytest.raises(LabelRangeError, match=r"a\.png holds values outside the dataset's label set \[0, 1, 2, 3, 4, 5, 6, 255\]: 9 \(64 px\)"):
        convert_dataset("vdd", rel, tmp_path / "data", progress=False)
    write_rgb(rel / "test" / "gt" / "a.png", np.dstack([bad * 10, bad, bad]), "PNG")
    with pytest.raises(LabelFormatError, match="is a RGB colour image"):
        convert_dataset("vdd", rel, tmp_path / "data", progress=False, overwrite=True)
    with pytest.raises(FileNotFoundError, match=r"LoveDA: no Val/<Rural\|Urban>/images_png folders found"):
        convert_dataset("loveda", rel, tmp_path / "data", progress=False)
    Image.fromarray(np.zeros((8, 8), np.uint8), "L").save(rel / "test" / "gt" / "a.png")
    convert_dataset("vdd", rel, tmp_path / "data", progress=False, overwrite=True)
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert_dataset("vdd", rel, tmp_path / "data", progress=False)
    # an evaluated label broken afterwards: RGB instead of 'L'
    out = tmp_path / "data" / "VDD" / "test" / "gt" / "a.png"
    write_rgb(out, np.zeros((8, 8, 3), np.uint8) + 3, "PNG")
    with pytest.raises(LabelFormatError, match=r"a\.png is a 'RGB' image; labels must be single-channel 'L'"):
        validate_layout("vdd", tmp_path / "data")


def test_cli_convert_and_check(tmp_path, capsys):
    from farslip_ext.cli import main

    rng = np.random.default_rng(7)
    rel = tmp_path / "UDD5"
    write_rgb(rel / "val" / "src" / "x.JPG", blocky_image(8, 8, rng), "JPEG")
    (rel / "val" / "gt").mkdir(parents=True)
    Image.fromarray(random_label(8, 8, range(5), rng), "L").save(rel / "val" / "gt" / "x.png")
    assert main(["ovss-convert", "udd5", str(rel), "--data-root", str(tmp_path / "data"), "--no-progress"]) == 0
    assert "udd5: 1 images, 1 labels" in capsys.readouterr().out
    assert main(["ovss-check", "--datasets", "udd5", "--data-root", str(tmp_path / "data"), "--no-progress"]) == 0
    assert '"labels_checked": 1' in capsys.readouterr().out
    assert main(["ovss-check", "--datasets", "vdd", "--data-root", str(tmp_path / "data"), "--no-progress"]) == 2
    assert "VDD: dataset folder not found" in capsys.readouterr().err


@pytest.mark.parametrize("member", ["../escape.txt", "/abs/escape.txt", "../releasex/escape.txt"])
def test_zip_members_outside_the_extraction_folder_are_refused(tmp_path, member):
    """Containment is checked on resolved paths: '..', absolute names and a sibling folder whose name
    starts with the extraction folder's name ("release" vs "releasex") are all refused, and nothing is written."""
    import zipfile

    from farslip_ext.errors import DataError
    from farslip_ext.ovss.converters import _source_roots

    z = tmp_path / "release.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("images/ok.png", b"x")
        zf.writestr(member, b"evil")
    with pytest.raises(DataError, match="refusing to extract"):
        with _source_roots(z):
            pass
    assert not any(p.name == "escape.txt" for p in tmp_path.rglob("*"))
