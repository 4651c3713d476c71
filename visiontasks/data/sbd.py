"""SBD, the Semantic Boundaries Dataset (Hariharan et al., ICCV 2011): the data FCN, DeconvNet and the
dilated networks trained on, and the splits they built from it with PASCAL VOC.

Layout of the release (``benchmark.tgz`` → ``benchmark_RELEASE/dataset/``; ``data.root`` is that
``dataset`` folder): ``img/<id>.jpg``, ``cls/<id>.mat``, ``inst/<id>.mat``, ``train.txt`` (8,498
ids) and ``val.txt`` (2,857), one id a line. Each ``cls`` file holds a MATLAB struct ``GTcls`` whose
``Segmentation`` is the (H, W) uint8 class map, 0 = background, 1..20 = VOC's classes in VOC's
order; ``inst`` files hold ``GTinst.Segmentation``, the (H, W) instance map (0 = none, 1..N). VOC's
PNGs mark object borders 255 ("void"); the reference readers take the SBD maps as they are, and a
255 in them is ignored here as in VOC's (any other value beyond the classes is an error). They are
read as the reference readers do, through
``scipy.io.loadmat``: ``mat['GTcls'][0]['Segmentation'][0]`` (shelhamer/fcn.berkeleyvision.org
@1305c73, ``voc_layers.py`` l. 223-232, ``SBDDSegDataLayer.load_label``; ``data/pascal/convert_sbdd.py``
l. 42-43 for ``cls`` and ``inst``; torchvision's ``SBDataset``, chainercv's
``SBDInstanceSegmentationDataset._load_label_inst``).

Splits: ``train``, ``val`` or any ``root/<name>.txt`` (read from SBD), ``voc:<name>`` (the ids of
``voc_root/ImageSets/Segmentation/<name>.txt``, read from VOC), FCN's ``seg11valid`` and the
``train_aug`` union; the last two are computed from the lists on disk as the reference
repositories define them (:mod:`visiontasks.data.sbd_splits`, with the citations).

Files are checked to exist at construction; a ``.mat`` is parsed when its item is read (an SBD
split has ~10k of them), and a malformed one is an ``InputError`` naming it.

Shape shorthand: H, W = image height and width.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from visiontasks.data.mat_check import check_mat_elements
from visiontasks.data.palette import read_label_png
from visiontasks.data.sbd_splits import (SEG11VALID_SIZE, TRAIN_AUG_SIZE, read_id_list, seg11valid_ids,
                                         train_aug_ids, warn_size)
from visiontasks.data.transforms import apply_transforms
from visiontasks.data.voc import image_size, read_image
from visiontasks.errors import InputError
from visiontasks.tasks import VOC_CLASSES

__all__ = ["SBDSegmentation", "build_sbd_dataset", "load_sbd_mat"]

_STRUCTS = {"cls": "GTcls", "inst": "GTinst"}


def load_sbd_mat(path: str | os.PathLike[str], kind: str = "cls") -> np.ndarray:
    """The (H, W) int64 ``Segmentation`` map of an SBD ``cls`` (``GTcls``) or ``inst`` (``GTinst``) file.

    Raises:
        InputError: the file is missing, unreadable, truncated, not a MATLAB file, lacks the
            struct or its ``Segmentation`` field, or that field is not a 2-D integer map.
    """
    if kind not in _STRUCTS:
        raise ValueError(f"kind must be one of {tuple(_STRUCTS)}, got {kind!r}")
    import scipy.io

    struct = _STRUCTS[kind]
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(path, f"SBD {kind} file not found") from None
    except OSError as exc:
        raise InputError(path, f"cannot read MATLAB file ({type(exc).__name__}: {exc.strerror})") from None
    problem = check_mat_elements(data)  # what would crash scipy's reader (a segfault, no exception)
    if problem:
        raise InputError(path, f"cannot read MATLAB file (truncated or corrupt?): {problem}")
    try:
        mat = scipy.io.loadmat(io.BytesIO(data))
    except Exception as exc:  # scipy raises MatReadError, OSError, ValueError, IndexError… on bad bytes
        raise InputError(path, f"cannot read MATLAB file (truncated or corrupt?): {type(exc).__name__}: "
                               f"{' '.join(str(exc).split())}") from None
    value = mat.get(struct)
    if not isinstance(value, np.ndarray) or value.dtype.names is None or "Segmentation" not in value.dtype.names:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise InputError(path, f"no struct {struct} with a Segmentation field (variables: {found})")
    if value.size == 0:
        raise InputError(path, f"{struct} is an empty struct array")
    seg = np.asarray(value["Segmentation"].flat[0])
    if seg.ndim != 2 or seg.size == 0:
        raise InputError(path, f"{struct}.Segmentation has shape {seg.shape}, not a 2-D (H, W) map")
    if seg.dtype.kind == "f" and np.all(np.isfinite(seg)) and np.array_equal(seg, np.round(seg)):
        if np.abs(seg).max() >= 2.0 ** 62:  # would not survive the cast to int64 (found by the fuzzing)
            raise InputError(path, f"{struct}.Segmentation holds label {np.abs(seg).max():g}, not a class index")
        seg = seg.astype(np.int64)
    if seg.dtype.kind not in "iub":
        raise InputError(path, f"{struct}.Segmentation holds {seg.dtype} values, not integer labels")
    if seg.dtype == np.uint64 and seg.max() > np.iinfo(np.int64).max:  # would wrap to a negative label
        raise InputError(path, f"{struct}.Segmentation holds label {int(seg.max())}, not a class index")
    return seg.astype(np.int64)


def build_sbd_dataset(cfg_data: Mapping[str, Any], split: str, task: str,
                      transforms: Callable[[Any, Any], tuple[Any, Any]] | None,
                      classes: Sequence[str] | None = None) -> "SBDSegmentation":
    """``data.dataset: sbd`` (``visiontasks.data.factory``): ``data.root`` is SBD's ``dataset`` folder,
    ``data.voc_root`` the VOC folder of ``seg11valid`` / ``train_aug``.

    Raises:
        ValueError: another task than segmentation, no ``data.root``, or keys of other datasets.
    """
    if task != "segmentation":
        raise ValueError(f"dataset 'sbd' supports task 'segmentation' only, got {task!r}")
    for key in ("extra_train_roots", "proposals", "test_proposals"):
        if cfg_data.get(key):
            raise ValueError(f"data.{key} does not apply to dataset 'sbd'")
    if not cfg_data.get("root"):
        raise ValueError("dataset 'sbd' needs data.root (SBD's benchmark_RELEASE/dataset folder: img/, cls/, "
                         "train.txt, val.txt)")
    return SBDSegmentation(cfg_data["root"], split, classes=classes, transforms=transforms,
                           voc_root=cfg_data.get("voc_root"))


class SBDSegmentation(Dataset):
    """SBD semantic segmentation, alone or with VOC: ``(image, target)`` with ``mask`` (H, W) int64.

    Args:
        root: SBD's ``dataset`` folder (``img/``, ``cls/``, ``inst/``, ``train.txt``, ``val.txt``).
        split: ``train``, ``val`` (or any ``root/<split>.txt``), ``seg11valid``, ``train_aug`` or
            ``voc:<name>`` (module docstring).
        classes: object class names (default :data:`VOC_CLASSES`); labels must lie in
            ``0..len(classes)`` or be 255 (ignored).
        transforms: ``transforms(image, target)`` on tv_tensors.
        voc_root: the VOC-layout folder of ``seg11valid`` (VOC2011), ``train_aug`` and ``voc:<name>``
            (VOC2012).

    Raises:
        InputError: a missing list, image, ``.mat`` or PNG (named), or a seg11valid list that
            shares images with SBD train; bad ``.mat`` contents when an item is read.
    """

    def __init__(self, root: str | os.PathLike[str], split: str = "train", classes: Sequence[str] | None = None,
                 transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None,
                 voc_root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root)
        self.split = split
        self.voc_root = Path(voc_root) if voc_root is not None else None
        self.classes: tuple[str, ...] = tuple(VOC_CLASSES if classes is None else classes)
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be non-empty and unique, got {classes!r}")
        self.transforms = transforms
        if not self.root.is_dir():
            raise InputError(self.root, "SBD dataset folder not found (the benchmark_RELEASE/dataset folder)")
        if split == "seg11valid":
            ids, from_sbd = self._seg11valid(), set()
        elif split.startswith("voc:"):
            self.split_file = self._voc(f"split {split!r}") / f"{split[4:]}.txt"
            ids, from_sbd = list(dict.fromkeys(read_id_list(self.split_file))), set()
        elif split == "train_aug":
            ids, from_sbd = self._train_aug()
        else:
            self.split_file = self.root / f"{split}.txt"
            ids = list(dict.fromkeys(read_id_list(self.split_file)))
            from_sbd = set(ids)
        self.ids: list[str] = ids
        self._from_sbd = [i in from_sbd for i in ids]
        self._sizes: dict[int, tuple[int, int]] = {}
        self._check_files()

    def _voc(self, what: str) -> Path:
        if self.voc_root is None:
            raise ValueError(f"split {self.split!r} needs voc_root (data.voc_root), the VOC folder of {what}")
        if not self.voc_root.is_dir():
            raise InputError(self.voc_root, "VOC dataset folder not found")
        return self.voc_root / "ImageSets" / "Segmentation"

    def _seg11valid(self) -> list[str]:
        sets = self._voc("VOC2011 (ImageSets/Segmentation/val.txt, JPEGImages/, SegmentationClass/)")
        sbd_train_file = self.root / "train.txt"
        listed = sets / "seg11valid.txt"
        if listed.is_file():
            self.split_file = listed
            ids = read_id_list(listed)
            if sbd_train_file.is_file():
                shared = sorted(set(ids) & set(read_id_list(sbd_train_file)))
                if shared:
                    raise InputError(listed, f"{len(shared)} of its images are in SBD's {sbd_train_file} "
                                             f"(e.g. {shared[0]}); seg11valid must exclude SBD train")
            return list(dict.fromkeys(ids))
        self.split_file = sets / "val.txt"
        voc_val, sbd_train = read_id_list(self.split_file), read_id_list(sbd_train_file)
        ids = seg11valid_ids(voc_val, sbd_train)
        warn_size("seg11valid", len(ids), SEG11VALID_SIZE, {"voc11_val": len(voc_val), "sbd_train": len(sbd_train)})
        return ids

    def _train_aug(self) -> tuple[list[str], set[str]]:
        sets = self._voc("VOC2012 (ImageSets/Segmentation/train.txt and val.txt)")
        self.split_file = self.root / "train.txt"
        sbd_train, sbd_val = read_id_list(self.split_file), read_id_list(self.root / "val.txt")
        voc_train, voc_val = read_id_list(sets / "train.txt"), read_id_list(sets / "val.txt")
        ids = train_aug_ids(sbd_train, sbd_val, voc_train, voc_val)
        warn_size("train_aug", len(ids), TRAIN_AUG_SIZE, {"sbd_train": len(sbd_train), "sbd_val": len(sbd_val),
                                                           "voc12_train": len(voc_train), "voc12_val": len(voc_val)})
        return ids, (set(sbd_train) | set(sbd_val)) - set(voc_train)  # VOC's own PNG first (module docstring)

    def _check_files(self) -> None:
        listings: dict[Path, set[str]] = {}
        for k, image_id in enumerate(self.ids):
            for path in (self.image_path(k), self.mask_path(k)):
                if path.name not in listings.setdefault(path.parent, set(os.listdir(path.parent))
                                                        if path.parent.is_dir() else set()):
                    raise InputError(path, f"image {image_id!r} of split {self.split!r} ({self.split_file}) "
                                           "has no such file")

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        """The JPEG of item ``index`` (SBD's ``img/`` or VOC's ``JPEGImages/``)."""
        if self._from_sbd[index]:
            return self.root / "img" / f"{self.ids[index]}.jpg"
        return self.voc_root / "JPEGImages" / f"{self.ids[index]}.jpg"

    def mask_path(self, index: int) -> Path:
        """The label file of item ``index`` (SBD's ``cls/<id>.mat`` or VOC's ``SegmentationClass/<id>.png``)."""
        if self._from_sbd[index]:
            return self.root / "cls" / f"{self.ids[index]}.mat"
        return self.voc_root / "SegmentationClass" / f"{self.ids[index]}.png"

    def expected_size(self, index: int) -> tuple[int, int]:
        """``(height, width)`` of item ``index``'s image header (its mask is checked against it when read)."""
        if index not in self._sizes:
            self._sizes[index] = image_size(self.image_path(index))
        return self._sizes[index]

    def _mask(self, index: int) -> np.ndarray:
        path = self.mask_path(index)
        mask = load_sbd_mat(path, "cls") if self._from_sbd[index] else read_label_png(path).astype(np.int64)
        size = self.expected_size(index)
        if tuple(mask.shape) != size:
            raise InputError(path, f"label map is {tuple(mask.shape)} (H, W) but its image is {size}")
        bad = ((mask < 0) | (mask > len(self.classes))) & (mask != 255)
        if bad.any():
            value = int(mask[bad].max() if (mask[bad] > 0).any() else mask[bad].min())
            raise InputError(path, f"label map holds label {value}, outside 0..{len(self.classes)} "
                                   f"({len(self.classes)} classes) and 255")
        return mask

    def get_annotation(self, index: int) -> dict[str, Any]:
        """``{"mask", "image_id", "orig_size"}`` of item ``index`` without decoding its image."""
        return {"mask": torch.from_numpy(self._mask(index)), "image_id": self.ids[index],
                "orig_size": torch.tensor(self.expected_size(index), dtype=torch.int64)}

    def get_instances(self, index: int) -> dict[str, Any]:
        """SBD's instances of item ``index``: ``inst/<id>.mat`` with each instance's class from ``cls``.

        Returns:
            ``{"instance_mask": (H, W) int64, 0 = none, "instance_ids": (N,) int64, "labels": (N,) int64}``.

        Raises:
            ValueError: the item comes from VOC (train_aug's VOC-only images, seg11valid).
            InputError: a bad ``inst`` file, or an instance covering several classes.
        """
        if not self._from_sbd[index]:
            raise ValueError(f"image {self.ids[index]!r} comes from VOC, not SBD: no inst/*.mat")
        path = self.root / "inst" / f"{self.ids[index]}.mat"
        inst, cls = load_sbd_mat(path, "inst"), self._mask(index)
        if inst.shape != cls.shape:
            raise InputError(path, f"instance map is {inst.shape} (H, W) but the class map is {cls.shape}")
        ids = np.array([i for i in np.unique(inst) if i not in (0, 255)], dtype=np.int64)
        labels = []
        for i in ids:
            classes = np.unique(cls[(inst == i) & (cls != 255)])
            if len(classes) != 1:
                raise InputError(path, f"instance {int(i)} covers classes {classes.tolist()} of the class map")
            labels.append(int(classes[0]))
        return {"instance_mask": torch.from_numpy(np.where(inst == 255, 0, inst)),
                "instance_ids": torch.from_numpy(ids), "labels": torch.tensor(labels, dtype=torch.int64)}

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        target = self.get_annotation(index)
        image = read_image(self.image_path(index))
        if tuple(image.shape[-2:]) != self.expected_size(index):
            raise InputError(self.image_path(index), f"decoded image is {tuple(image.shape[-2:])} (H, W) but its "
                                                     f"header says {self.expected_size(index)}")
        return apply_transforms(self.transforms, image, target)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
                f"from_sbd={sum(self._from_sbd)}, classes={len(self.classes)})")
