"""Detections against boxes of the same image, vectorised over images: pairs, IoU, COCO-style greedy matching.

The parts of TIDE's breakdown (:mod:`.tide`) and the detection confusion matrix
(:mod:`.det_confusion`). IoU is pycocotools' ``bbIou`` on ``xywh`` boxes (``maskApi.c``): boxes in
the VOC convention become ``xywh`` with the devkit's inclusive widths (``x1 - x0 + 1``), so the
overlap is the devkit's. The greedy matching (each detection, in descending score order, takes
the untaken box with the largest IoU when it reaches the threshold) is sequential within an
image but not across images, so it runs as one vectorised step per score rank, each taking the
rank-k detection of every image at once.

Shape shorthand: N = images; D, G = all detections and boxes, sorted by image; P = (detection,
box) pairs of the same image.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["FORMATS", "stack", "to_xywh", "pair_iou", "crowd_iou", "same_image_pairs", "segment_max", "greedy_match"]

#: Box formats: ``"voc"`` (``xyxy`` 0-based inclusive pixels), ``"xyxy"`` (continuous), ``"xywh"`` (COCO).
FORMATS = ("voc", "xyxy", "xywh")


def stack(arrays: Sequence[Any], width: int | None, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Concatenation of per-image arrays and the image index of each row."""
    parts = [np.asarray(a, dtype=dtype).reshape((-1, width) if width else -1) for a in arrays]
    owner = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
    empty = np.zeros((0, width) if width else 0, dtype)
    return (np.concatenate(parts) if parts else empty), owner


def to_xywh(boxes: np.ndarray, box_format: str) -> np.ndarray:
    """(B, 4) boxes of ``box_format`` as ``xywh`` (VOC: width ``x1 - x0 + 1``, the devkit's)."""
    if box_format == "xywh":
        return boxes
    plus = 1.0 if box_format == "voc" else 0.0
    return np.column_stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0] + plus,
                            boxes[:, 3] - boxes[:, 1] + plus])


def _overlap(d: np.ndarray, g: np.ndarray, crowd: bool) -> np.ndarray:
    w = np.minimum(d[:, 2] + d[:, 0], g[:, 2] + g[:, 0]) - np.maximum(d[:, 0], g[:, 0])
    h = np.minimum(d[:, 3] + d[:, 1], g[:, 3] + g[:, 1]) - np.maximum(d[:, 1], g[:, 1])
    hit = (w > 0) & (h > 0)
    inter = np.where(hit, w * h, 0.0)
    da = d[:, 2] * d[:, 3]
    union = da if crowd else da + g[:, 2] * g[:, 3] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(hit, inter / np.where(hit, union, 1.0), 0.0)


def pair_iou(d: np.ndarray, g: np.ndarray) -> np.ndarray:
    """(P,) IoU of paired (P, 4) ``xywh`` rows, as pycocotools' ``bbIou``."""
    return _overlap(d, g, crowd=False)


def crowd_iou(d: np.ndarray, g: np.ndarray) -> np.ndarray:
    """(P,) intersection over the detection's area (pycocotools' ``bbIou`` with ``iscrowd``)."""
    return _overlap(d, g, crowd=True)


def same_image_pairs(a_img: np.ndarray, b_img: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """All (a, b) index pairs of the same image, ordered by a then b (both sorted by image)."""
    b_count = np.bincount(b_img, minlength=n)
    b_start = np.concatenate(([0], np.cumsum(b_count)[:-1]))
    per_a = b_count[a_img]
    pa = np.repeat(np.arange(len(a_img)), per_a)
    offset = np.arange(len(pa)) - np.repeat(np.cumsum(per_a) - per_a, per_a)
    return pa, b_start[a_img][pa] + offset


def segment_max(values: np.ndarray, owner: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per owner: the max of ``values`` (0 without rows) and the row of its first occurrence (-1 without
    rows), as ``np.argmax`` picks it; ``values`` >= 0."""
    best = np.zeros(size)
    first = np.full(size, len(values))
    if len(values):
        np.maximum.at(best, owner, values)
        rows = np.flatnonzero(values == best[owner])
        np.minimum.at(first, owner[rows], rows)
    return best, np.where(first == len(values), -1, first)


def greedy_match(pa: np.ndarray, pg: np.ndarray, rank: np.ndarray, iou: np.ndarray, num_gt: int, num: int,
                 thresh: float) -> np.ndarray:
    """COCO-style greedy matching, one step per score rank: (D,) matched box or -1.

    Args:
        pa, pg: the (P,) detection and box of each pair (:func:`same_image_pairs`).
        rank: (D,) each detection's place in its image's descending score order.
        iou: (P,) the overlap of each pair (0 where the pair may not match, e.g. other classes).
        num_gt: G.
        num: D.
        thresh: the overlap a match needs (``>=``).
    """
    matched = np.full(num, -1)
    used = np.zeros(num_gt, bool)
    by_rank = np.argsort(rank[pa], kind="stable")  # pairs grouped by rank, then detection, then box
    bounds = np.searchsorted(rank[pa][by_rank], np.arange((rank.max() + 2) if len(rank) else 1))
    for k in range(len(bounds) - 1):
        rows = by_rank[bounds[k]:bounds[k + 1]]
        if not len(rows):
            continue
        dets, owner = np.unique(pa[rows], return_inverse=True)
        best, first = segment_max(np.where(used[pg[rows]], 0.0, iou[rows]), owner, len(dets))
        ok = best >= thresh
        boxes = pg[rows[first[ok]]]
        matched[dets[ok]] = boxes
        used[boxes] = True
    return matched
