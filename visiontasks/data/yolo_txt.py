"""The YOLO txt layout that ultralytics and Roboflow export: ``data.yaml`` + ``images/`` + ``labels/``.

``data.root`` is the folder of ``data.yaml``, which names the classes (``names:`` a list, or a dict
``{index: name}``; ``nc:`` alone gives ``class_0`` …) and the splits (``train:`` / ``val:`` /
``test:``: a folder of images, searched recursively, a ``.txt`` listing image paths, or a list of
them), relative to ``path:`` when given (itself relative to the yaml's folder; ultralytics resolves a
relative ``path:`` under its own datasets folder instead) or else to the yaml's folder. As in
ultralytics' ``check_det_dataset`` (ultralytics/data/utils.py), a split path starting with ``../``
that does not exist is tried without it (Roboflow writes ``../train/images``).

Each image's labels are the ``.txt`` of the same name with the last ``/images/`` of its path
replaced by ``/labels/`` (ultralytics' ``img2label_paths``); one object a line:
``cls cx cy w h`` normalised to [0, 1], or a polygon ``cls x1 y1 x2 y2 …`` (at least 3 points,
made a box as ultralytics' ``segments2boxes``). An image without a label file, or with an empty
one, is an image without objects. Boxes are ``x0 = (cx - w / 2) * W`` …: continuous pixel
coordinates, 0-based, so a VOC box written as ultralytics' ``voc.yaml`` converter does comes back
the same.

Shape shorthand: H, W = image height and width; N = objects in an image.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import yaml
from torch.utils.data import Dataset

from visiontasks.data.annotation import clip_boxes, warn_clipped
from visiontasks.data.voc import _VOCBase, image_size
from visiontasks.errors import InputError

__all__ = ["IMAGE_SUFFIXES", "YOLODetection", "read_data_yaml", "yolo_classes", "split_images", "label_path",
           "parse_label_file"]

#: image suffixes ultralytics reads (IMG_FORMATS in ultralytics/data/utils.py)
IMAGE_SUFFIXES = (".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic")


def read_data_yaml(root: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """``(yaml file, its mapping)`` of ``root/data.yaml`` (``root`` may also name the yaml itself).

    Raises:
        InputError: the file is missing, not YAML, not a mapping, or names no classes.
    """
    root = Path(root)
    path = root if root.suffix in (".yaml", ".yml") else root / "data.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "data.yaml not found (dataset 'yolo' needs data.root = the folder of data.yaml)") \
            from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(path, "must hold a mapping with names: and train:/val:")
    return path, data


def yolo_classes(root: str | os.PathLike[str]) -> tuple[str, ...]:
    """Class names of ``data.yaml``; label ``i + 1`` is class index ``i`` of the txt files."""
    path, data = read_data_yaml(root)
    names = data.get("names")
    if names is None and isinstance(data.get("nc"), int) and data["nc"] > 0:
        return tuple(f"class_{i}" for i in range(data["nc"]))
    if isinstance(names, dict):  # keys made int, as ultralytics' check_class_names
        try:
            names = {int(k): v for k, v in names.items()}
        except (TypeError, ValueError):
            raise InputError(path, f"names: keys must be class indices, got {list(names)}") from None
        if sorted(names) != list(range(len(names))):
            raise InputError(path, f"names: keys must be the indices 0..{len(names) - 1}, got {sorted(names, key=str)}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise InputError(path, f"names: must be a non-empty list or {{index: name}} mapping, got {names!r}")
    out = tuple(str(n) for n in names)
    if len(set(out)) != len(out):
        raise InputError(path, f"names: holds a name twice ({list(out)})")
    if "nc" in data and data["nc"] != len(out):
        raise InputError(path, f"nc: {data['nc']} but names: lists {len(out)} classes")
    return out


def _resolve(base: Path, entry: str) -> Path:
    p = Path(entry)
    p = p if p.is_absolute() else base / p
    if not p.exists() and entry.startswith("../"):
        p = base / entry[3:]  # Roboflow's ../train/images (ultralytics check_det_dataset)
    return p


def split_images(root: str | os.PathLike[str], split: str) -> list[Path]:
    """The image files of split ``split`` (``train``, ``val``, ``test`` … as keys of data.yaml), sorted.

    Raises:
        InputError: the split is not in data.yaml, or a folder or list file it names is missing.
    """
    path, data = read_data_yaml(root)
    base = path.parent
    if data.get("path"):
        base = Path(str(data["path"])) if Path(str(data["path"])).is_absolute() else base / str(data["path"])
    if split == "val" and "val" not in data and "validation" in data:
        split = "validation"
    entries = data.get(split)
    if not entries:
        raise InputError(path, f"split {split!r} not named (keys: {sorted(k for k in data if isinstance(k, str))})")
    files: list[Path] = []
    for entry in entries if isinstance(entries, list) else [entries]:
        p = _resolve(base, str(entry))
        if p.is_dir():
            files += [f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
        elif p.is_file() and p.suffix == ".txt":
            for line in p.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    f = Path(line.strip())
                    files.append(f if f.is_absolute() else (p.parent / f))
        else:
            raise InputError(p, f"split {split!r} of {path} names this folder or list file, which is missing")
    return sorted(files)


def label_path(image: Path) -> Path:
    """The label file of an image: the last ``images`` folder of its path becomes ``labels``, suffix ``.txt``."""
    parts = list(image.parts)
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] == "images":
            parts[k] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def parse_label_file(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised ``(boxes cx cy w h (N, 4), class indices (N,))`` of one label file; missing: empty.

    Raises:
        InputError: a row with another column count than 5 or ``1 + 2k`` (k >= 3), a value that is
            not a number or outside [0, 1], or a class index outside ``0..num_classes - 1``;
            the message names the file and the line.
    """
    if not path.is_file():
        return np.zeros((0, 4), np.float64), np.zeros(0, np.int64)
    boxes, classes = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        cols = line.split()
        if not cols:
            continue
        if len(cols) != 5 and (len(cols) < 7 or len(cols) % 2 == 0):
            raise InputError(path, f"line {n}: {len(cols)} columns; want 'cls cx cy w h' (5) or a polygon "
                                   "'cls x1 y1 x2 y2 x3 y3 ...'")
        try:
            cls, values = float(cols[0]), np.array([float(c) for c in cols[1:]], np.float64)
        except ValueError:
            raise InputError(path, f"line {n}: not numbers: {line.strip()!r}") from None
        if not 0 <= cls < num_classes or cls != int(cls):  # range first: int(nan/inf) raises (fuzz)
            raise InputError(path, f"line {n}: class index {cols[0]} is not one of 0..{num_classes - 1} "
                                   "(data.yaml names)")
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            raise InputError(path, f"line {n}: coordinates must be normalised to [0, 1], got {' '.join(cols[1:])}")
        if len(cols) > 5:  # polygon -> its box (ultralytics segments2boxes)
            xs, ys = values[0::2], values[1::2]
            values = np.array([(xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2, xs.max() - xs.min(),
                               ys.max() - ys.min()])
        boxes.append(values)
        classes.append(int(cls))
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(classes, np.int64)


def to_xyxy(cxcywh: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, 4) normalised ``cx cy w h`` -> float32 pixel ``xyxy`` for an image of ``size = (H, W)``."""
    h, w = size
    cx, cy, bw, bh = (cxcywh[:, k] for k in range(4))
    rel = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
    # the 6-decimal rounding of a box at the border is not "outside"
    rel = np.where((rel < 0) & (rel > -1e-6), 0.0, np.where((rel > 1) & (rel < 1 + 1e-6), 1.0, rel))
    return (rel * np.array([w, h, w, h], np.float64)).astype(np.float32)


def orphan_labels(root: str | os.PathLike[str], split: str, images: Sequence[Path]) -> list[Path]:
    """Label files without an image, in the ``labels`` folder of each image folder ``split`` names.

    Only folder entries are looked at: a ``.txt`` list may name a subset of a shared folder.
    """
    path, data = read_data_yaml(root)
    base = path.parent
    if data.get("path"):
        base = Path(str(data["path"])) if Path(str(data["path"])).is_absolute() else base / str(data["path"])
    entries = data.get("validation" if split == "val" and "val" not in data else split) or []
    have = {label_path(p) for p in images}
    out = []
    for entry in entries if isinstance(entries, list) else [entries]:
        folder = _resolve(base, str(entry))
        labels = label_path(folder / "x.jpg").parent
        if folder.is_dir() and labels != folder and labels.is_dir():
            out += [f for f in labels.rglob("*.txt") if f not in have]
    return sorted(out)


class YOLODetection(_VOCBase):
    """YOLO txt detection: ``(image, target)`` as :class:`~visiontasks.data.voc.VOCDetection`.

    Args:
        root: the folder of ``data.yaml`` (or the yaml file).
        split: a split key of ``data.yaml`` (``train``, ``val``, ``test``).
        classes: object class names (default: data.yaml's ``names``); must have as many entries.
        transforms: ``transforms(image, target)`` on tv_tensors.
        proposals: ``proposals(image_id) -> (R, 4)`` (``image_id`` = the image's file stem), or None.

    Raises:
        InputError: a bad data.yaml, a bad label row (file and line named), a label file whose image
            is missing, two images of one name, or a box wholly outside its image.
    """

    def __init__(self, root: str | os.PathLike[str], split: str = "train", classes: Sequence[str] | None = None,
                 transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None,
                 proposals: Callable[[str], torch.Tensor] | None = None) -> None:
        self.yaml_path, _ = read_data_yaml(root)
        names = yolo_classes(root)
        if classes is not None and len(tuple(classes)) != len(names):
            raise InputError(self.yaml_path, f"names: lists {len(names)} classes, data.classes {len(tuple(classes))}")
        Dataset.__init__(self)
        self.root, self.split, self.transforms, self.proposals = self.yaml_path.parent, split, transforms, proposals
        self.classes: tuple[str, ...] = tuple(classes or names)
        self.split_file = self.yaml_path
        self.files = split_images(root, split)
        for orphan in orphan_labels(root, split, self.files):
            raise InputError(orphan, "label file without an image (no image of this name in the split's images folder)")
        self.ids = [p.stem for p in self.files]
        if len(set(self.ids)) != len(self.ids):
            seen: dict[str, Path] = {}
            for p in self.files:
                if p.stem in seen:
                    raise InputError(p, f"two images named {p.stem!r} in split {split!r} (also {seen[p.stem]})")
                seen[p.stem] = p
        self._sizes = [image_size(p) for p in self.files]
        self._boxes, self._labels = [], []
        clipped, first = 0, None
        for p, size in zip(self.files, self._sizes):
            rel, cls = parse_label_file(label_path(p), len(self.classes))
            boxes, changed = clip_boxes(to_xyxy(rel, size), size, label_path(p), inclusive=False)
            clipped, first = clipped + changed, first or (label_path(p).name if changed else None)
            self._boxes.append(boxes)
            self._labels.append(cls + 1)
        warn_clipped(clipped, first, self.yaml_path)

    def image_path(self, index: int) -> Path:
        """Path of the image file of item ``index``."""
        return self.files[index]

    def expected_size(self, index: int) -> tuple[int, int]:
        """``(height, width)`` of item ``index`` (its header, read at construction)."""
        return self._sizes[index]

    def get_annotation(self, index: int) -> dict[str, Any]:
        """The target of item ``index`` without decoding its image (fresh tensors)."""
        n = len(self._labels[index])
        return {
            "boxes": torch.from_numpy(self._boxes[index].copy()),
            "labels": torch.from_numpy(self._labels[index].copy()),
            "difficult": torch.zeros(n, dtype=torch.bool),
            "image_id": self.ids[index],
            "orig_size": torch.tensor(self._sizes[index], dtype=torch.int64),
        }


def yolo_dataset_classes(cfg_data: Mapping[str, Any]) -> tuple[str, ...]:
    """Class names for a ``data:`` section of dataset ``yolo`` (``data.classes`` or data.yaml's)."""
    if cfg_data.get("classes"):
        return tuple(cfg_data["classes"])
    if not cfg_data.get("root"):
        raise ValueError("dataset 'yolo' needs data.root (the folder of data.yaml)")
    return yolo_classes(cfg_data["root"])
