"""Reading a split's VOC annotation files fast, with an on-disk cache that is never stale (torch-free).

Cold, the files are read and parsed together (:func:`~visiontasks.evaluation.voc.annotations.parse_annotations`).
With ``cache_dir``, what was parsed is kept in one ``.npz`` per ``Annotations/`` folder (numpy
arrays only: file names, sizes, mtimes, object names, boxes, flags and image sizes — loaded with
``allow_pickle=False``, so a planted cache cannot run code), written atomically.

An entry is used only when the file's (path, size, mtime_ns) equals the one recorded; any change to
a file — rewritten, touched, replaced — makes it parsed again. A file modified within the
filesystem's timestamp granularity of its recorded mtime could keep both size and mtime, so, as
git does for its index, files whose mtime is less than :data:`RACY_SECONDS` older than the moment
they were read are parsed but not cached.

Shape shorthand: F = files asked for, M = objects in the cache.
"""
from __future__ import annotations

import hashlib
import os
import time
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from visiontasks.errors import InputError
from visiontasks.evaluation.voc.annotations import ObjectRecords, parse_annotations
from visiontasks.io import atomic_write

__all__ = ["read_annotations", "cache_path", "default_cache_dir", "RACY_SECONDS"]

FORMAT = "visiontasks-voc-annotations/2"
#: Files changed this recently (relative to reading them) are not cached.
RACY_SECONDS = 2.0


def default_cache_dir() -> Path:
    """``$VISIONTASKS_HOME/annotation-cache`` or ``~/.cache/visiontasks/annotation-cache``."""
    home = os.environ.get("VISIONTASKS_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "visiontasks") / "annotation-cache"


def cache_path(cache_dir: str | os.PathLike[str], folder: str | os.PathLike[str]) -> Path:
    """The cache file of an ``Annotations/`` folder: named by a hash of its absolute path."""
    key = hashlib.sha256(str(Path(folder).resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return Path(cache_dir) / f"voc-annotations-{key}.npz"


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(path, "annotation file not found (listed in the split)") from None
    if not path.is_file():
        raise InputError(path, "is not a file, expected an annotation file")
    return st.st_size, st.st_mtime_ns


def _load(path: Path, folder: Path) -> dict[str, tuple[int, int, ObjectRecords]]:
    """The cached entries by file name; empty when the cache is absent, foreign or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != FORMAT or str(z["folder"]) != str(folder.resolve()):
                return {}
            files, size, mtime, count = z["files"].tolist(), z["size"], z["mtime"], z["count"]
            names, boxes, difficult = z["names"].tolist(), z["boxes"], z["difficult"]
            sizes = [None if h < 0 else (h, w) for h, w in zip(z["height"].tolist(), z["width"].tolist())]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return {}
    bounds = np.concatenate(([0], np.cumsum(count)))
    return {f: (int(s), int(m), ObjectRecords(names[lo:hi], boxes[lo:hi], difficult[lo:hi], hw))
            for f, s, m, lo, hi, hw in zip(files, size.tolist(), mtime.tolist(), bounds[:-1].tolist(),
                                           bounds[1:].tolist(), sizes)}


def _save(path: Path, folder: Path, entries: dict[str, tuple[int, int, ObjectRecords]]) -> None:
    files = sorted(entries)
    recs = [entries[f][2] for f in files]
    names = [n for r in recs for n in r.names]
    arrays = {
        "format": np.array(FORMAT), "folder": np.array(str(folder.resolve())),
        "files": np.array(files, dtype=str), "size": np.array([entries[f][0] for f in files], dtype=np.int64),
        "mtime": np.array([entries[f][1] for f in files], dtype=np.int64),
        "count": np.array([len(r.names) for r in recs], dtype=np.int64),
        "height": np.array([-1 if r.size is None else r.size[0] for r in recs], dtype=np.int64),
        "width": np.array([-1 if r.size is None else r.size[1] for r in recs], dtype=np.int64),
        "names": np.array(names, dtype=str) if names else np.zeros(0, dtype="U1"),
        "boxes": np.concatenate([r.boxes for r in recs]) if recs else np.zeros((0, 4), np.float32),
        "difficult": np.concatenate([r.difficult for r in recs]) if recs else np.zeros(0, bool),
    }
    try:
        with atomic_write(path) as f:
            np.savez(f, **arrays)
    except OSError:
        pass  # a cache that cannot be written only costs time


def read_annotations(folder: str | os.PathLike[str], names: Sequence[str],
                     cache_dir: str | os.PathLike[str] | None = None) -> list[ObjectRecords]:
    """The objects of ``folder/<name>`` for each of the F names, in order.

    Args:
        folder: the ``Annotations/`` folder.
        names: file names inside it.
        cache_dir: folder of the annotation cache (None: parse every file, write nothing).

    Raises:
        InputError: a missing or malformed file (named).
    """
    folder = Path(folder)
    paths = [folder / n for n in names]
    now = time.time_ns()
    keys = [_stat(p) for p in paths]
    cache = cache_path(cache_dir, folder) if cache_dir is not None else None
    entries = _load(cache, folder) if cache is not None and cache.is_file() else {}
    out: list[ObjectRecords | None] = []
    missing = []
    for k, (name, key) in enumerate(zip(names, keys)):
        hit = entries.get(name)
        out.append(hit[2] if hit is not None and hit[:2] == key else None)
        if out[-1] is None:
            missing.append(k)
    if not missing:
        return out  # type: ignore[return-value]
    datas = []
    for k in missing:
        with open(paths[k], "rb") as f:
            datas.append(f.read())
    for k, rec in zip(missing, parse_annotations([paths[k] for k in missing], datas)):
        out[k] = rec
    if cache is not None:
        settled = now - int(RACY_SECONDS * 1e9)
        fresh = {names[k]: (*keys[k], out[k]) for k in missing if keys[k][1] <= settled}
        if fresh:
            _save(cache, folder, {**entries, **fresh})
    return out  # type: ignore[return-value]
