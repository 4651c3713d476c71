"""A cheap up-front check of a dataset split, so that a bad file stops a run before training starts.

:func:`check_split` opens every image's header (no pixel decoding) and compares its size with
what the annotation or mask says; the datasets themselves already check at construction that
every listed file exists, that annotations parse and that masks match their images. Files that
decode their header but are truncated further on are only found when read. Controlled by the
config key ``data.check`` (default true; set false for huge datasets already known to be sound).

:func:`check_boxes` is the cheap part of the data doctor (``tools/check_data.py``), on the boxes
the dataset holds in memory: a degenerate box (zero or negative width or height: a ``log 0``
regression target, NaN losses) stops the run naming its image; exact duplicate boxes are one
warning line.

Shape shorthand: N = boxes of an image.
"""
from __future__ import annotations

import sys

import torch
from torch.utils.data import Dataset

from visiontasks.data.voc import image_size
from visiontasks.errors import InputError

__all__ = ["check_split", "check_boxes", "split_source"]


def split_source(dataset: Dataset) -> str:
    """The file that lists ``dataset``'s images (a VOC split file or a COCO json), for messages."""
    for attr in ("split_file", "annotation_json", "root"):
        if getattr(dataset, attr, None) is not None:
            return str(getattr(dataset, attr))
    return type(dataset).__name__


def check_split(dataset: Dataset, split: str) -> int:
    """Checks every image header of ``dataset`` against its annotated size.

    Args:
        dataset: a dataset of :mod:`visiontasks.data` (``image_path(i)``, ``expected_size(i)``).
        split: its name (for messages).

    Returns:
        The number of images checked.

    Raises:
        InputError: the split is empty, or an image is missing, unreadable, too large, or of
            another size than its annotation says (the file is named).
    """
    n = len(dataset)
    if n == 0:
        raise InputError(split_source(dataset), f"split {split!r} has no images")
    check_boxes(dataset, split)
    if not hasattr(dataset, "image_path") or not hasattr(dataset, "expected_size"):
        return 0
    for i in range(n):
        path = dataset.image_path(i)
        size = image_size(path)
        want = tuple(int(s) for s in dataset.expected_size(i))
        if size != want:
            raise InputError(path, f"image is {size} (H, W) but its annotation says {want}")
    return n


def check_boxes(dataset: Dataset, split: str) -> int:
    """Refuses degenerate ground-truth boxes and warns of duplicates, from the annotations alone.

    Args:
        dataset: a detection dataset with ``get_annotation(i)`` (others are skipped).
        split: its name (for messages).

    Returns:
        The number of boxes checked.

    Raises:
        InputError: a box of zero or negative width or height (the image is named).
    """
    if not hasattr(dataset, "get_annotation") or not hasattr(dataset, "ids"):
        return 0
    checked, duplicates, first = 0, 0, None
    for i in range(len(dataset)):
        ann = dataset.get_annotation(i)
        boxes = ann.get("boxes")
        if boxes is None or len(boxes) == 0:
            continue
        checked += len(boxes)
        bad = ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).nonzero()
        if len(bad):
            k = int(bad[0])
            raise InputError(split_source(dataset), f"image {ann.get('image_id')!r} of split {split!r}: object #{k} "
                                                    f"box {boxes[k].tolist()} has zero or negative area (its "
                                                    "regression target would be log 0); fix or drop it — "
                                                    "tools/check_data.py lists every such box")
        rows = torch.cat([ann["labels"][:, None].to(boxes.dtype), boxes], 1) if "labels" in ann else boxes
        n = len(rows) - len(torch.unique(rows, dim=0))
        duplicates, first = duplicates + n, first or (ann.get("image_id") if n else None)
    if duplicates:
        print(f"warning: {split_source(dataset)}: split {split!r} holds {duplicates} exact duplicate box(es) "
              f"(first in image {first!r}); tools/check_data.py shows the whole table", file=sys.stderr)
    return checked
