"""download_voc on small local tars (file:// URLs): MD5 check, skip when present, safe extraction."""
from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from visiontasks.data import VOC_ARCHIVES, download_voc, md5sum
from visiontasks.errors import InputError

KEY = ("2007", "trainval")


def _tar(path, members: dict[str, bytes], symlink: str | None = None):
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo("VOCdevkit/VOC2007/link")
            info.type, info.linkname = tarfile.SYMTYPE, symlink
            tar.addfile(info)
    return path


@pytest.fixture
def archive(tmp_path, monkeypatch):
    src = _tar(tmp_path / "src.tar", {"VOCdevkit/VOC2007/ImageSets/Main/trainval.txt": b"000005\n",
                                      "VOCdevkit/VOC2007/Annotations/000005.xml": b"<annotation/>"})
    monkeypatch.setitem(VOC_ARCHIVES, KEY, {**VOC_ARCHIVES[KEY], "md5": hashlib.md5(src.read_bytes()).hexdigest()})
    return src


def test_official_table():
    assert VOC_ARCHIVES[("2007", "trainval")]["md5"] == "c52e279531787c972589f7e41ab4ae64"
    assert VOC_ARCHIVES[("2007", "test")]["md5"] == "b6e924de25625d8de591ea690078ad9f"
    assert VOC_ARCHIVES[("2012", "trainval")]["md5"] == "6cd6e144f989b92b3379bac3b3de84fd"
    for info in VOC_ARCHIVES.values():
        assert info["url"].endswith("/" + info["filename"])


def test_download_verify_extract_then_skip(tmp_path, archive):
    root = tmp_path / "data"
    out = download_voc(root, url=archive.as_uri())
    assert out == root / "VOCdevkit" / "VOC2007"
    assert (out / "ImageSets/Main/trainval.txt").read_text() == "000005\n"
    assert md5sum(root / VOC_ARCHIVES[KEY]["filename"]) == VOC_ARCHIVES[KEY]["md5"]
    missing = (tmp_path / "gone.tar").as_uri()
    assert download_voc(root, url=missing) == out  # extracted: nothing fetched
    next(out.glob(".extracted-*")).unlink()
    assert download_voc(root, url=missing) == out  # archive with the right MD5 present: not fetched again
    assert not list(root.glob("*.part"))


def test_md5_mismatch_names_file_expected_and_actual(tmp_path, archive, monkeypatch):
    monkeypatch.setitem(VOC_ARCHIVES, KEY, {**VOC_ARCHIVES[KEY], "md5": "0" * 32})
    with pytest.raises(InputError) as err:
        download_voc(tmp_path / "data", url=archive.as_uri())
    dest = tmp_path / "data" / VOC_ARCHIVES[KEY]["filename"]
    assert err.value.path == str(dest)
    assert "0" * 32 in str(err.value) and md5sum(archive) in str(err.value)
    assert not dest.exists() and not (tmp_path / "data" / "VOCdevkit").exists()


@pytest.mark.parametrize("members,symlink", [({"../evil.txt": b"x"}, None), ({"/tmp/abs_evil.txt": b"x"}, None),
                                             ({"VOCdevkit/VOC2007/a.txt": b"x"}, "../../../evil.txt")])
def test_unsafe_archives_are_refused(tmp_path, monkeypatch, members, symlink):
    src = _tar(tmp_path / "bad.tar", members, symlink)
    monkeypatch.setitem(VOC_ARCHIVES, KEY, {**VOC_ARCHIVES[KEY], "md5": md5sum(src)})
    root = tmp_path / "deep" / "data"
    with pytest.raises(InputError, match="unsafe"):
        download_voc(root, url=src.as_uri())
    assert not (tmp_path / "deep" / "evil.txt").exists() and not (root / "VOCdevkit").exists()


def test_unknown_archive():
    with pytest.raises(ValueError, match="2010"):
        download_voc("/nonexistent", year="2010")
