"""Datasets from the ``data:`` section of a config (see docs/CONTRACTS.md, "Configs").

Keys used: ``dataset`` (voc | embedded | coco | sbd, :mod:`visiontasks.data.sbd` with ``voc_root`` | yolo,
:mod:`visiontasks.data.yolo_txt`, ``root`` = the folder of data.yaml | labelme, :mod:`visiontasks.data.labelme`),
``root``, ``classes``, ``hflip_prob``, ``vflip_prob`` and ``scale_range`` (segmentation),
``photometric``, ``jitter`` / ``saturation`` / ``exposure`` (YOLO's augmentation), ``min_size``,
``max_size``, ``crop_size`` and, for coco, ``images`` /
``annotations`` (train split) and ``test_images`` / ``test_annotations`` (the ``test_split``;
they default to the former). ``proposals`` / ``test_proposals`` name proposal directories
(``tools/propose.py``) for detectors fed precomputed proposals; ``test_proposals`` defaults to
``proposals``. The value ``auto`` computes them on first use with the model's proposal method
(the ``make_proposals`` callable the caller passes: data knows no model) into a cache folder (``$VISIONTASKS_HOME/proposals/<dataset>-<parameters>``, resumable; VOC layout
and the embedded set only). Other keys (``num_workers``, split names) are the caller's.
For ``embedded``, ``root`` is the cache folder in which the dataset is generated (null: the default).
``extra_train_roots`` (voc only) lists more VOC-layout folders whose ``train_split`` is appended to
``root``'s — the papers' "07+12" (:mod:`visiontasks.data.concat`); other splits come from ``root``.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from torch.utils.data import Dataset

from visiontasks.data.coco import COCODetection, coco_classes
from visiontasks.data.concat import ConcatSplits
from visiontasks.data.embedded import EMBEDDED_CLASSES, build_embedded_dataset, default_cache_dir
from visiontasks.data.proposals import ProposalStore
from visiontasks.data.rescale import check_ratio_range
from visiontasks.data.transforms import build_detection_transforms, build_segmentation_transforms
from visiontasks.data.voc import VOC_CLASSES, VOCDetection, VOCSegmentation
from visiontasks.errors import InputError
from visiontasks.tasks import TASKS

__all__ = ["build_dataset", "dataset_classes", "open_dataset", "proposal_dir", "auto_proposal_dir", "DATASETS",
           "MakeProposals"]

#: ``make_proposals(root, split, out, workers)``: proposes every image of a VOC-layout split without a file
#: in the folder ``out`` (resumable), e.g. ``Detector.make_proposals`` with the model's own proposal method.
MakeProposals = Callable[[Any, str, Path, int], Any]

DATASETS = ("voc", "embedded", "coco", "sbd", "yolo", "labelme")


def _kind(cfg_data: Mapping[str, Any]) -> str:
    kind = cfg_data.get("dataset", "voc")
    if kind not in DATASETS:
        raise ValueError(f"data.dataset must be one of {DATASETS}, got {kind!r}")
    return kind


def _coco_paths(cfg_data: Mapping[str, Any], split: str | None) -> tuple[Any, Any]:
    images, annotations = cfg_data.get("images"), cfg_data.get("annotations")
    if split is not None and split == cfg_data.get("test_split") and cfg_data.get("test_annotations"):
        images = cfg_data.get("test_images") or images
        annotations = cfg_data["test_annotations"]
    if not images or not annotations:
        raise ValueError(f"dataset 'coco' needs data.images and data.annotations, got {images!r} and {annotations!r}")
    return images, annotations


def dataset_classes(cfg_data: Mapping[str, Any]) -> tuple[str, ...]:
    """Object class names (background excluded) that :func:`build_dataset` would use."""
    kind = _kind(cfg_data)
    if cfg_data.get("classes"):
        return tuple(cfg_data["classes"])
    if kind in ("voc", "sbd"):
        return VOC_CLASSES
    if kind == "embedded":
        return EMBEDDED_CLASSES
    if kind in ("yolo", "labelme"):
        return _own_format_classes(cfg_data, kind)
    annotations = cfg_data.get("annotations") or cfg_data.get("test_annotations")
    if not annotations:
        raise ValueError("dataset 'coco' needs data.annotations to know its classes")
    return coco_classes(annotations)


def proposal_dir(cfg_data: Mapping[str, Any], split: str | None) -> str | None:
    """The proposal directory of ``split`` (``test_proposals`` for the test split, else ``proposals``)."""
    if split is not None and split == cfg_data.get("test_split") and cfg_data.get("test_proposals"):
        return str(cfg_data["test_proposals"])
    return str(cfg_data["proposals"]) if cfg_data.get("proposals") else None


def auto_proposal_dir(root: str | os.PathLike[str], params: Mapping[str, Any]) -> Path:
    """The cache folder of ``data.proposals: auto`` for a dataset root and proposal parameters."""
    key = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:10]
    tag = hashlib.sha1(json.dumps(dict(params), sort_keys=True).encode()).hexdigest()[:10]
    return default_cache_dir() / "proposals" / f"{Path(root).name}-{key}" / f"{params.get('method', 'proposals')}-{tag}"


def _auto_proposals(cfg_data: Mapping[str, Any], kind: str, split: str, proposal_params: Mapping[str, Any] | None,
                    make_proposals: MakeProposals | None, root: str | os.PathLike[str] | None) -> Path:
    """``data.proposals: auto`` for the VOC-layout folder ``root`` (None only for coco, refused)."""
    if proposal_params is None:
        raise ValueError("data.proposals: auto needs a model that names its proposal method (proposal_params)")
    if kind == "coco" or root is None:
        raise ValueError("data.proposals: auto supports VOC-layout datasets (voc, embedded); for coco run "
                         "tools/propose.py and set data.proposals to its folder")
    if make_proposals is None:
        raise ValueError("data.proposals: auto needs the model's make_proposals to compute them; run "
                         "tools/propose.py and set data.proposals to its folder")
    out = auto_proposal_dir(root, proposal_params)
    make_proposals(root, split, out, max(1, int(cfg_data.get("num_workers") or 1)))
    return out


def _roots(cfg_data: Mapping[str, Any], kind: str, split: str) -> list[Any]:
    """``data.root`` (the embedded cache folder for ``embedded``), then, for the training split,
    ``data.extra_train_roots``."""
    extra = list(cfg_data.get("extra_train_roots") or [])
    if extra and kind != "voc":
        raise ValueError(f"data.extra_train_roots applies to dataset 'voc' only, got dataset {kind!r}")
    if kind == "embedded":
        return [build_embedded_dataset(cfg_data.get("root"))]
    root = cfg_data.get("root")
    if not root:
        raise ValueError("dataset 'voc' needs data.root (the folder holding Annotations/, JPEGImages/ …)")
    for k, other in enumerate(extra):
        if not isinstance(other, (str, os.PathLike)) or not str(other):
            raise ValueError(f"data.extra_train_roots[{k}] must be a folder path, got {other!r}")
    return [root, *extra] if split == cfg_data.get("train_split", "trainval") else [root]


def _check_proposal_files(store: Any, ids: list[str]) -> None:
    """Every image of the split has its proposals file (checked up front, not mid-training)."""
    if store is None:
        return
    missing = [i for i in ids if not store.has(i)]
    if missing:
        raise InputError(store.path(missing[0]), f"proposals file for image {missing[0]!r} not found ({len(missing)} "
                                                 f"of the split's {len(ids)} images lack one); run tools/propose.py "
                                                 "for this split into that folder")


def build_dataset(cfg_data: Mapping[str, Any], split: str, train: bool, task: str = "detection",
                  proposal_params: Mapping[str, Any] | None = None,
                  make_proposals: MakeProposals | None = None) -> Dataset:
    """Builds the dataset of one split with its transforms.

    Args:
        cfg_data: the config's ``data:`` section.
        split: split name (``ImageSets/Main|Segmentation/<split>.txt``; for coco it picks the
            test files when it equals ``test_split``).
        train: training transforms (random flip, photometric jitter, crop) or evaluation ones.
        task: "detection" or "segmentation".
        proposal_params: the proposal method the model asks for; with a proposal directory in
            ``cfg_data`` each item carries ``target["proposals"]`` read from it, and a directory
            made with other parameters is refused (``InputError`` naming its manifest).
        make_proposals: computes the proposals of ``data.proposals: auto`` (:data:`MakeProposals`;
            the model's ``make_proposals``); needed only for ``auto``.

    Returns:
        A ``VOCDetection``, ``VOCSegmentation`` or ``COCODetection``; a ``ConcatSplits`` of them
        for the training split when ``data.extra_train_roots`` is set.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    kind = _kind(cfg_data)
    hflip = float(cfg_data.get("hflip_prob", 0.5))
    vflip = float(cfg_data.get("vflip_prob") or 0.0)
    photometric = bool(cfg_data.get("photometric", False))
    scale_range = cfg_data.get("scale_range")
    if task == "detection" and vflip:
        raise InputError("data.vflip_prob", f"the vertical flip is a segmentation augmentation; detection configs "
                                            f"leave it 0, got {vflip!r}")
    if task == "detection" and scale_range is not None:
        raise InputError("data.scale_range", f"the random rescale is a segmentation augmentation (detection rescales "
                                             f"with data.jitter or the model's min_size); got {scale_range!r}")
    if scale_range is not None:
        try:
            check_ratio_range(scale_range, "the range")
        except ValueError as exc:
            raise InputError("data.scale_range", str(exc)) from None
    if task == "detection":
        transforms = build_detection_transforms(train, hflip_prob=hflip, photometric=photometric,
                                                min_size=cfg_data.get("min_size"), max_size=cfg_data.get("max_size"),
                                                jitter=float(cfg_data.get("jitter", 0.0)),
                                                saturation=float(cfg_data.get("saturation", 1.0)),
                                                exposure=float(cfg_data.get("exposure", 1.0)))
    else:
        transforms = build_segmentation_transforms(train, hflip_prob=hflip, crop_size=cfg_data.get("crop_size"),
                                                   photometric=photometric, vflip_prob=vflip,
                                                   scale_range=scale_range)
    directory = proposal_dir(cfg_data, split) if task == "detection" else None

    def store_for(root: Any) -> Any:  # the proposals of one folder (auto: its own cache)
        if directory is None:
            return None
        folder = (str(_auto_proposals(cfg_data, kind, split, proposal_params, make_proposals, root))
                  if directory == "auto" else directory)
        return ProposalStore(folder, dict(proposal_params) if proposal_params is not None else None)

    if kind == "sbd":
        from visiontasks.data.sbd import build_sbd_dataset

        return build_sbd_dataset(cfg_data, split, task, transforms, dataset_classes(cfg_data))
    if kind in ("yolo", "labelme"):
        return _own_format_dataset(cfg_data, kind, split, task, transforms, store_for)
    if kind == "coco":
        if task != "detection":
            raise ValueError("dataset 'coco' supports task 'detection' only")
        if cfg_data.get("extra_train_roots"):
            raise ValueError("data.extra_train_roots applies to dataset 'voc' only, got dataset 'coco'")
        images, annotations = _coco_paths(cfg_data, split)
        store = store_for(None)
        dataset = COCODetection(images, annotations, transforms=transforms, proposals=store)
        _check_proposal_files(store, dataset.ids)
        wanted = cfg_data.get("classes")
        if wanted and tuple(wanted) != dataset.classes:
            raise ValueError(f"data.classes {list(wanted)!r} differ from the categories of {annotations}")
        return dataset
    parts = []
    for root in _roots(cfg_data, kind, split):
        if task == "detection":
            store = store_for(root)
            part = VOCDetection(root, split, classes=dataset_classes(cfg_data), transforms=transforms, proposals=store)
            _check_proposal_files(store, part.ids)
        else:
            part = VOCSegmentation(root, split, classes=dataset_classes(cfg_data), transforms=transforms)
        parts.append(part)
    return parts[0] if len(parts) == 1 else ConcatSplits(parts)


def _own_format_classes(cfg_data: Mapping[str, Any], kind: str) -> tuple[str, ...]:
    """Class names of a ``yolo`` (data.yaml's ``names``) or ``labelme`` (labels.txt / labels found) root."""
    if not cfg_data.get("root"):
        raise ValueError(f"dataset {kind!r} needs data.root")
    if kind == "yolo":
        from visiontasks.data.yolo_txt import yolo_classes

        return yolo_classes(cfg_data["root"])
    from visiontasks.data.labelme import labelme_classes

    return labelme_classes(cfg_data["root"])


def _own_format_dataset(cfg_data: Mapping[str, Any], kind: str, split: str, task: str, transforms: Any,
                        store_for: Callable[[Any], Any]) -> Dataset:
    """A ``yolo`` or ``labelme`` split (detection; labelme also segmentation)."""
    if cfg_data.get("extra_train_roots"):
        raise ValueError(f"data.extra_train_roots applies to dataset 'voc' only, got dataset {kind!r}")
    classes = dataset_classes(cfg_data)
    if kind == "yolo":
        from visiontasks.data.yolo_txt import YOLODetection

        if task != "detection":
            raise ValueError("dataset 'yolo' supports task 'detection' only")
        store = store_for(None)
        dataset = YOLODetection(cfg_data["root"], split, classes=classes, transforms=transforms, proposals=store)
    else:
        from visiontasks.data.labelme import LabelMeDetection, LabelMeSegmentation

        if task != "detection":
            return LabelMeSegmentation(cfg_data["root"], split, classes=classes, transforms=transforms)
        store = store_for(None)
        dataset = LabelMeDetection(cfg_data["root"], split, classes=classes, transforms=transforms, proposals=store)
    _check_proposal_files(store, dataset.ids)
    return dataset


def open_dataset(kind: str, root: Any, split: str, classes: Any = None, task: str = "detection") -> Dataset:
    """A split of a ``voc``, ``yolo`` or ``labelme`` folder without transforms (for ``tools/eval.py --dataset``).

    Args:
        kind: ``voc``, ``yolo`` or ``labelme`` (COCO is opened from its images folder and json).
        root: the dataset folder (the folder of data.yaml for ``yolo``).
        split: the split name.
        classes: class names (default: the format's own; VOC's 20 for ``voc``).
        task: ``detection`` or ``segmentation`` (``voc`` and ``labelme``).

    Returns:
        The dataset.
    """
    if kind not in ("voc", "yolo", "labelme"):
        raise ValueError(f"dataset must be voc, yolo or labelme here, got {kind!r}")
    if not root:
        raise ValueError(f"dataset {kind!r} needs --root")
    if kind == "yolo":
        from visiontasks.data.yolo_txt import YOLODetection

        if task != "detection":
            raise ValueError("dataset 'yolo' holds boxes: detection only")
        return YOLODetection(root, split, classes=classes)
    if kind == "labelme":
        from visiontasks.data.labelme import LabelMeDetection, LabelMeSegmentation

        return (LabelMeDetection if task == "detection" else LabelMeSegmentation)(root, split, classes=classes)
    return (VOCDetection if task == "detection" else VOCSegmentation)(root, split, classes=classes)
