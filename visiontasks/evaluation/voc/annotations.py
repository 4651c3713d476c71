"""The VOC annotation XML parser of the package: class names, boxes, difficult flags, image size (torch-free).

The one reader of ``Annotations/<id>.xml``: the datasets (:func:`visiontasks.data.parse_voc_xml`,
which turns names into labels) and the evaluators (which need no images, so never go through the
datasets) both call it. 1-based inclusive coordinates become 0-based (``x - 1``, float32), an
absent ``<difficult>`` is 0 (as in the devkit), hostile XML (DTDs, entities) is refused by
defusedxml, and every problem is an :class:`~visiontasks.errors.InputError` naming the file.

Many files at once (:func:`parse_annotations`) first go through the batch fast path of
:mod:`.xml_batch`, which accepts only plain files and gives what this parser gives; every other
file — and every error message — comes from the tree parser here.

Shape shorthand: N = objects in one file.
"""
from __future__ import annotations

import math
import os
from typing import NamedTuple, Sequence
from xml.etree.ElementTree import ParseError

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring

from visiontasks.errors import InputError

__all__ = ["ObjectRecords", "parse_annotation", "parse_annotations", "read_annotation", "records", "image_size"]

COORDS = ("xmin", "ymin", "xmax", "ymax")


class ObjectRecords(NamedTuple):
    """The objects of one annotation file: ``names`` (N class names as written in ``<name>``),
    ``boxes`` (N, 4) float32 ``xyxy`` 0-based, ``difficult`` (N,) bool, and the image ``size``
    ``(height, width)`` from ``<size>`` (None when the file has none)."""

    names: list[str]
    boxes: np.ndarray
    difficult: np.ndarray
    size: tuple[int, int] | None = None


def _bad_coordinate(path: str, corners: list[list[str]]) -> InputError:
    """The error for the first coordinate string that is not a finite number."""
    for k, raw in enumerate(corners):
        for tag, text in zip(COORDS, raw):
            try:
                ok = math.isfinite(float(text))
            except ValueError:
                return InputError(path, f"<{tag}> in object #{k} <bndbox> is not a number: {text!r}")
            if not ok:
                return InputError(path, f"<{tag}> in object #{k} <bndbox> is not finite: {text!r}")
    return InputError(path, "unreadable coordinates")  # not reached: the caller saw a bad one


def _difficult(raw: str | None, path: str, where: str) -> bool:
    if raw is None or not raw.strip():
        return False  # absent in some VOC2012 files: 0, as in the devkit
    try:
        return bool(int(raw))
    except ValueError:
        raise InputError(path, f"<difficult> in {where} is not 0/1: {raw!r}") from None


def image_size(path: str, width: str, height: str) -> tuple[int, int]:
    """``(height, width)`` from the strings of ``<size>``; positive integers or an :class:`InputError`."""
    try:
        w, h = float(width), float(height)
    except ValueError:
        raise InputError(path, f"<size> must hold numbers, got width={width!r} height={height!r}") from None
    if not (math.isfinite(w) and math.isfinite(h)) or w <= 0 or h <= 0 or w != int(w) or h != int(h):
        raise InputError(path, f"<size> must hold positive integers, got width={w} height={h}")
    return int(h), int(w)


def records(path: str, names: list[str], corners: list[list[str]], flags: list[str | None],
            size: tuple[int, int] | None = None) -> ObjectRecords:
    """Checks and converts the raw strings of a file's objects (shared by the fast and the tree parser)."""
    try:
        values = np.array([[float(v) for v in box] for box in corners], dtype=np.float64).reshape(-1, 4) - 1.0
    except ValueError:
        raise _bad_coordinate(path, corners) from None
    if not np.isfinite(values).all():
        raise _bad_coordinate(path, corners)
    inverted = np.flatnonzero((values[:, 2] < values[:, 0]) | (values[:, 3] < values[:, 1]))
    if inverted.size:
        k = int(inverted[0])
        raise InputError(path, f"object #{k} has an inverted box {(values[k] + 1.0).tolist()}")
    difficult = [_difficult(flag, path, f"object #{k}") for k, flag in enumerate(flags)]
    return ObjectRecords(names=names, boxes=values.astype(np.float32),
                         difficult=np.asarray(difficult, dtype=bool), size=size)


def parse_annotation(path: str | os.PathLike[str], data: bytes) -> ObjectRecords:
    """Parses the bytes of one annotation file with defusedxml (DTDs and entities refused).

    Args:
        path: the file, for error messages.
        data: its content.

    Raises:
        InputError: hostile or malformed XML, a root other than ``<annotation>``, a missing field,
            a non-numeric or inverted coordinate.
    """
    path = str(path)
    try:
        root = safe_fromstring(data, forbid_dtd=True)
    except (DefusedXmlException, ParseError) as exc:
        hostile = isinstance(exc, DefusedXmlException)
        raise InputError(path, f"refused hostile XML ({type(exc).__name__})" if hostile
                         else f"malformed XML ({exc})") from None
    except LookupError as exc:  # an XML declaration naming an unknown encoding (found by tests/test_fuzz_voc.py)
        raise InputError(path, f"malformed XML ({exc})") from None
    if root.tag != "annotation":
        raise InputError(path, f"root element is <{root.tag}>, expected <annotation>")
    names, corners, flags = [], [], []
    for k, obj in enumerate(root.iter("object")):
        bnd = obj.find("bndbox")
        fields = {"name": obj.find("name"), **({t: bnd.find(t) for t in COORDS} if bnd is not None else {})}
        for tag, node in fields.items():
            if node is None or not (node.text or "").strip():
                raise InputError(path, f"missing <{tag}> in object #{k}")
        if bnd is None:
            raise InputError(path, f"missing <bndbox> in object #{k}")
        names.append(fields["name"].text.strip())
        corners.append([fields[t].text.strip() for t in COORDS])
        flag = obj.find("difficult")
        flags.append(None if flag is None else (flag.text or ""))
    size = root.find("size")
    if size is not None:
        dims = [size.find(tag) for tag in ("width", "height")]
        for tag, node in zip(("width", "height"), dims):
            if node is None or not (node.text or "").strip():
                raise InputError(path, f"missing <{tag}> in <size>")
        size = image_size(path, dims[0].text.strip(), dims[1].text.strip())
    return records(path, names, corners, flags, size)


def read_annotation(path: str | os.PathLike[str]) -> ObjectRecords:
    """Reads and parses one annotation file (missing file: :class:`InputError`)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InputError(path, "annotation file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a folder, expected an annotation file") from None
    return parse_annotation(path, data)


def parse_annotations(paths: Sequence[str | os.PathLike[str]], datas: Sequence[bytes]) -> list[ObjectRecords]:
    """Parses F files at once: the plain ones on the batch fast path, the rest with :func:`parse_annotation`.

    Args:
        paths: the F files, for error messages.
        datas: their contents.

    Returns:
        F records, equal to :func:`parse_annotation`'s for each file.

    Raises:
        InputError: the first file (in order) that the tree parser refuses.
    """
    from visiontasks.evaluation.voc.xml_batch import parse_plain_files  # it builds on this module's records

    return [rec if rec is not None else parse_annotation(path, data)
            for path, data, rec in zip(paths, datas, parse_plain_files(datas))]
