"""Reading many VOC annotation files at once (torch-free).

Shape shorthand: F = files read.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from visiontasks.evaluation.voc_annotations import ObjectRecords, read_annotation

__all__ = ["read_annotations"]


def read_annotations(folder: str | os.PathLike[str], names: Sequence[str],
                     cache_dir: str | os.PathLike[str] | None = None) -> list[ObjectRecords]:
    """The objects of ``folder/<name>`` for each of the F names, in order.

    Args:
        folder: the ``Annotations/`` folder.
        names: file names inside it.
        cache_dir: folder of the annotation cache (None: parse every file).
    """
    folder = Path(folder)
    return [read_annotation(folder / name) for name in names]
