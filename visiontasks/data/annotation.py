"""VOC annotations for the datasets: labelled objects of one file, and boxes clipped to their image.

The XML itself is read by the package's one VOC annotation parser,
:mod:`visiontasks.evaluation.voc.annotations` (torch-free, defusedxml: hostile XML refused), which
the evaluators use too. A VOC file stores 1-based inclusive pixel coordinates; :func:`parse_voc_xml`
returns 0-based ``xyxy`` boxes (``x0 = xmin - 1`` …, the py-faster-rcnn / torchvision convention).

Shape shorthand: N = objects in the image.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from visiontasks.errors import InputError
from visiontasks.evaluation.voc.annotations import read_annotation

__all__ = ["VOCAnnotation", "parse_voc_xml", "clip_boxes"]


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


def parse_voc_xml(path: str | os.PathLike[str], classes: Sequence[str]) -> VOCAnnotation:
    """Reads one VOC annotation file and labels its objects.

    Args:
        path: the ``Annotations/<id>.xml`` file.
        classes: the object class names; label ``i + 1`` is ``classes[i]``.

    Returns:
        The boxes (0-based), labels, difficult flags and image size of the file.

    Raises:
        InputError: the file is missing, hostile (entities, DTDs), malformed, lacks a field,
            holds a non-numeric or inverted coordinate, or names a class not in ``classes``.
    """
    record = read_annotation(path)
    index = {name: i + 1 for i, name in enumerate(classes)}
    unknown = [k for k, name in enumerate(record.names) if name not in index]
    if unknown:
        k = unknown[0]
        raise InputError(path, f"object #{k} has class {record.names[k]!r}, not one of {list(classes)}")
    return VOCAnnotation(boxes=record.boxes, labels=np.array([index[n] for n in record.names], dtype=np.int64),
                         difficult=record.difficult, size=record.size)


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
