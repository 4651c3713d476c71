"""The best-overlapping same-class ground truth of every detection, all at once (VOC matching).

The devkit's greedy loop (``VOCevaldet.m``) only ever looks at a detection's *own* best match:
the largest pixel-inclusive overlap with the ground truth of its class in its image, the first
such box on ties. Here every (detection, same-key ground truth) pair's overlap is computed in one
vectorised pass, and the best match of each detection is a segmented argmax; detections are
taken in blocks of at most :data:`MAX_PAIRS` pairs, so an image crowded with one class's boxes
does not multiply the memory (issue 26). :mod:`visiontasks.evaluation.voc.ap` turns the matches
into true and false positives.

Shape shorthand: D = detections, G = ground-truth boxes, P = pairs of a block.
"""
from __future__ import annotations

import numpy as np

from visiontasks.evaluation.iou import _inclusive_overlap

__all__ = ["best_matches", "MAX_PAIRS"]

#: Detection x ground-truth pairs whose overlaps are computed at once (~180 bytes each): bounds the memory of
#: matching when one image holds many same-class boxes (issue 26, docs/RELIABILITY.md).
MAX_PAIRS = 1 << 20


def best_matches(det_key: np.ndarray, det_boxes: np.ndarray, gt_key: np.ndarray,
                 gt_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best same-key ground truth of every detection: (overlap, gt index); (-inf, -1) where none.

    The key is ``label * num_images + image``; ties go to the first ground truth in input order.
    Detections are taken in blocks of at most :data:`MAX_PAIRS` pairs (a detection's result does not
    depend on the others').
    """
    num_det = len(det_key)
    ovmax = np.full(num_det, -np.inf)
    jmax = np.full(num_det, -1, dtype=np.int64)
    gt_order = np.argsort(gt_key, kind="stable")
    sorted_keys = gt_key[gt_order]
    start = np.searchsorted(sorted_keys, det_key, side="left")
    count = np.searchsorted(sorted_keys, det_key, side="right") - start
    ends = np.cumsum(count)
    lo = 0
    while lo < num_det and ends[-1] > 0:
        hi = max(lo + 1, int(np.searchsorted(ends, ends[lo] - count[lo] + MAX_PAIRS, side="right")))
        _match_block(det_boxes[lo:hi], gt_boxes, gt_order, start[lo:hi], count[lo:hi], ovmax[lo:hi], jmax[lo:hi])
        lo = hi
    return ovmax, jmax


def _match_block(det_boxes: np.ndarray, gt_boxes: np.ndarray, gt_order: np.ndarray, start: np.ndarray,
                 count: np.ndarray, ovmax: np.ndarray, jmax: np.ndarray) -> None:
    """:func:`best_matches` of a block of detections, written into the views ``ovmax`` and ``jmax``."""
    total = int(count.sum())
    if total == 0:
        return
    seg_start = np.cumsum(count) - count                      # first pair of each detection
    pair_det = np.repeat(np.arange(len(count)), count)
    pair_gt = gt_order[np.repeat(start - seg_start, count) + np.arange(total)]
    iou = _inclusive_overlap(det_boxes[pair_det], gt_boxes[pair_gt])
    has = count > 0
    ovmax[has] = np.maximum.reduceat(iou, seg_start[has])
    hits = np.flatnonzero(iou == ovmax[pair_det])               # pairs at their detection's max
    first = np.ones(len(hits), dtype=bool)
    first[1:] = pair_det[hits[1:]] != pair_det[hits[:-1]]       # pair_det is sorted: first hit wins
    jmax[pair_det[hits[first]]] = pair_gt[hits[first]]
