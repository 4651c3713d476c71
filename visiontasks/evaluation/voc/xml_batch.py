"""The batch fast path of the VOC annotation parser (:mod:`.annotations`): many plain files at once (torch-free).

Building an element tree per file costs far more than the few fields scoring needs. Here all
*plain* files (see :func:`_content`) are joined into one document, each inside its own numbered
wrapper element, and

1. expat checks the whole document once — so each file's content is well-formed on its own
   (a wrapper cannot be closed by another file's tags) and there is no DTD, entity, comment,
   CDATA section or processing instruction (those bytes make a file non-plain beforehand);
2. one regular expression lists the start tags scoring needs (object, part, bndbox boundaries,
   name, difficult and the four corners, each with the text up to the next tag — ElementTree's
   ``.text``) in document order;
3. numpy assigns every token to its file and object by depth counts (from the file's start), and
   keeps an object's ``name``/``difficult``/corners only where each appears once as it must
   (inside the object, outside ``<part>``; corners inside its one ``<bndbox>``).

A file that is not plain, or whose objects do not have exactly this shape, or where one of these
tags carries attributes or is empty, comes back as None:
:func:`~visiontasks.evaluation.voc.annotations.parse_annotations` parses it with the tree parser,
which also words the errors. The fast path therefore never accepts what the tree parser refuses,
and gives the same names, boxes and flags where both accept. (One liberty: a ``<name>`` or
``<difficult>`` nested in some other child of the object, which the tree parser's ``find`` does not
see, is taken here as the object's own.)
"""
from __future__ import annotations

import re
from typing import Sequence
from xml.parsers import expat

import numpy as np

from visiontasks.errors import InputError
from visiontasks.evaluation.voc.annotations import COORDS, ObjectRecords, image_size

__all__ = ["parse_plain_files"]

_DECL = rb"<\?xml\s+version\s*=\s*([\"'])1\.[0-9]\1(?:\s+encoding\s*=\s*([\"'])(?:utf-8|UTF-8|us-ascii|US-ASCII)\2)?" \
        rb"(?:\s+standalone\s*=\s*([\"'])(?:yes|no)\3)?\s*\?>"
_HEAD = re.compile(rb"(?:" + _DECL + rb")?\s*<annotation>")
_TAIL = re.compile(rb"</annotation>\s*\Z")
_ASCII = re.compile(rb"encoding\s*=\s*[\"']us-ascii", re.IGNORECASE)
_MARK = b"vt.f"
_TOKEN = re.compile(rb"<(x(?:min|max)|y(?:min|max)|name|difficult|bndbox|object|part|size|width|height|"
                    rb"/(?:object|part|bndbox|size)|vt\.f)"
                    rb"([0-9]*)(\s[^>]*)?>([^<]*)")
_TAGS = ("object", "/object", "part", "/part", "bndbox", "/bndbox", "name", "difficult", *COORDS,
         "size", "/size", "width", "height")
_FILE = len(_TAGS)
_CODE = {**{t.encode(): k for k, t in enumerate(_TAGS)}, _MARK: _FILE}
(OBJ, OBJ_END, PART, PART_END, BND, BND_END, NAME, DIFF) = range(8)
_COORD_CODES = tuple(range(8, 12))
(SIZE, SIZE_END, WIDTH, HEIGHT) = range(12, 16)


def _content(data: bytes) -> bytes | None:
    """The bytes between ``<annotation>`` and ``</annotation>`` of a plain file, or None."""
    if b"<!" in data or b"&" in data or _MARK in data:
        return None
    head = _HEAD.match(data)
    tail = _TAIL.search(data)
    if head is None or tail is None or tail.start() < head.end() or b"<?" in data[head.end():]:
        return None
    if _ASCII.search(head.group(0)) and not data.isascii():
        return None  # the joined document is read as UTF-8; expat refuses such bytes under US-ASCII
    return data[head.end():tail.start()]


def _tokens(document: bytes) -> tuple[np.ndarray, np.ndarray, tuple[bytes, ...]]:
    """(tag codes, whether the tag is odd — attributes, or digits after a name that is not the file
    marker's —, the text that follows each tag up to the next tag)."""
    found = _TOKEN.findall(document)
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, bool), ()
    tags, digits, attrs, texts = zip(*found)
    codes = np.fromiter(map(_CODE.__getitem__, tags), dtype=np.int64, count=len(tags))
    odd = (np.fromiter(map(len, attrs), dtype=np.int64, count=len(attrs)) > 0) | (
        (np.fromiter(map(len, digits), dtype=np.int64, count=len(digits)) > 0) != (codes == _FILE))
    return codes, odd, texts


def _depth(codes: np.ndarray, open_code: int, close_code: int, file_start: np.ndarray) -> np.ndarray:
    """Nesting depth after each token, counted from the start of its file."""
    depth = np.cumsum((codes == open_code).astype(np.int64) - (codes == close_code))
    return depth - depth[file_start]


def parse_plain_files(datas: Sequence[bytes]) -> list[ObjectRecords | None]:
    """Parses the plain files among ``datas`` (see the module docstring); None for every other one.

    Args:
        datas: the bytes of F annotation files.

    Returns:
        F entries: the file's objects, or None where the tree parser must read it.
    """
    out: list[ObjectRecords | None] = [None] * len(datas)
    plain = [(i, c) for i, c in enumerate(map(_content, datas)) if c is not None]
    if not plain:
        return out
    contents = [c for _, c in plain]
    document = b"".join([b"<vt.root>", *(b"<vt.f%d>%s</vt.f%d>" % (k, c, k) for k, c in enumerate(contents)),
                         b"</vt.root>"])
    try:
        expat.ParserCreate().Parse(document, True)
    except expat.ExpatError:
        return out  # some file is malformed: the tree parser finds which and says why
    codes, with_attributes, texts = _tokens(document)
    file_of = np.cumsum(codes == _FILE) - 1
    file_start = np.flatnonzero(codes == _FILE)[file_of]
    good = np.ones(len(plain), dtype=bool)
    obj, part, bnd, size = (_depth(codes, *pair, file_start) for pair in
                            ((OBJ, OBJ_END), (PART, PART_END), (BND, BND_END), (SIZE, SIZE_END)))
    nested = (obj > 1) | (part > 1) | (bnd > 1) | (size > 1) | (obj < 0) | (part < 0) | (bnd < 0) | (size < 0)
    good[file_of[nested | with_attributes]] = False
    sizes = _sizes(codes, texts, file_of, obj, size, good)
    obj_id = np.cumsum(codes == OBJ) - 1
    object_file = file_of[codes == OBJ]
    num_obj = len(object_file)
    direct = (obj == 1) & (part == 0)
    picks = {NAME: direct & (bnd == 0) & (codes == NAME), DIFF: direct & (bnd == 0) & (codes == DIFF),
             BND: direct & (codes == BND)}
    picks.update({c: direct & (bnd == 1) & (codes == c) for c in _COORD_CODES})
    for code, mask in picks.items():
        per_object = np.bincount(obj_id[mask], minlength=num_obj)
        wrong = per_object > 1 if code == DIFF else per_object != 1
        good[object_file[wrong]] = False
    keep = good[object_file]
    return _assemble(out, plain, good, object_file, keep, picks, obj_id, texts, sizes)


def _sizes(codes: np.ndarray, texts: Sequence[bytes], file_of: np.ndarray, obj: np.ndarray, size: np.ndarray,
           good: np.ndarray) -> list[tuple[int, int] | None]:
    """Each file's ``<size>`` as (height, width) — None without one; marks files with an odd one not good."""
    outside = obj == 0
    opened = np.bincount(file_of[outside & (codes == SIZE)], minlength=len(good))
    good[opened > 1] = False
    dims = {}
    for code in (WIDTH, HEIGHT):
        idx = np.flatnonzero(outside & (size == 1) & (codes == code))
        per_file = np.bincount(file_of[idx], minlength=len(good))
        good[(opened == 1) & (per_file != 1)] = False
        dims[code] = dict(zip(file_of[idx].tolist(), idx.tolist()))
    out: list[tuple[int, int] | None] = [None] * len(good)
    for k in np.flatnonzero(good & (opened == 1)).tolist():
        try:
            out[k] = image_size("", texts[dims[WIDTH][k]].decode("ascii"), texts[dims[HEIGHT][k]].decode("ascii"))
        except (InputError, UnicodeDecodeError):
            good[k] = False
    return out


def _assemble(out: list[ObjectRecords | None], plain: list[tuple[int, bytes]], good: np.ndarray,
              object_file: np.ndarray, keep: np.ndarray, picks: dict[int, np.ndarray], obj_id: np.ndarray,
              texts: Sequence[bytes], sizes: list[tuple[int, int] | None]) -> list[ObjectRecords | None]:
    """Converts the picked strings of the good files' objects and fills ``out``."""
    order = [np.flatnonzero(picks[c]) for c in (NAME, *_COORD_CODES)]
    rows = [idx[keep[obj_id[idx]]] for idx in order]
    try:
        names = [texts[i].decode("utf-8").strip() for i in rows[0]]
        if not all(names):
            raise ValueError("an empty <name>")
        corners = np.array([[float(texts[i]) for i in idx] for idx in rows[1:]], dtype=np.float64).T.reshape(-1, 4)
    except (UnicodeDecodeError, ValueError):
        return out  # a bad name or coordinate: the tree parser names it
    flags = np.zeros(len(object_file), dtype=np.int8)
    diff_idx = np.flatnonzero(picks[DIFF])
    flags[obj_id[diff_idx]] = [{b"": 0, b"0": 0, b"1": 1}.get(texts[i].strip(), -1) for i in diff_idx]
    flags = flags[keep]
    values = corners - 1.0
    kept_file = object_file[keep]
    bad = ~np.isfinite(values).all(1) | (values[:, 2] < values[:, 0]) | (values[:, 3] < values[:, 1]) | (flags < 0)
    good = good.copy()
    good[kept_file[bad]] = False
    bounds = np.searchsorted(kept_file, np.arange(len(plain) + 1))
    boxes = values.astype(np.float32)
    for k, (i, _) in enumerate(plain):
        if good[k]:
            lo, hi = bounds[k], bounds[k + 1]
            out[i] = ObjectRecords(names=names[lo:hi], boxes=boxes[lo:hi], difficult=flags[lo:hi] > 0, size=sizes[k])
    return out
