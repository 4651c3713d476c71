"""Ground truth of a VOC-layout split for scoring results files: split file + Annotations/ only.

Scoring needs no images, so nothing here opens ``JPEGImages/`` (the datasets do, to train and to
run models). Torch-free: ``tools/eval.py det`` on results files imports only numpy and this.

Shape shorthand: N = images of the split, G_i = objects of image i.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from visiontasks.errors import InputError
from visiontasks.evaluation.voc.cache import read_annotations
from visiontasks.evaluation.report import warn
from visiontasks.tasks import VOC_CLASSES

__all__ = ["VOCGroundTruth", "split_ids", "load_detection_ground_truth", "resolve_classes", "DEFAULT_CLASSES"]

#: The 20 PASCAL VOC object classes (one definition, in the torch-free ``visiontasks.tasks``).
DEFAULT_CLASSES: tuple[str, ...] = VOC_CLASSES


@dataclass
class VOCGroundTruth:
    """Per-image ground truth of a split.

    Attributes:
        ids: N image ids in split-file order.
        classes: C class names; label ``c`` is ``classes[c - 1]``.
        boxes: N arrays (G_i, 4) float64 ``xyxy`` 0-based.
        labels: N arrays (G_i,) int64 in ``1..C``.
        difficult: N arrays (G_i,) bool.
    """

    ids: list[str]
    classes: tuple[str, ...]
    boxes: list[np.ndarray]
    labels: list[np.ndarray]
    difficult: list[np.ndarray]

    def objects_per_class(self) -> np.ndarray:
        """(C,) int64: non-difficult objects of each class."""
        labels = np.concatenate(self.labels) if self.labels else np.zeros(0, np.int64)
        keep = ~np.concatenate(self.difficult) if self.difficult else np.zeros(0, bool)
        return np.bincount(labels[keep], minlength=len(self.classes) + 1)[1:]


def split_ids(root: str | os.PathLike[str], split: str, sets_dir: str = "Main") -> list[str]:
    """Image ids listed in ``root/ImageSets/<sets_dir>/<split>.txt`` (first field of each line).

    Raises:
        InputError: the root or the split file is missing or not UTF-8 text.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "dataset folder not found")
    path = root / "ImageSets" / sets_dir / f"{split}.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, f"split file for split {split!r} not found") from None
    except UnicodeDecodeError:
        raise InputError(path, "split file is not UTF-8 text") from None
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def resolve_classes(classes: Sequence[str] | str | None, found: Sequence[str] = ()) -> tuple[str, ...]:
    """The class list: given names, ``"auto"`` (sorted union of ``found``) or None (VOC's 20).

    Raises:
        ValueError: an empty list or a repeated name.
    """
    if classes is None:
        return DEFAULT_CLASSES
    if isinstance(classes, str):
        if classes != "auto":
            raise ValueError(f"classes must be a list of names or 'auto', got {classes!r}")
        names = tuple(sorted(set(found)))
    else:
        names = tuple(classes)
    if not names or len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"classes must be non-empty and unique, got {list(names)!r}"
                         + (f" ({repeated!r} repeated)" if repeated else ""))
    return names


def _clipped(records: list, ids: list[str], ann_dir: Path, split_file: Path) -> list:
    """Boxes clipped to their image (``<size>``; inclusive pixels), as the datasets clip them for
    training and ``--checkpoint`` scoring, with one warning line; a box wholly outside is an error.
    A file without ``<size>`` is left as is (scoring reads no images to learn the size)."""
    sized = [k for k, r in enumerate(records) if r.size is not None and len(r.names)]
    if not sized:
        return records
    boxes = np.concatenate([records[k].boxes for k in sized])
    owner = np.repeat(np.arange(len(sized)), [len(records[k].names) for k in sized])
    hw = np.array([records[k].size for k in sized], dtype=np.float64)[owner]
    hi = np.stack([hw[:, 1] - 1, hw[:, 0] - 1], axis=1)  # (x, y) upper bounds
    outside = (boxes[:, 0] > hi[:, 0]) | (boxes[:, 1] > hi[:, 1]) | (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
    if outside.any():
        j = int(np.flatnonzero(outside)[0])
        k = sized[owner[j]]
        obj = j - int(np.searchsorted(owner, owner[j]))
        h, w = records[k].size
        raise InputError(ann_dir / f"{ids[k]}.xml", f"object #{obj} box {boxes[j].tolist()} (0-based) lies outside "
                                                    f"its {w}x{h} image")
    clipped = np.clip(boxes, 0, np.concatenate([hi, hi], axis=1)).astype(np.float32)
    changed = (clipped != boxes).any(axis=1)
    if not changed.any():
        return records
    out = list(records)
    bounds = np.concatenate(([0], np.cumsum([len(records[k].names) for k in sized])))
    for n, k in enumerate(sized):
        if changed[bounds[n]:bounds[n + 1]].any():
            out[k] = records[k]._replace(boxes=clipped[bounds[n]:bounds[n + 1]])
    first = ids[sized[int(owner[np.flatnonzero(changed)[0]])]]
    warn(f"{split_file}: {int(changed.sum())} ground-truth box(es) extend past their image and were clipped to "
         f"it (first in {first}.xml)")
    return out


def load_detection_ground_truth(root: str | os.PathLike[str], split: str,
                                classes: Sequence[str] | str | None = None,
                                cache_dir: str | os.PathLike[str] | None = None,
                                extra_classes: Sequence[str] = ()) -> VOCGroundTruth:
    """Reads the split's annotations (through the annotation cache) into per-image arrays.

    Args:
        root: VOC-layout folder (``Annotations/``, ``ImageSets/Main/``).
        split: split name.
        classes: class names, ``"auto"`` (the sorted union of the names in the split's
            annotations and ``extra_classes``) or None (VOC's 20).
        cache_dir: folder of the annotation cache (None: no cache; see
            :mod:`visiontasks.evaluation.voc.cache`).
        extra_classes: with ``"auto"``, names that join the union although no object has them
            (e.g. the classes of the results files to score: they get no ground truth).

    Raises:
        InputError: a missing split file or annotation, a malformed annotation, or an object of a
            class outside ``classes``.
    """
    root = Path(root)
    ids = split_ids(root, split)
    ann_dir = root / "Annotations"
    records = read_annotations(ann_dir, [f"{i}.xml" for i in ids], cache_dir)
    names = resolve_classes(classes, {n for r in records for n in r.names} | set(extra_classes))
    index = {name: c + 1 for c, name in enumerate(names)}
    boxes, labels, difficult = [], [], []
    records = _clipped(records, ids, ann_dir, root / "ImageSets" / "Main" / f"{split}.txt")
    for image_id, rec in zip(ids, records):
        try:
            labels.append(np.array([index[n] for n in rec.names], dtype=np.int64))
        except KeyError:
            k = next(k for k, n in enumerate(rec.names) if n not in index)
            raise InputError(ann_dir / f"{image_id}.xml", f"object #{k} has class {rec.names[k]!r}, "
                                                          f"not one of {list(names)}") from None
        boxes.append(rec.boxes.astype(np.float64))
        difficult.append(rec.difficult)
    return VOCGroundTruth(ids=ids, classes=names, boxes=boxes, labels=labels, difficult=difficult)
