"""A cheap up-front check of a dataset split, so that a bad file stops a run before training starts.

:func:`check_split` opens every image's header (no pixel decoding) and compares its size with
what the annotation or mask says; the datasets themselves already check at construction that
every listed file exists, that annotations parse and that masks match their images. Files that
decode their header but are truncated further on are only found when read. Controlled by the
config key ``data.check`` (default true; set false for huge datasets already known to be sound).

Shape shorthand: none (files only).
"""
from __future__ import annotations

from torch.utils.data import Dataset

from visiontasks.data.voc import image_size
from visiontasks.errors import InputError

__all__ = ["check_split", "split_source"]


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
    if not hasattr(dataset, "image_path") or not hasattr(dataset, "expected_size"):
        return 0
    for i in range(n):
        path = dataset.image_path(i)
        size = image_size(path)
        want = tuple(int(s) for s in dataset.expected_size(i))
        if size != want:
            raise InputError(path, f"image is {size} (H, W) but its annotation says {want}")
    return n
