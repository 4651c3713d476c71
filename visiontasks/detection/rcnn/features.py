"""The region-feature cache of R-CNN's fitting stages: one ``.npz`` file per training image.

Layout of ``<run>/features/``::

    manifest.json        {"format": "visiontasks-rcnn-features/1", "image_ids": [...], "classes": [...],
                          "fc7_dim": D, "pool5_dim": F, "crop_size", "context_pad", "proposal_params",
                          "difficult": "ground truth", "dtype": "float16"}
    <image_id>.npz       per image, the ground-truth boxes first (G rows), then the proposals:
        boxes    (N, 4) float32  xyxy, original-image pixels
        labels   (N,)   int64    class of the ground-truth rows (1..C), 0 for proposals
        overlap  (N, C) float32  IoU with the closest ground-truth box of each class (0: none)
        max_iou  (N,)   float32  IoU with the closest ground-truth box of any class
        best_gt  (N,)   int64    index of that box among the G first rows (-1: no ground truth)
        fc7      (N, D) float16  fc7 after ReLU (the SVMs' features)
        pool5    (N, F) float16  flattened pool5 (the box regressors' features)

R-CNN's ``rcnn_cache_pool5_features.m`` keeps the same rows (``d.boxes``, ``d.class``, ``d.overlap``,
``d.feat``); here fc7 is cached too, so the SVM stage needs no network. Files are written
atomically (temporary file + ``os.replace``) and read with ``allow_pickle=False``; a file that is
there is complete, which makes the cache resumable per image. Difficult objects are ground truth
here, as in R-CNN (:func:`target_record`): ``roidb_from_voc.m`` (l. 65-84) takes every object of
the VOC record — ``PASreadrecord`` keeps the difficult ones — as a ground-truth row and in the
``overlap`` columns, so a proposal on a difficult object has its IoU with it and never becomes a
(hard) negative of its class, and ``rcnn_train.m`` (l. 356, ``d.class == j``) takes difficult
ground-truth rows as positives. (The SGD stages drop difficult objects from their targets,
docs/CONTRACTS.md; the evaluator ignores them.)

Disk: ``N · (D + F) · 2`` bytes per image (float16) plus ~``N · (4 + C)`` small numbers; for
VOC2007 trainval with AlexNet (5,011 images × ~2,000 proposals × (4096 + 9216) × 2 B) ≈ 267 GB.

Shape shorthand: N = rows of an image, G = its ground-truth boxes, C = object classes, D = fc7
width, F = pool5 width.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torchvision.ops import box_iou

from visiontasks.errors import InputError
from visiontasks.io import atomic_write

__all__ = ["FEATURES_FORMAT", "FEATURE_KEYS", "image_record", "target_record", "features_path", "write_image_features",
           "read_image_features", "write_features_manifest", "read_features_manifest", "feature_mean_norm"]

FEATURES_FORMAT = "visiontasks-rcnn-features/1"
MANIFEST = "manifest.json"
FEATURE_KEYS = ("boxes", "labels", "overlap", "max_iou", "best_gt", "fc7", "pool5")


def image_record(gt_boxes: torch.Tensor, gt_labels: torch.Tensor, proposals: torch.Tensor, num_classes: int,
                 fc7: np.ndarray, pool5: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of one image's cache file.

    Args:
        gt_boxes: (G, 4) ground truth (difficult objects included, see :func:`target_record`).
        gt_labels: (G,) in 1..C.
        proposals: (R, 4) proposals.
        num_classes: C (object classes, background excluded).
        fc7: (G + R, D) features of ``[gt_boxes; proposals]``.
        pool5: (G + R, F) features of the same rows.
    """
    gt = gt_boxes.detach().float().cpu().reshape(-1, 4)
    labels = gt_labels.detach().cpu().to(torch.int64).reshape(-1)
    boxes = torch.cat((gt, proposals.detach().float().cpu().reshape(-1, 4)))
    n, g = len(boxes), len(gt)
    overlap = torch.zeros((n, num_classes))
    max_iou = torch.zeros(n)
    best_gt = torch.full((n,), -1, dtype=torch.int64)
    if g:
        iou = box_iou(boxes, gt)  # (N, G)
        max_iou, best_gt = iou.max(dim=1)
        for c in labels.unique().tolist():
            overlap[:, c - 1] = iou[:, labels == c].max(dim=1).values
    row_labels = torch.zeros(n, dtype=torch.int64)
    row_labels[:g] = labels
    return {
        "boxes": boxes.numpy().astype(np.float32), "labels": row_labels.numpy(),
        "overlap": overlap.numpy().astype(np.float32), "max_iou": max_iou.numpy().astype(np.float32),
        "best_gt": best_gt.numpy(), "fc7": np.asarray(fc7, dtype=np.float16),
        "pool5": np.asarray(pool5, dtype=np.float16).reshape(n, -1),
    }


def target_record(target: Mapping[str, Any], extract: Callable[[torch.Tensor, torch.Tensor], tuple],
                  num_classes: int) -> dict[str, np.ndarray]:
    """The cache record of one training image, every annotated object as ground truth.

    Difficult objects are not dropped (``roidb_from_voc.m`` l. 65-84 attaches all the record's
    objects; see the module docstring): they are ground-truth rows and count in ``overlap``,
    ``max_iou`` and ``best_gt``.

    Args:
        target: the dataset's target (``boxes`` (G, 4), ``labels`` (G,), ``proposals`` (R, 4);
            ``difficult`` (G,) is ignored).
        extract: ``(gt_boxes, proposals) -> (boxes (G + R', 4), fc7, pool5)`` (``RCNN.extract``
            bound to the image).
        num_classes: C.

    Raises:
        ValueError: the target has no proposals.
    """
    if "proposals" not in target:
        raise ValueError("R-CNN's feature cache needs proposals in the dataset (set data.proposals)")
    boxes, fc7, pool5 = extract(target["boxes"], target["proposals"])
    g = len(target["boxes"])
    return image_record(boxes[:g], target["labels"], boxes[g:], num_classes, fc7, pool5)


def features_path(folder: str | os.PathLike[str], image_id: str) -> Path:
    """``folder/<image_id>.npz`` (the id must be a plain file stem)."""
    image_id = str(image_id)
    if not image_id or Path(image_id).name != image_id or image_id in (".", "..") or "\\" in image_id:
        raise ValueError(f"image_id must be a plain file stem, got {image_id!r}")
    return Path(folder) / f"{image_id}.npz"


def write_image_features(folder: str | os.PathLike[str], image_id: str, record: Mapping[str, np.ndarray]) -> Path:
    """Writes one image's record atomically (``np.savez``, uncompressed)."""
    missing = [k for k in FEATURE_KEYS if k not in record]
    if missing:
        raise ValueError(f"feature record of {image_id!r} lacks {missing}")
    path = features_path(folder, image_id)
    with atomic_write(path, "wb") as f:
        np.savez(f, **{k: np.ascontiguousarray(record[k]) for k in FEATURE_KEYS})
    return path


def read_image_features(folder: str | os.PathLike[str], image_id: str,
                        keys: Iterable[str] = FEATURE_KEYS) -> dict[str, np.ndarray]:
    """Reads the arrays ``keys`` of one image (only those members are read from the file).

    Raises:
        InputError: naming the file when it is missing, corrupt or lacks a key.
    """
    path = features_path(folder, image_id)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in keys}
    except FileNotFoundError:
        raise InputError(path, f"cached features of image {image_id!r} not found (rerun the 'features' stage: "
                               "tools/train_det.py --resume)") from None
    except KeyError as exc:
        raise InputError(path, f"cached features lack {exc}; delete the file and resume") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(path, f"unreadable cached features ({type(exc).__name__}: {exc}); delete the file and "
                               "resume") from None


def write_features_manifest(folder: str | os.PathLike[str], info: Mapping[str, Any]) -> Path:
    """Writes ``folder/manifest.json`` atomically."""
    path = Path(folder) / MANIFEST
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"format": FEATURES_FORMAT, **info}, indent=2) + "\n")
    return path


def read_features_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads ``folder/manifest.json``.

    Raises:
        InputError: naming it when missing, not JSON or not this format.
    """
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "feature cache manifest not found (run the 'features' stage first)") from None
    except (OSError, ValueError) as exc:
        raise InputError(path, f"unreadable feature cache manifest ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FEATURES_FORMAT:
        raise InputError(path, f"not an R-CNN feature cache manifest (expected format {FEATURES_FORMAT!r})")
    return data


def feature_mean_norm(folder: str | os.PathLike[str], image_ids: list[str], key: str, num_images: int = 200,
                      rows_per_image: int = 200, seed: int = 0) -> float:
    """Mean L2 norm of cached ``key`` features on a fixed random sample (``rcnn_feature_stats.m``:
    up to 200 images × 200 rows).

    Raises:
        InputError: the sample holds no rows or only zero vectors.
    """
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(image_ids))[:num_images]
    norms = []
    for i in sorted(chosen.tolist()):
        feats = read_image_features(folder, image_ids[i], (key,))[key]
        rows = rng.permutation(len(feats))[:rows_per_image]
        norms.append(np.linalg.norm(feats[np.sort(rows)].astype(np.float32), axis=1))
    norms = np.concatenate(norms) if norms else np.zeros(0)
    mean = float(norms.mean()) if len(norms) else 0.0
    if not mean > 0:
        raise InputError(Path(folder) / MANIFEST, f"cached {key} features are empty or all zero; cannot scale them")
    return mean
