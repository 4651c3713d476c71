"""Tolerant reading of a split for the data doctor: every image's raw boxes, problems kept, not raised.

The readers (:mod:`visiontasks.data.voc`, ``coco``, ``yolo_txt``, ``labelme``) stop at the first bad
file and clip boxes; the doctor wants every problem of the split and the boxes as written. Each
format here yields :class:`ImageRecord` s with the annotation's problem (an ``InputError`` line) in
``problem``; only a split that cannot be listed at all (no split file, no data.yaml) raises.

Shape shorthand: N = objects in an image.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from visiontasks.errors import InputError

__all__ = ["ImageRecord", "read_records", "DOCTOR_FORMATS"]

DOCTOR_FORMATS = ("voc", "coco", "yolo", "labelme")


@dataclass
class ImageRecord:
    """One image of a split as its annotation states it.

    Attributes:
        image_id: the reader's id.
        path: the image file.
        size: ``(H, W)`` the annotation states (None: it states none; the header is used).
        boxes: (N, 4) float64 ``xyxy`` 0-based continuous pixels, unclipped.
        labels: (N,) int64 in ``1..C``.
        problem: the annotation's error line (the file could not be read as the reader needs), or None.
    """

    image_id: str
    path: Path
    size: tuple[int, int] | None = None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    problem: str | None = None


def _voc(root: Path, split: str, classes: Sequence[str] | None) -> tuple[tuple[str, ...], list[ImageRecord]]:
    from visiontasks.data.annotation import parse_voc_xml
    from visiontasks.data.voc import VOC_CLASSES, _read_split

    classes = tuple(classes or VOC_CLASSES)
    records = []
    for image_id in _read_split(root, "Main", split):
        rec = ImageRecord(image_id, root / "JPEGImages" / f"{image_id}.jpg")
        try:
            ann = parse_voc_xml(root / "Annotations" / f"{image_id}.xml", classes)
            rec.size, rec.boxes, rec.labels = ann.size, ann.boxes.astype(np.float64), ann.labels
        except InputError as exc:
            rec.problem = str(exc)
        records.append(rec)
    return classes, records


def _coco(images: Path, annotations: Path) -> tuple[tuple[str, ...], list[ImageRecord]]:
    from visiontasks.data.coco import load_coco

    coco = load_coco(annotations)
    cats = sorted(coco.cats)
    label = {c: i + 1 for i, c in enumerate(cats)}
    records = []
    for cid, info in coco.imgs.items():
        rec = ImageRecord(str(cid), images / str(info.get("file_name")))
        try:
            rec.size = (int(info["height"]), int(info["width"]))
        except (KeyError, TypeError, ValueError):
            rec.problem = f"{annotations}: image {cid} lacks an integer height/width"
        rows = [(ann["bbox"], ann["category_id"]) for ann in coco.imgToAnns.get(cid, [])]
        if rows:
            xywh = np.asarray([r[0] for r in rows], np.float64).reshape(-1, 4)
            rec.boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
            rec.labels = np.asarray([label[r[1]] for r in rows], np.int64)
        records.append(rec)
    return tuple(coco.cats[c]["name"] for c in cats), records


def _yolo(root: Path, split: str, classes: Sequence[str] | None) -> tuple[tuple[str, ...], list[ImageRecord]]:
    from visiontasks.data.voc import image_size
    from visiontasks.data.yolo_txt import (label_path, orphan_labels, parse_label_file, split_images, to_xyxy,
                                           yolo_classes)

    classes = tuple(classes or yolo_classes(root))
    files = split_images(root, split)
    records = [ImageRecord(p.stem, p, problem=f"{p}: label file without an image")
               for p in orphan_labels(root, split, files)]
    for p in files:
        rec = ImageRecord(p.stem, p)
        try:
            rel, cls = parse_label_file(label_path(p), len(classes))
            rec.labels = cls + 1
            if len(cls):  # normalised boxes need the image's size
                rec.size = image_size(p)
                rec.boxes = to_xyxy(rel, rec.size).astype(np.float64)
        except InputError as exc:
            if exc.path != str(p):  # an unreadable image is the doctor's own finding
                rec.problem = str(exc)
        records.append(rec)
    return classes, records


def _labelme(root: Path, split: str, classes: Sequence[str] | None) -> tuple[tuple[str, ...], list[ImageRecord]]:
    from visiontasks.data.labelme import labelme_classes, read_labelme, shapes_to_boxes, split_jsons

    classes = tuple(classes or labelme_classes(root))
    records = []
    for j in split_jsons(root, split):
        rec = ImageRecord(j.stem, j.with_suffix(".png"))
        try:
            data = read_labelme(j)
            rec.path = j.parent / data["imagePath"]
            if data.get("imageHeight") and data.get("imageWidth"):
                rec.size = (int(data["imageHeight"]), int(data["imageWidth"]))
            boxes, labels = shapes_to_boxes(data, classes, j)
            rec.boxes, rec.labels = boxes.astype(np.float64), labels
        except InputError as exc:
            rec.problem = str(exc)
        records.append(rec)
    return classes, records


def read_records(kind: str, root: str | os.PathLike[str] | None, split: str, classes: Sequence[str] | None = None,
                 images: str | os.PathLike[str] | None = None,
                 annotations: str | os.PathLike[str] | None = None) -> tuple[tuple[str, ...], list[ImageRecord]]:
    """``(class names, records)`` of one split, problems kept per image.

    Args:
        kind: one of :data:`DOCTOR_FORMATS`.
        root: the dataset folder (VOC layout, the folder of data.yaml, the LabelMe folder); for
            ``coco``, the folder holding ``images/`` (or ``--images``) and ``<split>.json`` unless
            ``images`` / ``annotations`` are given.
        split: the split name.
        classes: class names (default: the format's own).
        images, annotations: COCO images folder and json.

    Raises:
        InputError: the split cannot be listed (no split file, data.yaml, json).
    """
    if kind not in DOCTOR_FORMATS:
        raise ValueError(f"dataset must be one of {DOCTOR_FORMATS}, got {kind!r}")
    if kind == "coco":
        base = Path(root or ".")
        return _coco(Path(images or base / "images"), Path(annotations or base / f"{split}.json"))
    if root is None:
        raise ValueError(f"dataset {kind!r} needs a root folder")
    return {"voc": _voc, "yolo": _yolo, "labelme": _labelme}[kind](Path(root), split, classes)
