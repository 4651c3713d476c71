"""Parsing of PASCAL VOC annotation XML files (hostile XML refused by defusedxml).

A VOC file stores 1-based inclusive pixel coordinates; :func:`parse_voc_xml` returns 0-based
``xyxy`` boxes (``x0 = xmin - 1`` …, the py-faster-rcnn / torchvision convention).

Shape shorthand: N = objects in the image.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence
from xml.etree.ElementTree import Element, ParseError

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import parse as safe_parse

from visiontasks.errors import InputError

__all__ = ["VOCAnnotation", "parse_voc_xml", "clip_boxes"]

_COORDS = ("xmin", "ymin", "xmax", "ymax")


@dataclass(frozen=True)
class VOCAnnotation:
    """The content of one annotation file.

    Attributes:
        boxes: (N, 4) float32 ``xyxy``, 0-based.
        labels: (N,) int64 in ``1..C`` (index into ``classes`` plus one).
        difficult: (N,) bool.
        size: ``(height, width)`` from ``<size>``, or None when the file has none.
    """

    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    size: tuple[int, int] | None


def _text(node: Element, tag: str, path: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise InputError(path, f"missing <{tag}> in {where}")
    return child.text.strip()


def _number(node: Element, tag: str, path: str, where: str) -> float:
    raw = _text(node, tag, path, where)
    try:
        value = float(raw)
    except ValueError:
        raise InputError(path, f"<{tag}> in {where} is not a number: {raw!r}") from None
    if not np.isfinite(value):
        raise InputError(path, f"<{tag}> in {where} is not finite: {raw!r}")
    return value


def _size(root: Element, path: str) -> tuple[int, int] | None:
    node = root.find("size")
    if node is None:
        return None
    w, h = _number(node, "width", path, "<size>"), _number(node, "height", path, "<size>")
    if w <= 0 or h <= 0 or w != int(w) or h != int(h):
        raise InputError(path, f"<size> must hold positive integers, got width={w} height={h}")
    return int(h), int(w)


def parse_voc_xml(path: str | os.PathLike[str], classes: Sequence[str]) -> VOCAnnotation:
    """Reads one VOC annotation file.

    Args:
        path: the ``Annotations/<id>.xml`` file.
        classes: the object class names; label ``i + 1`` is ``classes[i]``.

    Returns:
        The boxes (0-based), labels, difficult flags and image size of the file.

    Raises:
        InputError: the file is missing, hostile (entities, DTDs), malformed, lacks a field,
            holds a non-numeric or inverted coordinate, or names a class not in ``classes``.
    """
    path = str(path)
    try:
        root = safe_parse(path, forbid_dtd=True).getroot()
    except FileNotFoundError:
        raise InputError(path, "annotation file not found") from None
    except DefusedXmlException as exc:
        raise InputError(path, f"refused hostile XML ({type(exc).__name__})") from None
    except ParseError as exc:
        raise InputError(path, f"malformed XML ({exc})") from None
    if root.tag != "annotation":
        raise InputError(path, f"root element is <{root.tag}>, expected <annotation>")
    index = {name: i + 1 for i, name in enumerate(classes)}
    boxes, labels, difficult = [], [], []
    for k, obj in enumerate(root.iter("object")):
        where = f"object #{k}"
        name = _text(obj, "name", path, where)
        if name not in index:
            raise InputError(path, f"{where} has class {name!r}, not one of {list(classes)}")
        bnd = obj.find("bndbox")
        if bnd is None:
            raise InputError(path, f"missing <bndbox> in {where}")
        x0, y0, x1, y1 = (_number(bnd, tag, path, f"{where} <bndbox>") - 1.0 for tag in _COORDS)
        if x1 < x0 or y1 < y0:
            raise InputError(path, f"{where} has an inverted box {[x0 + 1, y0 + 1, x1 + 1, y1 + 1]}")
        flag = obj.find("difficult")  # absent in some VOC2012 files: 0, as in the devkit
        try:
            diff = bool(int(flag.text)) if flag is not None and flag.text and flag.text.strip() else False
        except ValueError:
            raise InputError(path, f"<difficult> in {where} is not 0/1: {flag.text!r}") from None
        boxes.append((x0, y0, x1, y1))
        labels.append(index[name])
        difficult.append(diff)
    return VOCAnnotation(
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        labels=np.asarray(labels, dtype=np.int64),
        difficult=np.asarray(difficult, dtype=bool),
        size=_size(root, path),
    )


def clip_boxes(boxes: np.ndarray, size: tuple[int, int], path: str | os.PathLike[str],
               inclusive: bool = True) -> tuple[np.ndarray, int]:
    """Clips ground-truth boxes to their image, as the VOC devkit and torchvision do.

    Training and evaluation both read the clipped boxes, so a box that sticks out of the image
    is the same object for the loss and for the score.

    Args:
        boxes: (N, 4) ``xyxy``, 0-based.
        size: ``(height, width)`` of the image.
        path: the annotation file (named in errors).
        inclusive: VOC's inclusive pixel convention (``x`` in ``[0, W - 1]``); False for COCO's
            continuous one (``x`` in ``[0, W]``).

    Returns:
        ``(clipped boxes, number of boxes that changed)``.

    Raises:
        InputError: a box lies entirely outside the image.
    """
    h, w = size
    hi_x, hi_y = (w - 1, h - 1) if inclusive else (w, h)
    outside = (boxes[:, 0] > hi_x) | (boxes[:, 1] > hi_y) | (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise InputError(path, f"object #{k} box {boxes[k].tolist()} (0-based) lies outside its {w}x{h} image")
    clipped = boxes.copy()
    clipped[:, 0::2] = np.clip(clipped[:, 0::2], 0, hi_x)
    clipped[:, 1::2] = np.clip(clipped[:, 1::2], 0, hi_y)
    changed = int((clipped != boxes).any(axis=1).sum())
    return clipped, changed


def warn_clipped(count: int, first: str | None, source: str | os.PathLike[str]) -> None:
    """One warning line on stderr when ``count`` ground-truth boxes of ``source`` were clipped."""
    if count:
        import sys

        print(f"warning: {source}: {count} ground-truth box(es) extend past their image and were clipped to it "
              f"(first in {first})", file=sys.stderr)
