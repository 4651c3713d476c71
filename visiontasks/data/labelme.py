"""LabelMe json (wkentaro/labelme): one ``.json`` per image, shapes as rectangles and polygons.

Layout: ``root/<split>/*.json`` (recursively), each naming its image in ``imagePath`` relative to
the json (the file labelme writes next to it); ``root/<split>.txt`` listing json paths relative to
``root`` is read instead when it exists. Classes: ``data.classes``, else ``root/labels.txt`` (one
name a line; labelme2voc's ``__ignore__`` and ``_background_`` lines skipped), else the sorted
labels of every json under ``root``.

Detection: a ``rectangle`` (2 points, any corner order) is its box, a ``polygon`` (>= 3 points) and
a ``circle`` (centre, rim point) their bounding box; points, lines and linestrips carry no area and
are skipped. Segmentation: polygons, rectangles and circles are filled into a label map in file
order, a later shape over an earlier one (labelme's ``shapes_to_label``); ``mask`` 0 is background.
Coordinates are continuous pixels, 0-based, as labelme stores them.

Shape shorthand: H, W = image height and width; N = objects in an image.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from visiontasks.data.annotation import clip_boxes, warn_clipped
from visiontasks.data.voc import _VOCBase, image_size
from visiontasks.errors import InputError

__all__ = ["LabelMeDetection", "LabelMeSegmentation", "labelme_classes", "split_jsons", "read_labelme",
           "shapes_to_boxes", "shapes_to_mask"]

AREA_SHAPES = ("rectangle", "polygon", "circle")


def split_jsons(root: str | os.PathLike[str], split: str) -> list[Path]:
    """The json files of ``split``: those listed in ``root/<split>.txt``, or under ``root/<split>/``."""
    root = Path(root)
    listing, folder = root / f"{split}.txt", root / split
    if listing.is_file():
        return [root / line.strip() for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]
    if folder.is_dir():
        return sorted(folder.rglob("*.json"))
    raise InputError(folder, f"split {split!r} not found: neither this folder of LabelMe json nor {listing.name}")


def read_labelme(path: Path) -> dict[str, Any]:
    """One LabelMe json, checked: ``shapes`` a list of ``{label, points, shape_type}``, an ``imagePath``.

    Raises:
        InputError: missing, not JSON, or a shape without label or with malformed points.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "LabelMe json not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not valid JSON ({exc})") from None
    except RecursionError:  # thousands of nested [ or { (tests/test_fuzz_yolo_labelme.py)
        raise InputError(path, "not usable JSON: nested too deeply") from None
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list) or not data.get("imagePath") \
            or not isinstance(data["imagePath"], str):
        raise InputError(path, "not a LabelMe file (needs 'shapes' and 'imagePath')")
    for k, shape in enumerate(data["shapes"]):
        kind = shape.get("shape_type") or "polygon" if isinstance(shape, dict) else None
        try:
            pts = np.asarray(shape["points"], dtype=np.float64).reshape(-1, 2)
            label = shape["label"]
        except (KeyError, TypeError, ValueError):
            raise InputError(path, f"shape #{k} needs a 'label' and 'points' [[x, y], ...]") from None
        if not isinstance(label, str) or not (np.abs(pts) < 3e38).all():  # finite, and within float32
            raise InputError(path, f"shape #{k}: label must be a string and points finite numbers")
        if not isinstance(kind, str):  # e.g. a list: was a TypeError traceback (tests/test_fuzz_yolo_labelme.py)
            raise InputError(path, f"shape #{k}: shape_type must be a string, got {kind!r}")
        need = {"rectangle": 2, "circle": 2, "polygon": 3}.get(kind)
        if need and (len(pts) < need or (kind != "polygon" and len(pts) != need)):
            raise InputError(path, f"shape #{k} ({kind}) has {len(pts)} points")
    return data


def _shape_box(kind: str, pts: np.ndarray) -> np.ndarray:
    if kind == "circle":
        r = float(np.hypot(*(pts[1] - pts[0])))
        return np.array([pts[0, 0] - r, pts[0, 1] - r, pts[0, 0] + r, pts[0, 1] + r])
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])


def _area_shapes(data: dict[str, Any], classes: Sequence[str],
                 path: Path) -> Iterator[tuple[str, np.ndarray, int]]:
    """``(shape_type, points (P, 2) float64, label 1..C)`` of each area shape of one LabelMe file, in order."""
    index = {c: i + 1 for i, c in enumerate(classes)}
    for k, shape in enumerate(data["shapes"]):
        kind = shape.get("shape_type") or "polygon"
        if kind not in AREA_SHAPES:
            continue
        if shape["label"] not in index:
            raise InputError(path, f"shape #{k} has label {shape['label']!r}, not one of {list(classes)}")
        yield kind, np.asarray(shape["points"], np.float64).reshape(-1, 2), index[shape["label"]]


def shapes_to_boxes(data: dict[str, Any], classes: Sequence[str], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(boxes (N, 4) float32 xyxy, labels (N,) int64 1..C)`` of the area shapes of one LabelMe file."""
    shapes = list(_area_shapes(data, classes, path))
    boxes = [_shape_box(kind, pts) for kind, pts, _ in shapes]
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray([lab for *_, lab in shapes], np.int64)


def shapes_to_mask(data: dict[str, Any], classes: Sequence[str], size: tuple[int, int], path: Path) -> np.ndarray:
    """(H, W) uint8 label map of one LabelMe file (0 background, later shapes over earlier)."""
    canvas = Image.new("L", (size[1], size[0]), 0)
    draw = ImageDraw.Draw(canvas)
    for kind, pts, label in _area_shapes(data, classes, path):
        if kind == "polygon":
            draw.polygon([tuple(p) for p in pts], fill=label, outline=label)
        elif kind == "rectangle":
            draw.rectangle(_shape_box(kind, pts).tolist(), fill=label, outline=label)
        else:
            draw.ellipse(_shape_box(kind, pts).tolist(), fill=label, outline=label)
    return np.asarray(canvas, dtype=np.uint8)


def labelme_classes(root: str | os.PathLike[str]) -> tuple[str, ...]:
    """``root/labels.txt`` (labelme2voc's special lines skipped) or the sorted labels of all json under ``root``."""
    root = Path(root)
    listing = root / "labels.txt"
    if listing.is_file():
        names = [ln.strip() for ln in listing.read_text(encoding="utf-8").splitlines()]
        return tuple(n for n in names if n and n not in ("__ignore__", "_background_"))
    if not root.is_dir():
        raise InputError(root, "LabelMe dataset folder not found")
    labels = {s.get("label") for p in root.rglob("*.json") for s in read_labelme(p)["shapes"]
              if (s.get("shape_type") or "polygon") in AREA_SHAPES}
    if not labels:
        raise InputError(root, "no labelled shapes in any LabelMe json; set data.classes or write labels.txt")
    return tuple(sorted(labels))


class _LabelMeBase(_VOCBase):
    """Split reading and image checks shared by detection and segmentation."""

    def __init__(self, root: str | os.PathLike[str], split: str = "train", classes: Sequence[str] | None = None,
                 transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None) -> None:
        Dataset.__init__(self)
        self.root, self.split, self.transforms = Path(root), split, transforms
        self.classes: tuple[str, ...] = tuple(classes) if classes else labelme_classes(root)
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be unique, got {self.classes!r}")
        self.jsons = split_jsons(root, split)
        self.split_file = self.root / split
        self._data = [read_labelme(p) for p in self.jsons]
        self.files = [p.parent / d["imagePath"] for p, d in zip(self.jsons, self._data)]
        for j, f in zip(self.jsons, self.files):
            if not f.is_file():
                raise InputError(j, f"its imagePath {f.name!r} ({f}) is missing")
        self.ids = [p.stem for p in self.jsons]
        self._sizes = [image_size(f) for f in self.files]
        for j, d, s in zip(self.jsons, self._data, self._sizes):
            stated = (d.get("imageHeight"), d.get("imageWidth"))
            if None not in stated and tuple(int(v) for v in stated) != s:
                raise InputError(j, f"imageHeight/imageWidth {stated} but its image is {s} (H, W)")

    def image_path(self, index: int) -> Path:
        """Path of the image file of item ``index``."""
        return self.files[index]

    def expected_size(self, index: int) -> tuple[int, int]:
        """``(height, width)`` of item ``index`` (its image header)."""
        return self._sizes[index]


class LabelMeDetection(_LabelMeBase):
    """LabelMe detection: ``(image, target)`` as :class:`~visiontasks.data.voc.VOCDetection`.

    Args:
        root: the dataset folder; split: ``root/<split>/`` or ``root/<split>.txt``.
        classes: object class names (default: labels.txt or the labels found).
        transforms: ``transforms(image, target)`` on tv_tensors.
        proposals: ``proposals(image_id) -> (R, 4)`` (``image_id`` = the json's stem), or None.

    Raises:
        InputError: a missing or malformed json or image, an unknown label, a box outside its image.
    """

    def __init__(self, root: str | os.PathLike[str], split: str = "train", classes: Sequence[str] | None = None,
                 transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None,
                 proposals: Callable[[str], torch.Tensor] | None = None) -> None:
        super().__init__(root, split, classes, transforms)
        self.proposals = proposals
        self._targets = []
        clipped, first = 0, None
        for j, d, s in zip(self.jsons, self._data, self._sizes):
            boxes, labels = shapes_to_boxes(d, self.classes, j)
            boxes, changed = clip_boxes(boxes, s, j, inclusive=False)
            clipped, first = clipped + changed, first or (j.name if changed else None)
            self._targets.append((boxes, labels))
        warn_clipped(clipped, first, self.split_file)

    def get_annotation(self, index: int) -> dict[str, Any]:
        """The target of item ``index`` without decoding its image (fresh tensors)."""
        boxes, labels = self._targets[index]
        return {
            "boxes": torch.from_numpy(boxes.copy()),
            "labels": torch.from_numpy(labels.copy()),
            "difficult": torch.zeros(len(labels), dtype=torch.bool),
            "image_id": self.ids[index],
            "orig_size": torch.tensor(self._sizes[index], dtype=torch.int64),
        }


class LabelMeSegmentation(_LabelMeBase):
    """LabelMe semantic segmentation: ``(image, target)`` with ``mask`` (H, W) int64, 0 = background."""

    def get_annotation(self, index: int) -> dict[str, Any]:
        """``{"mask", "image_id", "orig_size"}`` of item ``index`` without decoding its image."""
        mask = shapes_to_mask(self._data[index], self.classes, self._sizes[index], self.jsons[index])
        return {
            "mask": torch.from_numpy(mask.astype(np.int64)),
            "image_id": self.ids[index],
            "orig_size": torch.tensor(self._sizes[index], dtype=torch.int64),
        }
