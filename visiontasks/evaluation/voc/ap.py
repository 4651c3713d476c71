"""PASCAL VOC detection AP, equal to the official devkit (``VOCevaldet.m``), vectorised.

Semantics (see the devkit, or py-faster-rcnn's ``voc_eval.py``, its Python port):

* per class, detections are taken in descending score order (a stable sort: ties keep input order);
* each is matched to the ground truth of its class in the same image with the largest
  pixel-inclusive overlap (the first such box on ties); it is a true positive when that overlap
  is ``>= iou_thresh`` (devkit; ``reference="voc_eval"`` uses ``>`` as py-faster-rcnn does),
  ignored when that box is ``difficult``, a false positive (duplicate) when a higher-scored
  detection already took it, and a false positive when the overlap is too small;
* ``npos`` counts non-difficult ground truth only; a class with ``npos == 0`` has AP NaN and
  is left out of the mean;
* ``metric="voc07"``: 11-point interpolated AP with the devkit's thresholds (``k * 0.1`` for
  ``k < 5``, ``1 - (10 - k) * 0.1`` otherwise, as MATLAB's ``0:0.1:1`` computes them;
  ``reference="voc_eval"`` uses ``np.arange(0, 1.1, 0.1)``, whose 0.6 and 0.7 are one bit larger);
  ``metric="voc12"``: area under the precision envelope, with sentinels.

Precision is ``tp / max(tp + fp, eps)`` as in ``voc_eval.py`` (the devkit's 0/0 NaN, which only
appears while every detection so far was ignored, is read as 0 by both AP formulas).

How it is fast: the greedy loop "take the best-overlapping box unless already taken" only ever
looks at a detection's *own* best match, so the outcome of a detection depends solely on whether
an earlier (higher-scored) detection had the same best match above the threshold. All overlaps
between detections and same-class, same-image ground truth are computed in one vectorised pass,
the best match is a segmented argmax, and "already taken" is a first-occurrence query in score
order. No Python loop runs per detection or per image.

Shape shorthand: N = images; D_i, G_i = detections and ground-truth boxes of image i;
C = object classes (labels 1..C); R_c = detections of class c.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from visiontasks.evaluation.voc.best_match import best_matches

__all__ = ["eval_detection_voc", "eval_detection_voc_by_area", "average_precision", "eleven_point_thresholds"]

_METRICS = ("voc07", "voc12")
_REFERENCES = ("devkit", "voc_eval")


def eleven_point_thresholds(reference: str = "devkit") -> np.ndarray:
    """The 11 recall thresholds of VOC2007 AP, bit-exact for the chosen reference.

    Args:
        reference: ``"devkit"`` (MATLAB ``0:0.1:1``) or ``"voc_eval"`` (``np.arange(0, 1.1, 0.1)``).

    Returns:
        float64 array of shape (11,).
    """
    if reference == "devkit":
        return np.array([k * 0.1 if k < 5 else 1.0 - (10 - k) * 0.1 for k in range(11)])
    if reference == "voc_eval":
        return np.arange(0.0, 1.1, 0.1)
    raise ValueError(f"reference must be one of {_REFERENCES}, got {reference!r}")


def average_precision(rec: np.ndarray, prec: np.ndarray, metric: str = "voc07", reference: str = "devkit") -> float:
    """AP of one class from its cumulative recall and precision (in descending-score order).

    ========  ========  ===============================
    name      shape     dtype
    ========  ========  ===============================
    rec       (R,)      float64, non-decreasing
    prec      (R,)      float64
    returns   scalar    float
    ========  ========  ===============================

    Args:
        rec: recall after each detection.
        prec: precision after each detection.
        metric: ``"voc07"`` (11-point) or ``"voc12"`` (all-point).
        reference: threshold convention of the 11-point AP (see :func:`eleven_point_thresholds`).
    """
    rec = np.asarray(rec, dtype=np.float64)
    prec = np.asarray(prec, dtype=np.float64)
    if metric == "voc07":
        thresholds = eleven_point_thresholds(reference)
        if rec.size == 0:
            return 0.0
        suffix_max = np.maximum.accumulate(prec[::-1])[::-1]
        first = np.searchsorted(rec, thresholds, side="left")  # first index with rec >= t
        ap = 0.0
        for idx in first:  # sequential sum, as both references do
            ap += (suffix_max[idx] if idx < rec.size else 0.0) / 11.0
        return float(ap)
    if metric == "voc12":
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = np.concatenate(([0.0], prec, [0.0]))
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        i = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))
    raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")


def _stack(arrays: Sequence[Any], name: str, width: int | None, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Concatenates per-image arrays; returns (values, image index of each row)."""
    parts = []
    for i, a in enumerate(arrays):
        arr = np.asarray(a, dtype=dtype)
        if width is None:
            arr = arr.reshape(-1)
        elif arr.size == 0:
            arr = arr.reshape(0, width)
        elif arr.ndim != 2 or arr.shape[1] != width:
            raise ValueError(f"{name}[{i}] must have shape (n, {width}), got {arr.shape!r}")
        parts.append(arr)
    empty = np.zeros((0,) if width is None else (0, width), dtype=dtype)
    owners = np.repeat(np.arange(len(parts), dtype=np.int64), [len(p) for p in parts])
    return (np.concatenate(parts) if parts else empty), owners


def _check_same_length(name: str, values: np.ndarray, owner: np.ndarray, ref_owner: np.ndarray) -> None:
    if values.shape[0] != ref_owner.shape[0] or not np.array_equal(owner, ref_owner):
        raise ValueError(f"{name} must hold one entry per box of each image (lengths differ from the boxes)")


def eval_detection_voc(
    pred_boxes: Sequence[np.ndarray],
    pred_labels: Sequence[np.ndarray],
    pred_scores: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    gt_labels: Sequence[np.ndarray],
    gt_difficults: Sequence[np.ndarray] | None = None,
    num_classes: int | None = None,
    iou_thresh: float = 0.5,
    metric: str = "voc07",
    reference: str = "devkit",
    pred_outside: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    """PASCAL VOC average precision per class and its mean, as the official devkit computes them.

    Every argument is a list with one entry per image:

    =============  ===========  ==============================================
    name           shape        dtype
    =============  ===========  ==============================================
    pred_boxes     [(D_i, 4)]   float, ``xyxy`` 0-based pixels
    pred_labels    [(D_i,)]     int, ``1..C``
    pred_scores    [(D_i,)]     float
    gt_boxes       [(G_i, 4)]   float, ``xyxy`` 0-based pixels
    gt_labels      [(G_i,)]     int, ``1..C``
    gt_difficults  [(G_i,)]     bool (None: nothing is difficult)
    =============  ===========  ==============================================

    Args:
        num_classes: C, the number of object classes; default the largest label seen.
        iou_thresh: overlap a true positive needs (VOC: 0.5).
        metric: ``"voc07"`` (11-point) or ``"voc12"`` (all-point, VOC2010 onwards).
        reference: ``"devkit"`` (overlap ``>=`` threshold, MATLAB 11-point thresholds) or
            ``"voc_eval"`` (py-faster-rcnn: ``>`` and ``np.arange`` thresholds).
        pred_outside: per image, (D_i,) bool: detections outside the region scored (an area range,
            as COCOeval's ``areaRng``), ignored unless they are true positives. None: none.

    Returns:
        ===========  ==============================  ==================================================
        key          shape                           meaning
        ===========  ==============================  ==================================================
        ap           (C,) float64                    entry ``c - 1`` is label c; NaN when ``npos == 0``
        map          float                           NaN-mean of ``ap``
        precision    list of C (R_c,) float64/None   after each detection, descending score
        recall       list of C (R_c,) float64/None   None where ``npos == 0``
        npos         (C,) int64                      non-difficult ground truth per class
        ===========  ==============================  ==================================================
    """
    data = _prepare(pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels, gt_difficults, num_classes,
                    iou_thresh, metric, reference)
    d_out = None
    if pred_outside is not None:
        if len(pred_outside) != len(gt_boxes):
            raise ValueError(f"pred_outside has {len(pred_outside)} images but gt_boxes has {len(gt_boxes)}")
        d_out, d_out_img = _stack(pred_outside, "pred_outside", None, bool)
        _check_same_length("pred_outside", d_out, d_out_img, data["d_img"])
    return _score(data, _match(data, iou_thresh, reference), data["g_diff"], d_out, metric, reference)


def _prepare(pred_boxes: Sequence[np.ndarray], pred_labels: Sequence[np.ndarray], pred_scores: Sequence[np.ndarray],
             gt_boxes: Sequence[np.ndarray], gt_labels: Sequence[np.ndarray],
             gt_difficults: Sequence[np.ndarray] | None, num_classes: int | None, iou_thresh: float, metric: str,
             reference: str) -> dict[str, Any]:
    """Checks the arguments of :func:`eval_detection_voc` and concatenates the per-image arrays."""
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    if reference not in _REFERENCES:
        raise ValueError(f"reference must be one of {_REFERENCES}, got {reference!r}")
    if not 0.0 < iou_thresh <= 1.0:
        raise ValueError(f"iou_thresh must lie in (0, 1], got {iou_thresh!r}")
    num_images = len(gt_boxes)
    lists = {"pred_boxes": pred_boxes, "pred_labels": pred_labels, "pred_scores": pred_scores,
             "gt_labels": gt_labels}
    if gt_difficults is not None:
        lists["gt_difficults"] = gt_difficults
    for name, seq in lists.items():
        if len(seq) != num_images:
            raise ValueError(f"{name} has {len(seq)} images but gt_boxes has {num_images}")

    d_boxes, d_img = _stack(pred_boxes, "pred_boxes", 4, np.float64)
    d_labels, d_lab_img = _stack(pred_labels, "pred_labels", None, np.int64)
    d_scores, d_sc_img = _stack(pred_scores, "pred_scores", None, np.float64)
    g_boxes, g_img = _stack(gt_boxes, "gt_boxes", 4, np.float64)
    g_labels, g_lab_img = _stack(gt_labels, "gt_labels", None, np.int64)
    _check_same_length("pred_labels", d_labels, d_lab_img, d_img)
    _check_same_length("pred_scores", d_scores, d_sc_img, d_img)
    _check_same_length("gt_labels", g_labels, g_lab_img, g_img)
    if gt_difficults is None:
        g_diff = np.zeros(len(g_labels), dtype=bool)
    else:
        g_diff, g_diff_img = _stack(gt_difficults, "gt_difficults", None, bool)
        _check_same_length("gt_difficults", g_diff, g_diff_img, g_img)
    if np.isnan(d_scores).any():
        raise ValueError("pred_scores contain NaN")

    all_labels = np.concatenate([d_labels, g_labels])
    if num_classes is None:
        num_classes = int(all_labels.max()) if all_labels.size else 0
    if all_labels.size and (all_labels.min() < 1 or all_labels.max() > num_classes):
        raise ValueError(f"labels must lie in 1..{num_classes}, got values in "
                         f"{int(all_labels.min())}..{int(all_labels.max())}")
    return {"num_images": num_images, "num_classes": num_classes, "d_boxes": d_boxes, "d_img": d_img,
            "d_labels": d_labels, "d_scores": d_scores, "g_boxes": g_boxes, "g_img": g_img, "g_labels": g_labels,
            "g_diff": g_diff}


def _match(data: dict[str, Any], iou_thresh: float, reference: str) -> tuple[np.ndarray, np.ndarray]:
    """Every detection's best same-class box of its image (:func:`~visiontasks.evaluation.voc.best_match.best_matches`)
    and whether it passes."""
    n = data["num_images"]
    ovmax, jmax = best_matches(data["d_labels"] * n + data["d_img"], data["d_boxes"],
                               data["g_labels"] * n + data["g_img"], data["g_boxes"])
    return jmax, (ovmax >= iou_thresh if reference == "devkit" else ovmax > iou_thresh)


def _score(data: dict[str, Any], matches: tuple[np.ndarray, np.ndarray], g_diff: np.ndarray,
           d_out: np.ndarray | None, metric: str, reference: str) -> dict[str, Any]:
    """:func:`eval_detection_voc`'s result from the matches, with ``g_diff`` ignored objects and ``d_out``
    detections ignored unless true positives."""
    jmax, passed = matches
    d_labels, d_scores, g_labels = data["d_labels"], data["d_scores"], data["g_labels"]
    num_classes = data["num_classes"]
    # Outcome of every detection: 1 true positive, 0 false positive, -1 ignored (difficult; outside, when false).
    matched_difficult = np.zeros(len(d_labels), dtype=bool)
    matched_difficult[passed] = g_diff[jmax[passed]]
    outcome = np.zeros(len(d_labels), dtype=np.int8)
    outcome[matched_difficult] = -1
    order = np.lexsort((-d_scores, d_labels))                  # by class, then descending score (stable)
    candidates = order[(passed & ~matched_difficult)[order]]
    _, first = np.unique(jmax[candidates], return_index=True)  # the earliest claim on a box wins
    outcome[candidates[first]] = 1
    if d_out is not None:
        outcome[(outcome == 0) & d_out] = -1

    npos = np.bincount(g_labels[~g_diff], minlength=num_classes + 1)[1:].astype(np.int64)
    sorted_outcome = outcome[order]
    bounds = np.searchsorted(d_labels[order], np.arange(1, num_classes + 2), side="left")
    ap = np.full(num_classes, np.nan)
    precision: list[np.ndarray | None] = [None] * num_classes
    recall: list[np.ndarray | None] = [None] * num_classes
    for c in range(num_classes):
        if npos[c] == 0:
            continue
        seg = sorted_outcome[bounds[c]:bounds[c + 1]]
        tp = np.cumsum(seg == 1, dtype=np.float64)
        fp = np.cumsum(seg == 0, dtype=np.float64)
        recall[c] = tp / float(npos[c])
        precision[c] = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        ap[c] = average_precision(recall[c], precision[c], metric, reference)
    mean = float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")
    return {"ap": ap, "map": mean, "precision": precision, "recall": recall, "npos": npos}


def eval_detection_voc_by_area(
    pred_boxes: Sequence[np.ndarray],
    pred_labels: Sequence[np.ndarray],
    pred_scores: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    gt_labels: Sequence[np.ndarray],
    gt_difficults: Sequence[np.ndarray] | None,
    area_ranges: dict[str, tuple[float, float]],
    num_classes: int | None = None,
    iou_thresh: float = 0.5,
    metric: str = "voc07",
    reference: str = "devkit",
) -> dict[str, dict[str, Any]]:
    """:func:`eval_detection_voc` for each area range, from one matching (arguments as there).

    For a range ``(lo, hi)`` (square pixels, the devkit's inclusive area ``(x1 - x0 + 1) * (y1 - y0 + 1)``),
    as COCOeval's ``areaRng``: objects with ``area < lo`` or ``area > hi`` are ignored like
    difficult ones, and so are false positives whose own box is outside the range.

    Returns:
        ``{range name: eval_detection_voc's dict}``.
    """
    data = _prepare(pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels, gt_difficults, num_classes,
                    iou_thresh, metric, reference)
    matches = _match(data, iou_thresh, reference)

    def area(b: np.ndarray) -> np.ndarray:
        return (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)

    d_area, g_area = area(data["d_boxes"]), area(data["g_boxes"])
    return {name: _score(data, matches, data["g_diff"] | (g_area < lo) | (g_area > hi), (d_area < lo) | (d_area > hi),
                         metric, reference) for name, (lo, hi) in area_ranges.items()}
