"""Overlap measures used by the evaluators.

Three flavours, because the references disagree on what a box is:

* :func:`box_iou` — continuous coordinates (``torchvision.ops.box_iou``), for tensors.
* :func:`box_iou_voc` — the VOC devkit's pixel-inclusive overlap: widths and heights are
  ``x2 - x1 + 1`` and ``y2 - y1 + 1``, computed in float64 in the exact operation order of
  ``VOCevaldet.m`` / py-faster-rcnn's ``voc_eval.py`` so that ``>= 0.5`` decisions agree bit for bit.
* :func:`mask_iou` — IoU of binary masks.

Shape shorthand: N, M = number of boxes (or masks) in each set; H, W = mask height and width.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported by the functions that take tensors, not by the numpy evaluators
    import torch

__all__ = ["box_iou", "box_iou_voc", "box_iou_voc_paired", "mask_iou"]


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of two sets of ``xyxy`` boxes in continuous coordinates (``torchvision.ops.box_iou``).

    ========  ==========  =========================
    name      shape       dtype
    ========  ==========  =========================
    boxes1    (N, 4)      float tensor, ``xyxy``
    boxes2    (M, 4)      float tensor, ``xyxy``
    returns   (N, M)      same float dtype
    ========  ==========  =========================
    """
    from torchvision.ops import box_iou as tv_box_iou

    return tv_box_iou(boxes1, boxes2)


def _inclusive_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixel-inclusive IoU of broadcastable ``(..., 4)`` float64 arrays (voc_eval's formula, in its order)."""
    ixmin = np.maximum(a[..., 0], b[..., 0])
    iymin = np.maximum(a[..., 1], b[..., 1])
    ixmax = np.minimum(a[..., 2], b[..., 2])
    iymax = np.minimum(a[..., 3], b[..., 3])
    iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
    ih = np.maximum(iymax - iymin + 1.0, 0.0)
    inters = iw * ih
    union = ((a[..., 2] - a[..., 0] + 1.0) * (a[..., 3] - a[..., 1] + 1.0)
             + (b[..., 2] - b[..., 0] + 1.0) * (b[..., 3] - b[..., 1] + 1.0) - inters)
    return inters / union


def _as_boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {arr.shape!r}")
    return arr


def box_iou_voc(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """Pixel-inclusive IoU matrix, as the VOC devkit computes overlaps (``+1`` on widths/heights).

    ========  ==========  ==================================
    name      shape       dtype
    ========  ==========  ==================================
    boxes1    (N, 4)      float, ``xyxy`` 0- or 1-based pixels
    boxes2    (M, 4)      float, ``xyxy`` same convention
    returns   (N, M)      float64
    ========  ==========  ==================================

    Args:
        boxes1: first set of boxes.
        boxes2: second set of boxes.

    Returns:
        ``iou[i, j]`` between ``boxes1[i]`` and ``boxes2[j]``; 0 where they do not touch.
    """
    a = _as_boxes(boxes1, "boxes1")
    b = _as_boxes(boxes2, "boxes2")
    return _inclusive_overlap(a[:, None, :], b[None, :, :])


def box_iou_voc_paired(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """Pixel-inclusive IoU of aligned pairs: ``iou[k]`` between ``boxes1[k]`` and ``boxes2[k]``.

    ========  ==========  ========
    name      shape       dtype
    ========  ==========  ========
    boxes1    (K, 4)      float
    boxes2    (K, 4)      float
    returns   (K,)        float64
    ========  ==========  ========
    """
    a = _as_boxes(boxes1, "boxes1")
    b = _as_boxes(boxes2, "boxes2")
    if a.shape != b.shape:
        raise ValueError(f"paired boxes need equal shapes, got {a.shape!r} and {b.shape!r}")
    return _inclusive_overlap(a, b)


def mask_iou(masks1: np.ndarray, masks2: np.ndarray) -> np.ndarray:
    """IoU of every pair of binary masks (0 where both masks are empty).

    ========  ============  ========
    name      shape         dtype
    ========  ============  ========
    masks1    (N, H, W)     bool
    masks2    (M, H, W)     bool
    returns   (N, M)        float64
    ========  ============  ========
    """
    a = np.asarray(masks1).astype(bool, copy=False)
    b = np.asarray(masks2).astype(bool, copy=False)
    if a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:]:
        raise ValueError(f"masks must be (N, H, W) and (M, H, W) of one size, got {a.shape!r} and {b.shape!r}")
    fa = a.reshape(len(a), -1).astype(np.float64)
    fb = b.reshape(len(b), -1).astype(np.float64)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
