"""COCO-format detection dataset through pycocotools.

Categories map to contiguous labels ``1..C`` in sorted category-id order; ``bbox`` ``[x, y, w, h]``
becomes ``[x, y, x + w, y + h]``; ``iscrowd`` regions are flagged ``difficult`` (ignored by the
VOC evaluators, as COCOeval ignores crowds). The pycocotools ``COCO`` object is kept as ``.coco``
for COCOeval.

Shape shorthand: H, W = image height and width; N = annotations of an image.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from visiontasks.data.annotation import clip_boxes, warn_clipped
from visiontasks.data.transforms import apply_transforms
from visiontasks.data.voc import read_image
from visiontasks.errors import InputError

__all__ = ["COCODetection", "load_coco", "coco_classes"]


def load_coco(annotation_json: str | os.PathLike[str]) -> COCO:
    """Loads a COCO annotation file quietly, checked by the evaluator's reader
    (:func:`visiontasks.evaluation.coco_io.load_coco_gt`: ids, references, boxes, areas).

    Raises:
        InputError: the file is missing, not JSON, lacks ``images``/``annotations``/``categories``,
            holds an id that is not a number or a string, an annotation of an unknown image or
            category, a malformed box, or category ids that mix numbers and strings (no label order).
    """
    from visiontasks.evaluation.coco_io import load_coco_gt  # one COCO reader (tests/test_fuzz_coco.py)

    path = Path(annotation_json)
    coco = load_coco_gt(path)
    if len({isinstance(c, str) for c in coco.cats}) > 1:
        raise InputError(path, f"category ids mix numbers and strings ({sorted(map(repr, coco.cats))}); "
                               "labels follow the sorted ids")
    return coco


def coco_classes(annotation_json: str | os.PathLike[str]) -> tuple[str, ...]:
    """Category names of a COCO file in sorted category-id order (label ``i + 1`` is entry ``i``)."""
    coco = load_coco(annotation_json)
    return tuple(coco.cats[c]["name"] for c in sorted(coco.cats))


class COCODetection(Dataset):
    """COCO detection: ``(image, target)`` as the VOC datasets, target also carrying ``coco_id``.

    Args:
        images_dir: folder of the image files (``file_name`` of each image entry).
        annotation_json: COCO instances json.
        transforms: ``transforms(image, target)`` on tv_tensors.
        proposals: ``proposals(image_id) -> (R, 4)`` boxes in original pixels (``image_id`` is the
            COCO id as a string), carried in ``target["proposals"]``; None: no proposals.

    Raises:
        InputError: a missing or malformed json, or a missing image file.
    """

    def __init__(self, images_dir: str | os.PathLike[str], annotation_json: str | os.PathLike[str],
                 transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None,
                 proposals: Callable[[str], torch.Tensor] | None = None) -> None:
        self.proposals = proposals
        self.root = Path(images_dir)
        self.annotation_json = Path(annotation_json)
        self.coco = load_coco(self.annotation_json)
        self.transforms = transforms
        cat_ids = sorted(self.coco.cats)
        self.classes: tuple[str, ...] = tuple(self.coco.cats[c]["name"] for c in cat_ids)
        self.label_to_cat_id: dict[int, int] = {i + 1: c for i, c in enumerate(cat_ids)}
        self._cat_to_label = {c: i for i, c in self.label_to_cat_id.items()}
        self.coco_ids: list[int] = list(self.coco.imgs)
        self.ids: list[str] = [str(i) for i in self.coco_ids]
        if not self.root.is_dir():
            raise InputError(self.root, "COCO images folder not found")
        present = set(os.listdir(self.root))
        for cid in self.coco_ids:
            name = self.coco.imgs[cid].get("file_name")
            if not isinstance(name, str):
                raise InputError(self.annotation_json, f"image {cid} needs a 'file_name' string, got {name!r}")
            if name not in present:
                raise InputError(self.root / str(name), f"image {cid} of {self.annotation_json} is missing")
        self._targets = [self._parse(cid) for cid in self.coco_ids]
        clipped, first = 0, None
        for cid, t in zip(self.coco_ids, self._targets):
            t["boxes"], changed = clip_boxes(t["boxes"], t["size"], f"{self.annotation_json} (image {cid})",
                                             inclusive=False)
            clipped, first = clipped + changed, first or (f"image {cid}" if changed else None)
        warn_clipped(clipped, first, self.annotation_json)

    def expected_size(self, index: int) -> tuple[int, int]:
        """``(height, width)`` of item ``index`` as the json gives it (no image decoding)."""
        return tuple(self._targets[index]["size"])

    def _parse(self, cid: int) -> dict[str, Any]:
        info = self.coco.imgs[cid]
        boxes, labels, crowd = [], [], []
        for ann in self.coco.imgToAnns.get(cid, []):
            try:
                x, y, w, h = (float(v) for v in ann["bbox"])
                label = self._cat_to_label[ann["category_id"]]
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(self.annotation_json, f"annotation {ann.get('id')!r} is malformed ({exc!r})") from None
            if w <= 0 or h <= 0:
                continue  # degenerate boxes carry no signal (torchvision's references drop them too)
            boxes.append((x, y, x + w, y + h))
            labels.append(label)
            crowd.append(bool(ann.get("iscrowd", 0)))
        try:
            size = (int(info["height"]), int(info["width"]))
        except (KeyError, TypeError, ValueError, OverflowError):
            raise InputError(self.annotation_json, f"image {cid} lacks an integer height/width") from None
        if min(size) < 1:
            raise InputError(self.annotation_json, f"image {cid} has height/width {size}; both must be >= 1")
        return {
            "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            "labels": np.asarray(labels, dtype=np.int64),
            "difficult": np.asarray(crowd, dtype=bool),
            "size": size,
        }

    def __len__(self) -> int:
        return len(self.coco_ids)

    def image_path(self, index: int) -> Path:
        """Path of the image file of item ``index``."""
        return self.root / self.coco.imgs[self.coco_ids[index]]["file_name"]

    def get_annotation(self, index: int) -> dict[str, Any]:
        """The target of item ``index`` without decoding its image (fresh tensors)."""
        t = self._targets[index]
        return {
            "boxes": torch.from_numpy(t["boxes"].copy()),
            "labels": torch.from_numpy(t["labels"].copy()),
            "difficult": torch.from_numpy(t["difficult"].copy()),
            "image_id": self.ids[index],
            "coco_id": self.coco_ids[index],
            "orig_size": torch.tensor(t["size"], dtype=torch.int64),
        }

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        target = self.get_annotation(index)
        image = read_image(self.image_path(index))
        size = tuple(target["orig_size"].tolist())
        if tuple(image.shape[-2:]) != size:
            raise InputError(self.image_path(index),
                             f"image is {tuple(image.shape[-2:])} (H, W) but {self.annotation_json} says {size}")
        if self.proposals is not None:
            target["proposals"] = self.proposals(self.ids[index])
        return apply_transforms(self.transforms, image, target)
