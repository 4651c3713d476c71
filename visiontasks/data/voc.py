"""PASCAL VOC-layout datasets (detection and semantic segmentation).

``root`` is the folder holding ``Annotations/``, ``JPEGImages/``, ``ImageSets/Main|Segmentation/``
and ``SegmentationClass/`` (e.g. ``VOCdevkit/VOC2007``). Every listed file is checked and every
annotation parsed at construction, so that errors appear at start and evaluators can read the
ground truth with :meth:`VOCDetection.get_annotation` without decoding images.

Shape shorthand: H, W = image height and width; N = objects in an image.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from visiontasks.data.annotation import VOCAnnotation, clip_boxes, parse_voc_xml, warn_clipped
from visiontasks.data.palette import read_label_png
from visiontasks.data.transforms import apply_transforms
from visiontasks.errors import InputError
from visiontasks.tasks import VOC_CLASSES

__all__ = ["VOC_CLASSES", "VOCDetection", "VOCSegmentation", "read_image", "image_size", "read_split_ids"]


def _to_rgb(img: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a PIL image; 16- and 32-bit greyscale are scaled to 8 bits, not clipped."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        wide = np.asarray(img, dtype=np.float64)
        bits = 16 if img.mode.startswith("I;16") or wide.max(initial=0) <= 65535 else 32
        grey = np.clip(np.rint(wide * (255.0 / (2 ** bits - 1))), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode == "F":  # float greyscale: 0..1 as in the toolkit's images
        grey = np.clip(np.rint(np.asarray(img, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(img.convert("RGB"))


def _pil_error(path: str | os.PathLike[str], exc: BaseException, what: str) -> InputError:
    if isinstance(exc, IsADirectoryError) or Path(path).is_dir():
        return InputError(path, "is a folder, not an image file")
    if isinstance(exc, Image.DecompressionBombError):
        return InputError(path, f"image too large to decode safely (a possible decompression bomb: over twice "
                                f"PIL's Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS} pixels; raise that limit "
                                "if the file is trusted)")
    return InputError(path, f"{what} ({exc})")


def read_image(path: str | os.PathLike[str]) -> torch.Tensor:
    """Decodes an image file to a (3, H, W) uint8 RGB tensor.

    Greyscale is expanded to 3 channels (16-bit greyscale scaled to 8 bits), alpha is dropped,
    palette images are mapped through their palette. EXIF orientation is not applied: the pixels
    are the stored ones, the frame annotation coordinates refer to.

    Raises:
        InputError: the file is missing, a folder, not a decodable image, or larger than PIL's
            decompression-bomb limit.
    """
    try:
        with Image.open(path) as img:
            array = _to_rgb(img)
    except FileNotFoundError:
        raise InputError(path, "image file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _pil_error(path, exc, "cannot decode image") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(height, width)`` of an image file, read from its header (no decoding)."""
    try:
        with Image.open(path) as img:
            w, h = img.size
    except FileNotFoundError:
        raise InputError(path, "image file not found") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise _pil_error(path, exc, "cannot read image header") from None
    return h, w


def _read_split(root: Path, sets_dir: str, split: str) -> list[str]:
    if not root.is_dir():
        raise InputError(root, "dataset folder not found")
    path = root / "ImageSets" / sets_dir / f"{split}.txt"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(path, f"split file for split {split!r} not found") from None
    except UnicodeDecodeError:
        raise InputError(path, "split file is not UTF-8 text") from None
    return [line.split()[0] for line in lines if line.strip()]


def _check_listed(folder: Path, ids: Sequence[str], suffix: str, split_file: Path) -> None:
    present = set(os.listdir(folder)) if folder.is_dir() else set()
    for image_id in ids:
        if image_id + suffix not in present:
            raise InputError(folder / (image_id + suffix), f"listed in {split_file} but missing")


def read_split_ids(root: str | os.PathLike[str], split: str, sets_dir: str = "Main") -> list[str]:
    """Image ids of ``root/ImageSets/<sets_dir>/<split>.txt``, each checked to have its JPEG."""
    root = Path(root)
    ids = _read_split(root, sets_dir, split)
    _check_listed(root / "JPEGImages", ids, ".jpg", root / "ImageSets" / sets_dir / f"{split}.txt")
    return ids


class _VOCBase(Dataset):
    """Shared split reading, file checks and image decoding."""

    _sets_dir = "Main"

    def __init__(self, root: str | os.PathLike[str], split: str, classes: Sequence[str] | None,
                 transforms: Callable[[Any, Any], tuple[Any, Any]] | None) -> None:
        self.root = Path(root)
        self.split = split
        self.classes: tuple[str, ...] = tuple(VOC_CLASSES if classes is None else classes)
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be non-empty and unique, got {classes!r}")
        self.transforms = transforms
        self.ids: list[str] = _read_split(self.root, self._sets_dir, split)
        self.split_file = self.root / "ImageSets" / self._sets_dir / f"{split}.txt"
        _check_listed(self.root / "JPEGImages", self.ids, ".jpg", self.split_file)

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        """Path of the JPEG of item ``index``."""
        return self.root / "JPEGImages" / f"{self.ids[index]}.jpg"

    def get_annotation(self, index: int) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        target = self.get_annotation(index)
        image = read_image(self.image_path(index))
        size = tuple(int(s) for s in target["orig_size"])
        if tuple(image.shape[-2:]) != size:
            raise InputError(self.image_path(index),
                             f"image is {tuple(image.shape[-2:])} (H, W) but its annotation says {size}")
        proposals = getattr(self, "proposals", None)
        if proposals is not None:
            target["proposals"] = proposals(self.ids[index])
        return apply_transforms(self.transforms, image, target)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"n={len(self)}, classes={len(self.classes)})")


class VOCDetection(_VOCBase):
    """VOC detection: ``(image, target)`` with boxes, labels, difficult, image_id, orig_size.

    Args:
        root: VOC-layout folder.
        split: name of ``ImageSets/Main/<split>.txt`` (e.g. "trainval", "test").
        classes: object class names (default :data:`VOC_CLASSES`); an object of another class
            is an error.
        transforms: ``transforms(image, target)`` on tv_tensors (see ``visiontasks.data.transforms``).
        proposals: ``proposals(image_id) -> (R, 4)`` float32 xyxy in original pixels (e.g. a
            ``ProposalStore`` reading one file per image); the item's target then carries
            ``proposals``, transformed with the image. None: no proposals.

    Raises:
        InputError: a missing split file, image or annotation, or a bad annotation file.
    """

    _sets_dir = "Main"

    def __init__(self, root: str | os.PathLike[str], split: str = "trainval", classes: Sequence[str] | None = None,
                 transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None,
                 proposals: Callable[[str], torch.Tensor] | None = None) -> None:
        super().__init__(root, split, classes, transforms)
        self.proposals = proposals
        ann_dir = self.root / "Annotations"
        _check_listed(ann_dir, self.ids, ".xml", self.split_file)
        self._annotations: list[VOCAnnotation] = [parse_voc_xml(ann_dir / f"{i}.xml", self.classes) for i in self.ids]
        self._sizes = [a.size if a.size is not None else image_size(self.image_path(k))
                       for k, a in enumerate(self._annotations)]
        clipped, first = 0, None
        for k, (ann, size) in enumerate(zip(self._annotations, self._sizes)):
            boxes, changed = clip_boxes(ann.boxes, size, ann_dir / f"{self.ids[k]}.xml")
            if changed:
                self._annotations[k] = VOCAnnotation(boxes, ann.labels, ann.difficult, ann.size)
                clipped, first = clipped + changed, first or f"{self.ids[k]}.xml"
        warn_clipped(clipped, first, self.split_file)

    def expected_size(self, index: int) -> tuple[int, int]:
        """``(height, width)`` of item ``index`` as the annotation gives it (no image decoding)."""
        return self._sizes[index]

    def get_annotation(self, index: int) -> dict[str, Any]:
        """The target of item ``index`` without decoding its image (fresh tensors)."""
        ann = self._annotations[index]
        return {
            "boxes": torch.from_numpy(ann.boxes.copy()),
            "labels": torch.from_numpy(ann.labels.copy()),
            "difficult": torch.from_numpy(ann.difficult.copy()),
            "image_id": self.ids[index],
            "orig_size": torch.tensor(self._sizes[index], dtype=torch.int64),
        }


class VOCSegmentation(_VOCBase):
    """VOC semantic segmentation: ``(image, target)`` with ``mask`` (H, W) int64 (255 = ignore).

    Masks are palette PNGs in ``SegmentationClass/``; their palette indices are the labels.

    Args:
        root: VOC-layout folder.
        split: name of ``ImageSets/Segmentation/<split>.txt`` (e.g. "train", "val").
        classes: object class names (default :data:`VOC_CLASSES`); mask values must lie in
            ``0..len(classes)`` or be 255.
        transforms: ``transforms(image, target)`` on tv_tensors.

    Raises:
        InputError: a missing split file, image or mask, or a mask whose size differs from its image.
    """

    _sets_dir = "Segmentation"

    def __init__(self, root: str | os.PathLike[str], split: str = "train", classes: Sequence[str] | None = None,
                 transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None) -> None:
        super().__init__(root, split, classes, transforms)
        _check_listed(self.root / "SegmentationClass", self.ids, ".png", self.split_file)
        self._sizes: list[tuple[int, int]] = []
        for k in range(len(self.ids)):
            size, mask_size = image_size(self.image_path(k)), image_size(self.mask_path(k))
            if size != mask_size:
                raise InputError(self.mask_path(k), f"mask is {mask_size} (H, W) but its image is {size}")
            self._sizes.append(size)

    def expected_size(self, index: int) -> tuple[int, int]:
        """``(height, width)`` of item ``index`` (its image's header, checked against its mask's)."""
        return self._sizes[index]

    def mask_path(self, index: int) -> Path:
        """Path of the label PNG of item ``index``."""
        return self.root / "SegmentationClass" / f"{self.ids[index]}.png"

    def get_annotation(self, index: int) -> dict[str, Any]:
        """``{"mask", "image_id", "orig_size"}`` of item ``index`` without decoding its image."""
        path = self.mask_path(index)
        mask = read_label_png(path)
        bad = (mask > len(self.classes)) & (mask != 255)
        if bad.any():
            raise InputError(path, f"mask holds label {int(mask[bad].max())}, beyond the {len(self.classes)} classes")
        return {
            "mask": torch.from_numpy(mask.astype(np.int64)),
            "image_id": self.ids[index],
            "orig_size": torch.tensor(self._sizes[index], dtype=torch.int64),
        }
