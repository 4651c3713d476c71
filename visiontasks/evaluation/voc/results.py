"""Official PASCAL VOC detection results files (``comp4_det_<split>_<class>.txt``).

One file per class; one line per detection::

    <image_id> <score> <xmin> <ymin> <xmax> <ymax>

with VOC's 1-based pixel coordinates (our 0-based boxes plus 1, as py-faster-rcnn writes them).
Numbers are written with Python's shortest round-trip ``repr`` so that reading back is lossless
up to the ``+1 / -1`` shift.

Reading is bounded in memory (issue 26, docs/RELIABILITY.md): a file's lines are counted first, then it
is read in chunks into compact preallocated arrays (:mod:`~visiontasks.evaluation.voc.results_parse`),
and the memory the caller will need is checked against what is available before anything is parsed; :func:`read_voc_results_by_class` hands over one class
file at a time, for scoring class by class.

Shape shorthand: N = images of the split; D_i = detections of image i.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from visiontasks.errors import InputError
from visiontasks.evaluation.arrays import to_numpy
from visiontasks.evaluation.voc.results_parse import (_Buffer, _KnownIds, _parse_fast, _parse_file,  # noqa: F401
                                                      _read_file, count_lines)
from visiontasks.io import atomic_write

__all__ = ["write_voc_results", "read_voc_results", "read_voc_results_by_class", "results_filename",
           "results_classes", "count_lines"]


def results_filename(split: str, class_name: str, comp: str = "comp4") -> str:
    """``comp4_det_<split>_<class>.txt``, the name the VOC evaluation server expects."""
    return f"{comp}_det_{split}_{class_name}.txt"


def _unpack(prediction: Mapping[str, Any] | Sequence[Any], index: int) -> tuple[np.ndarray, ...]:
    if isinstance(prediction, Mapping):
        boxes, labels, scores = prediction["boxes"], prediction["labels"], prediction["scores"]
    else:
        boxes, labels, scores = prediction
    boxes = to_numpy(boxes).astype(np.float64).reshape(-1, 4)
    labels = to_numpy(labels).astype(np.int64).reshape(-1)
    scores = to_numpy(scores).astype(np.float64).reshape(-1)
    if not len(boxes) == len(labels) == len(scores):
        raise ValueError(f"prediction {index} has {len(boxes)} boxes, {len(labels)} labels and {len(scores)} scores")
    return boxes, labels, scores


def _write_atomic(path: Path, text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_voc_results(
    out_dir: str | os.PathLike[str],
    split: str,
    classes: Sequence[str],
    image_ids: Sequence[str],
    predictions: Sequence[Mapping[str, Any] | Sequence[Any]],
) -> list[Path]:
    """Writes one ``comp4_det_<split>_<class>.txt`` per class (empty files included), atomically.

    ============  =================================  ===============================
    name          shape                              dtype
    ============  =================================  ===============================
    image_ids     N                                  str (VOC file stems)
    predictions   N dicts ``boxes`` (D_i, 4),        tensors or arrays; boxes xyxy
                  ``labels`` (D_i,), ``scores``      0-based, labels ``1..C``
                  (D_i,) — or (boxes, labels,
                  scores) tuples
    ============  =================================  ===============================

    Args:
        out_dir: folder to write into (created if needed).
        split: image set name, e.g. ``"test"``.
        classes: the C class names, label ``c`` is ``classes[c - 1]``.

    Returns:
        The paths written, in class order.
    """
    if len(image_ids) != len(predictions):
        raise ValueError(f"{len(image_ids)} image ids but {len(predictions)} predictions")
    for image_id in image_ids:
        if not image_id or any(ch.isspace() for ch in str(image_id)):
            raise ValueError(f"image ids must be non-empty and free of whitespace, got {image_id!r}")
    lines: list[list[str]] = [[] for _ in classes]
    for i, (image_id, pred) in enumerate(zip(image_ids, predictions)):
        boxes, labels, scores = _unpack(pred, i)
        if labels.size and (labels.min() < 1 or labels.max() > len(classes)):
            raise ValueError(f"prediction {i} has labels outside 1..{len(classes)}: {sorted(set(labels.tolist()))!r}")
        for box, label, score in zip((boxes + 1.0).tolist(), labels.tolist(), scores.tolist()):
            lines[label - 1].append(" ".join([str(image_id), repr(score), *map(repr, box)]))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, class_lines in zip(classes, lines):
        path = out / results_filename(split, name)
        _write_atomic(path, "".join(line + "\n" for line in class_lines))
        paths.append(path)
    return paths


def _results_files(det_dir: str | os.PathLike[str], split: str) -> list[tuple[str, Path]]:
    """``(class name, path)`` of every ``comp*_det_<split>_<class>.txt`` in ``det_dir``, sorted by path."""
    folder = Path(det_dir)
    if not folder.is_dir():
        raise InputError(folder, "detections folder not found")
    marker = f"_det_{split}_"
    files = sorted(p for p in folder.glob(f"comp*{marker}*.txt") if p.is_file())
    if not files:
        raise InputError(folder, f"no results files named comp4_det_{split}_<class>.txt")
    return [(p.name[p.name.index(marker) + len(marker):-len(".txt")], p) for p in files]


def results_classes(det_dir: str | os.PathLike[str], split: str) -> list[str]:
    """The class names of the split's results files in ``det_dir`` (the ``<class>`` of each file name).

    Empty when the folder is missing or holds none (:func:`read_voc_results` raises for those).
    """
    try:
        return [name for name, _ in _results_files(det_dir, split)]
    except InputError:
        return []


#: Memory per detection, beyond what the process holds before reading, measured with ``bench/eval_large.py``
#: (docs/RELIABILITY.md: 2,000,000 lines in one file, 291 bytes per detection of peak RSS, the process's
#: own ~60 MiB included; 10,000,000 in 20 files, 51; with ``--errors``, 1,000,000 in 20 files, 362) and
#: rounded up. ``STREAM_*``: class by class, what ``tools/eval.py det`` does: the detections of the largest
#: class file (read buffer, sort, per-image arrays, the scorer's concatenation, matching and curves) and,
#: for every detection, the precision and recall kept for the curves. ``FULL``: every class at once
#: (``read_voc_results``: ``--report``); ``ERRORS`` on top of it for ``--errors`` (TIDE, confusion, AP by size).
STREAM_CLASS_BYTES_PER_DETECTION = 400
STREAM_TOTAL_BYTES_PER_DETECTION = 40
FULL_BYTES_PER_DETECTION = 400
ERRORS_BYTES_PER_DETECTION = 200


def _class_files(det_dir: str | os.PathLike[str], split: str, classes: Sequence[str]) -> list[tuple[int, Path]]:
    """``(label, path)`` of the split's results files, each class at most once and all in ``classes``."""
    label_of = {name: c + 1 for c, name in enumerate(classes)}
    seen: dict[int, Path] = {}
    for name, path in _results_files(det_dir, split):
        label = label_of.get(name)
        if label is None:
            raise InputError(path, f"class {name!r} is not one of the {len(classes)} classes {list(classes)!r}")
        if label in seen:
            raise InputError(path, f"a second results file for class {name!r} (first: {seen[label].name})")
        seen[label] = path
    return list(seen.items())


def _per_image(image: np.ndarray, label: np.ndarray, values: np.ndarray, num_images: int,
               order: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """The rows taken in ``order`` (sorted by image) split into per-image boxes (0-based), labels, scores."""
    boxes = values[order, 1:]
    boxes -= 1.0
    labels = label[order].astype(np.int64)
    scores = values[order, 0]
    splits = np.searchsorted(image[order], np.arange(1, num_images))
    return np.split(boxes, splits), np.split(labels, splits), np.split(scores, splits)


def read_voc_results(
    det_dir: str | os.PathLike[str],
    split: str,
    classes: Sequence[str],
    image_ids: Sequence[str],
    bytes_per_detection: int = FULL_BYTES_PER_DETECTION,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Reads every ``comp*_det_<split>_<class>.txt`` of ``det_dir`` back into per-image arrays.

    A class without a file simply has no detections. Before reading, the detections are counted
    (:func:`count_lines`) and the memory the caller will need, ``bytes_per_detection`` each, checked
    against what is available (:func:`visiontasks.evaluation.memory.check_memory`).

    Args:
        det_dir: folder holding the results files.
        split: image set name; files of other splits in the folder are left alone.
        classes: the C class names (label ``c`` is ``classes[c - 1]``).
        image_ids: the N image ids of the split, in the order of the returned lists.
        bytes_per_detection: the memory estimate's rate (reading and what the caller does with it).

    Returns:
        ``(boxes, labels, scores)``, lists of N arrays: boxes (D_i, 4) float64 xyxy 0-based,
        labels (D_i,) int64 ``1..C``, scores (D_i,) float64; per image, rows in class then file order.

    Raises:
        InputError: the folder is missing or has no results file of the split; a file names a
            class not in ``classes`` or repeats one; a line does not parse or names an image
            outside the split; the detections need more memory than is available.
    """
    from visiontasks.evaluation.memory import check_memory

    files = _class_files(det_dir, split, classes)
    counts = [count_lines(path) for _, path in files]
    total = sum(counts)
    check_memory(total * bytes_per_detection, det_dir, f"scoring {total:,} detections of {len(files)} results files")
    known = _KnownIds(image_ids)
    out = _Buffer(total)
    for label, path in sorted(files, key=lambda f: f[1]):
        _read_file(path, label, known, split, out)
    image, label, values = out.arrays()
    order = np.lexsort((label, image))  # stable: file order within (image, class)
    return _per_image(image, label, values, len(image_ids), order)


def read_voc_results_by_class(
    det_dir: str | os.PathLike[str],
    split: str,
    classes: Sequence[str],
    image_ids: Sequence[str],
) -> Iterator[tuple[int, tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]]]:
    """:func:`read_voc_results` one class file at a time: ``(label, (boxes, labels, scores))`` per file, in
    label order, each holding that class's detections only (per image in file order).

    Memory: the largest file's detections (``STREAM_CLASS_BYTES_PER_DETECTION`` each, with the
    scoring of one class) plus ``STREAM_TOTAL_BYTES_PER_DETECTION`` for every detection (the curves
    the caller keeps); checked, as by :func:`read_voc_results`, before anything is read.

    Raises:
        InputError: as :func:`read_voc_results`, all but the memory check and the file names before
            the first yield.
    """
    from visiontasks.evaluation.memory import check_memory

    files = sorted(_class_files(det_dir, split, classes))
    counts = [count_lines(path) for _, path in files]
    if files:
        total, largest = sum(counts), max(range(len(files)), key=counts.__getitem__)
        need = counts[largest] * STREAM_CLASS_BYTES_PER_DETECTION + total * STREAM_TOTAL_BYTES_PER_DETECTION
        check_memory(need, files[largest][1], f"scoring {total:,} detections ({counts[largest]:,} in this, the "
                                              "largest results file)")
    known = _KnownIds(image_ids)
    for (label, path), count in zip(files, counts):
        yield label, _read_class(path, label, known, split, count, len(image_ids))


def _read_class(path: Path, label: int, known: _KnownIds, split: str, count: int,
                num_images: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """One results file as per-image arrays (the read buffer is freed on return)."""
    out = _Buffer(count)
    _read_file(path, label, known, split, out)
    image, labels, values = out.arrays()
    return _per_image(image, labels, values, num_images, np.argsort(image, kind="stable"))
