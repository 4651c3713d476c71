"""Parsing one ``comp4_det_<split>_<class>.txt`` results file, in chunks, into compact arrays (issue 26).

Used by :mod:`visiontasks.evaluation.voc.results`. A file's lines are counted first
(:func:`count_lines`, an upper bound of its detections, to size the buffer and the memory estimate);
it is then read ``CHUNK_BYTES`` at a time. A chunk of plain bytes (ASCII, space, tab, CR, LF) whose
every line has 6 fields, finite numbers and known ids is parsed vectorised (:func:`_parse_fast`);
anything else sends the whole file to the exact line-by-line parser (:func:`_exact_lines`), which
cuts lines as ``str.splitlines`` cuts the whole text and names the first bad line. Either way the
transient memory scales with the chunk, not the file.

Shape shorthand: D = detections of a file.
"""
from __future__ import annotations

import codecs
import math
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from visiontasks.errors import InputError

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
    """Detections appended in blocks into preallocated compact arrays (grown by half when a count was low):
    48 bytes each (int32 image, int32 label, 5 float64: score and corners, kept in float64 so that ties
    and overlaps are those of ``voc_eval.py``, which reads them as doubles).

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
    """``(image, score, x0, y0, x1, y1)`` (None for a blank line) of each line of a UTF-8 file, lines as
    ``str.splitlines`` cuts the whole text (numbered so in errors), read in chunks; the file is checked to be UTF-8 first."""
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
