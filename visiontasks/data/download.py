"""Download, verify and safely extract the official PASCAL VOC archives.

URLs and MD5s are those of torchvision's ``datasets/voc.py``. Downloads go to a ``.part`` file
and are renamed only after the MD5 matches; extraction uses ``tarfile``'s ``"data"`` filter and
refuses absolute paths, ``..`` components and links.
"""
from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.request
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from visiontasks.errors import InputError

__all__ = ["VOC_ARCHIVES", "download_voc", "md5sum", "safe_extract"]

_HOST = "https://thor.robots.ox.ac.uk/pascal/VOC"
VOC_ARCHIVES: dict[tuple[str, str], dict[str, str]] = {
    ("2007", "trainval"): {
        "filename": "VOCtrainval_06-Nov-2007.tar",
        "url": f"{_HOST}/voc2007/VOCtrainval_06-Nov-2007.tar",
        "md5": "c52e279531787c972589f7e41ab4ae64",
        "base_dir": "VOCdevkit/VOC2007",
    },
    ("2007", "test"): {
        "filename": "VOCtest_06-Nov-2007.tar",
        "url": f"{_HOST}/voc2007/VOCtest_06-Nov-2007.tar",
        "md5": "b6e924de25625d8de591ea690078ad9f",
        "base_dir": "VOCdevkit/VOC2007",
    },
    ("2012", "trainval"): {
        "filename": "VOCtrainval_11-May-2012.tar",
        "url": f"{_HOST}/voc2012/VOCtrainval_11-May-2012.tar",
        "md5": "6cd6e144f989b92b3379bac3b3de84fd",
        "base_dir": "VOCdevkit/VOC2012",
    },
}


def md5sum(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, dest: Path) -> None:
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url) as response, open(part, "wb") as f:  # noqa: S310 (http/https/file)
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    f.write(block)
                    bar.update(len(block))
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def safe_extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Extracts a tar archive under ``dest``, refusing members that could escape it.

    Raises:
        InputError: the archive is unreadable or holds an absolute path, a ``..`` component,
            a link or a device file.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts or member.issym() or member.islnk() or member.isdev():
                    raise InputError(archive, f"refusing unsafe archive member {member.name!r}")
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                tar.extractall(dest, filter="data")
            else:  # every member was checked above
                tar.extractall(dest)  # noqa: S202
    except tarfile.TarError as exc:
        raise InputError(archive, f"cannot extract ({type(exc).__name__}: {exc})") from None


def download_voc(root: str | os.PathLike[str], year: str = "2007", image_set: str = "trainval",
                 url: str | None = None) -> Path:
    """Downloads (unless already there), verifies and extracts one official VOC archive.

    Args:
        root: folder receiving the archive and ``VOCdevkit/``.
        year: "2007" or "2012".
        image_set: "trainval", or "test" (2007 only).
        url: override of the archive URL (e.g. a mirror, or ``file://`` for a local copy).

    Returns:
        The VOC-layout folder, e.g. ``root/VOCdevkit/VOC2007``.

    Raises:
        ValueError: an unknown ``(year, image_set)``.
        InputError: the archive's MD5 differs from the official one (expected and actual named),
            or the archive is unsafe or unreadable.
    """
    key = (str(year), image_set)
    if key not in VOC_ARCHIVES:
        raise ValueError(f"no VOC archive for (year, image_set) = {key!r}; known: {sorted(VOC_ARCHIVES)}")
    info = VOC_ARCHIVES[key]
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    archive = root / info["filename"]
    target = root / info["base_dir"]
    marker = target / f".extracted-{info['filename']}"
    if marker.is_file():
        return target
    if not (archive.is_file() and md5sum(archive) == info["md5"]):
        _fetch(url or info["url"], archive)
        actual = md5sum(archive)
        if actual != info["md5"]:
            archive.unlink()
            raise InputError(archive, f"MD5 mismatch: expected {info['md5']}, got {actual} (file removed)")
    safe_extract(archive, root)
    if not target.is_dir():
        raise InputError(archive, f"archive did not contain {info['base_dir']}/")
    marker.write_text(info["md5"] + "\n", encoding="utf-8")
    return target
