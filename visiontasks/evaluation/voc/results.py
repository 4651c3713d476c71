"""Official PASCAL VOC detection results files (``comp4_det_<split>_<class>.txt``).

One file per class; one line per detection::

    <image_id> <score> <xmin> <ymin> <xmax> <ymax>

with VOC's 1-based pixel coordinates (our 0-based boxes plus 1, as py-faster-rcnn writes them).
Numbers are written with Python's shortest round-trip ``repr`` so that reading back is lossless
up to the ``+1 / -1`` shift.

Shape shorthand: N = images of the split; D_i = detections of image i.
"""
from __future__ import annotations

import codecs
import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from visiontasks.errors import InputError
from visiontasks.evaluation.arrays import to_numpy
from visiontasks.io import atomic_write

__all__ = ["write_voc_results", "read_voc_results", "results_filename", "results_classes"]


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


#: Bytes the vectorised parser handles: ASCII printing characters, space, tab, CR, LF.
_PLAIN = np.zeros(256, dtype=bool)
_PLAIN[[9, 10, 13]] = True
_PLAIN[32:127] = True
#: Bytes a number may hold on the vectorised path (anything else — nan, inf, 0x…, 1_0 — takes the exact path).
_NUMERIC = np.zeros(256, dtype=bool)
_NUMERIC[np.frombuffer(b"0123456789.eE+-", np.uint8)] = True


def _parse_fast(data: bytes, known: _KnownIds) -> tuple[np.ndarray, np.ndarray] | None:
    """Vectorised parse of a results file: (image index (D,), values (D, 5)), or None when the file is
    anything but plain (then the exact line-by-line parser reads it and names the bad line).

    Tokens are found on the byte array (whitespace: space, tab; line breaks: LF, CR), every line must
    hold 6 of them, the image-id tokens are blanked and the 5 D numbers parsed in one
    ``np.fromstring`` call; ids are looked up with one sorted search.
    """
    b = np.frombuffer(data, dtype=np.uint8)
    if b.size == 0:
        return np.zeros(0, np.int64), np.zeros((0, 5))
    if not _PLAIN[b].all():
        return None
    newline = (b == 10) | (b == 13)
    space = newline | (b == 32) | (b == 9)
    edges = np.flatnonzero(np.diff(space.view(np.int8), prepend=1, append=1))  # token boundaries
    starts, ends = edges[0::2], edges[1::2]
    line = np.searchsorted(np.flatnonzero(newline), starts)
    first = np.concatenate(([True], line[1:] != line[:-1]))
    if np.any(np.diff(np.flatnonzero(np.concatenate((first, [True])))) != 6):
        return None  # a line without exactly 6 fields
    id_start, id_end = starts[first], ends[first]
    marks = np.zeros(b.size + 1, dtype=np.int8)
    marks[id_start] = 1
    marks[id_end] = -1
    in_id = np.cumsum(marks[:-1], dtype=np.int8) > 0
    if not _NUMERIC[b[~space & ~in_id]].all():
        return None
    numbers = np.where(in_id, np.uint8(32), b)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            values = np.fromstring(numbers.tobytes().decode("ascii"), dtype=np.float64, sep=" ")
    except (ValueError, DeprecationWarning):
        return None
    if values.size != 5 * id_start.size or not np.isfinite(values).all():
        return None
    width = int((id_end - id_start).max())
    offsets = np.arange(width)
    valid = offsets < (id_end - id_start)[:, None]
    chars = np.where(valid, b[np.minimum(id_start[:, None] + offsets, b.size - 1)], 0).astype(np.uint8)
    image = known.lookup(chars.view(f"S{width}").ravel())
    if image is None:
        return None
    return image, values.reshape(-1, 5)


class _KnownIds:
    """The split's image ids as a sorted byte-string array, for vectorised lookups."""

    def __init__(self, image_ids: Sequence[str]) -> None:
        self.index = {str(i): k for k, i in enumerate(image_ids)}
        encoded = np.array([str(i).encode("utf-8") for i in image_ids] or [b""])
        self.order = np.argsort(encoded, kind="stable")
        self.sorted = encoded[self.order]

    def get(self, image_id: str) -> int | None:
        return self.index.get(image_id)

    def lookup(self, names: np.ndarray) -> np.ndarray | None:
        """Index of each byte-string id in the split, or None when one is not in it."""
        if not self.index:
            return None
        pos = np.minimum(np.searchsorted(self.sorted, names), len(self.sorted) - 1)
        if not np.array_equal(self.sorted[pos], names):
            return None
        return self.order[pos]


#: Bytes read at a time: the vectorised parser's transient arrays scale with this, not with the file.
CHUNK_BYTES = 8 * 2 ** 20
#: What one detection costs when a file is read (the buffer: int32 image, int32 label, 5 float64), in bytes.
READ_BYTES_PER_DETECTION = 48


def count_lines(path: Path) -> int:
    """An upper bound of the detections of a results file: its LF and CR line breaks (CRLF counted once
    within a chunk), plus one for a last line without a break. Reads the file in chunks."""
    lines, last = 0, b"\n"
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                lines += chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")
                last = chunk[-1:]
    except IsADirectoryError:
        raise InputError(path, "is a folder, expected a results file") from None
    return lines + (last not in (b"\n", b"\r"))


class _Buffer:
    """Detections appended in blocks into preallocated compact arrays (grown by half when a count was low).

    Shape shorthand: D = detections held."""

    def __init__(self, capacity: int) -> None:
        self.size = 0
        self.image = np.empty(max(capacity, 1), np.int32)
        self.label = np.empty(max(capacity, 1), np.int32)
        self.values = np.empty((max(capacity, 1), 5), np.float64)

    def append(self, image: np.ndarray, label: int, values: np.ndarray) -> None:
        """Adds (d,) image indices and (d, 5) ``score x0 y0 x1 y1`` rows of class ``label``."""
        end = self.size + len(image)
        if end > len(self.image):
            capacity = max(end, len(self.image) * 3 // 2)
            for name in ("image", "label", "values"):
                getattr(self, name).resize((capacity, *getattr(self, name).shape[1:]), refcheck=False)
        self.image[self.size:end] = image
        self.label[self.size:end] = label
        self.values[self.size:end] = values
        self.size = end

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(image (D,) int32, label (D,) int32, values (D, 5) float64)``, views of the filled part."""
        return self.image[:self.size], self.label[:self.size], self.values[:self.size]


def _read_file(path: Path, label: int, known: _KnownIds, split: str, out: _Buffer) -> None:
    """Appends the detections of one results file to ``out``, in file order, reading it in chunks.

    Plain chunks take the vectorised parser; if any chunk is not plain, what was appended is dropped and
    the exact line-by-line parser reads the whole file (and names a bad line)."""
    first = out.size
    carry = b""
    try:
        with open(path, "rb") as f:
            while True:
                chunk = f.read(CHUNK_BYTES)
                data = carry + chunk
                cut = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1 if chunk else len(data)
                data, carry = data[:cut], data[cut:]
                if data.strip(b" \t\r\n"):
                    parsed = _parse_fast(data, known)
                    if parsed is None:
                        out.size = first
                        break
                    out.append(parsed[0], label, parsed[1])
                if not chunk:
                    return
    except IsADirectoryError:
        raise InputError(path, "is a folder, expected a results file") from None
    block: list[tuple[int, float, float, float, float, float]] = []
    for row in _exact_lines(path, known, split):
        if row is None:
            continue
        block.append(row)
        if len(block) == 65536:
            table = np.array(block, dtype=np.float64)
            out.append(table[:, 0].astype(np.int32), label, table[:, 1:])
            block.clear()
    if block:
        table = np.array(block, dtype=np.float64)
        out.append(table[:, 0].astype(np.int32), label, table[:, 1:])


_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines splits at


def _exact_lines(path: Path, known: _KnownIds,
                 split: str) -> Iterator[tuple[int, float, float, float, float, float] | None]:
    """``(image, score, x0, y0, x1, y1)`` (None for a blank line) of each line of a UTF-8 file, lines as ``str.splitlines`` cuts the
    whole text (numbered so in errors), read in chunks; the file is checked to be UTF-8 first."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise InputError(path, "not a UTF-8 text file") from None
    n, carry = 0, ""
    with open(path, encoding="utf-8", newline="") as f:
        while True:
            block = f.read(CHUNK_BYTES)
            lines = (carry + block).splitlines(keepends=True)
            carry = lines.pop() if block and lines and (lines[-1][-1] not in _BREAKS or lines[-1][-1] == "\r") else ""
            for line in lines:
                n += 1
                yield _parse_line(path, n, line, known, split)
            if not block:
                return


def _parse_line(path: Path, n: int, line: str, known: _KnownIds,
                split: str) -> tuple[int, float, float, float, float, float] | None:
    fields = line.split()
    if not fields:
        return None
    if len(fields) != 6:
        raise InputError(path, f"line {n}: expected '<image_id> <score> <xmin> <ymin> <xmax> <ymax>', "
                               f"got {len(fields)} fields")
    try:
        values = [float(v) for v in fields[1:]]
    except ValueError:
        raise InputError(path, f"line {n}: score and coordinates must be numbers, got {line.strip()!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise InputError(path, f"line {n}: non-finite number in {line.strip()!r}")
    image = known.get(fields[0])
    if image is None:
        raise InputError(path, f"line {n}: image id {fields[0]!r} is not in split {split!r}")
    return (image, *values)


def _parse_file(path: Path, label: int, known: _KnownIds, split: str,
                rows: list[tuple[int, int, float, float, float, float, float]]) -> None:
    """The exact parser's rows ``(image, label, score, x0, y0, x1, y1)`` appended to ``rows``."""
    rows.extend((row[0], label, *row[1:]) for row in _exact_lines(path, known, split) if row is not None)


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


#: Memory of the whole-folder reader per detection, measured (``bench/eval_large.py``) and rounded up: the
#: read buffer, the sort and the per-image arrays returned (``read_voc_results``), then the scorer's own
#: concatenation, matching and curves. ``FULL``: every class at once (``--errors``, ``--report``);
#: ``STREAM_*``: class by class (what ``tools/eval.py det`` does otherwise), the largest class file's
#: detections at the ``CLASS`` rate plus every detection's precision and recall kept for the curves.
FULL_BYTES_PER_DETECTION = 400
STREAM_CLASS_BYTES_PER_DETECTION = 320
STREAM_TOTAL_BYTES_PER_DETECTION = 24
#: --errors (TIDE, confusion, AP by size) on top of FULL, per detection.
ERRORS_BYTES_PER_DETECTION = 600


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
