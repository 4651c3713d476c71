"""One training split read from several VOC-layout folders: the "07+12" of the papers.

Faster R-CNN (Table 4), YOLOv1 (§4) and SSD train on VOC 2007 trainval + VOC 2012 trainval and
test on VOC 2007 test. ``data.extra_train_roots`` lists the folders whose ``data.train_split`` is
appended to ``data.root``'s (MMDetection's list of ``ann_file``, Detectron2's
``DATASETS.TRAIN = ("voc_2007_trainval", "voc_2012_trainval")``); the test split always comes from
``data.root``. :class:`ConcatSplits` is ``torch.utils.data.ConcatDataset`` plus what the toolkit
reads from a dataset (``ids``, ``classes``, ``image_path``, ``expected_size``,
``get_annotation``), dispatched to the folder each image comes from.

Shape shorthand: none (items are those of the concatenated datasets).
"""
from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any, Sequence

from torch.utils.data import ConcatDataset

from visiontasks.errors import InputError

__all__ = ["ConcatSplits"]


class ConcatSplits(ConcatDataset):
    """The same split of several VOC-layout datasets, one after the other.

    Args:
        datasets: ``VOCDetection`` or ``VOCSegmentation`` objects with the same classes.

    Raises:
        ValueError: no datasets, or datasets with different classes.
        InputError: an image id listed by two of the folders (named, with both split files): ids
            identify detections in results files and proposal caches, so they must be unique.
    """

    def __init__(self, datasets: Sequence[Any]) -> None:
        datasets = list(datasets)
        if not datasets:
            raise ValueError("ConcatSplits needs at least one dataset")
        classes = tuple(datasets[0].classes)
        for other in datasets[1:]:
            if tuple(other.classes) != classes:
                raise ValueError(f"the concatenated splits have different classes: {list(classes)!r} in "
                                 f"{datasets[0].split_file} vs {list(other.classes)!r} in {other.split_file}")
        seen: dict[str, Any] = {}
        for dataset in datasets:
            for image_id in dataset.ids:
                first = seen.setdefault(image_id, dataset)
                if first is not dataset:
                    raise InputError(dataset.split_file, f"image id {image_id!r} is also listed in "
                                                         f"{first.split_file}; ids must be unique across data.root "
                                                         "and data.extra_train_roots")
        super().__init__(datasets)
        self.classes = classes
        self.ids = [image_id for dataset in datasets for image_id in dataset.ids]
        self.split = datasets[0].split
        self.split_file = datasets[0].split_file
        self.roots = [Path(dataset.root) for dataset in datasets]

    def _locate(self, index: int) -> tuple[Any, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index %= len(self)
        k = bisect.bisect_right(self.cumulative_sizes, index)
        return self.datasets[k], index - (self.cumulative_sizes[k - 1] if k else 0)

    def image_path(self, index: int) -> Path:
        dataset, local = self._locate(index)
        return dataset.image_path(local)

    def expected_size(self, index: int) -> tuple[int, int]:
        dataset, local = self._locate(index)
        return dataset.expected_size(local)

    def get_annotation(self, index: int) -> dict[str, Any]:
        dataset, local = self._locate(index)
        return dataset.get_annotation(local)

    def __repr__(self) -> str:
        parts = " + ".join(f"{root}:{self.split}" for root in self.roots)
        return f"ConcatSplits({parts}, {len(self)} images)"
