"""Detection confusion matrix with a background row and column: each detection and each object counted once.

Rows are the true class, columns the predicted class (sklearn's convention); the last row and the
last column are **background**:

* detections scoring ``>= score_thresh`` are taken per image in descending score order (ties in
  input order); each takes the not yet taken ground-truth box with the largest IoU (the first on
  ties), whatever its class, when that IoU is ``>= iou_thresh`` — a one-to-one greedy matching;
* a matched pair adds 1 at (its object's class, its detection's class): the diagonal when the
  classes agree, a confusion otherwise;
* an unmatched detection adds 1 at (background, its class): a false positive on background;
* an unmatched object adds 1 at (its class, background): a missed object;
* ``difficult`` objects (VOC) are ignore regions: they take part in the matching, and a detection
  matched to one is counted nowhere, like the object itself (as VOC AP ignores them);
* (background, background) stays 0: there is nothing to count there.

So the row sums (background row excluded) are the numbers of non-difficult objects per class and
the column sums (background column excluded) the numbers of detections per class, less those on
difficult objects. Two peers get this wrong: mmdetection's ``confusion_matrix.py`` also counted a
matched detection's object as missed when the classes differed (mmdet#10631: background counted
twice), and YOLOv5 wrote false positives into the background column and misses into the
background row (yolov5#9414).

Overlap and matching are :mod:`visiontasks.evaluation.box_match`'s (``"voc"`` boxes: the devkit's
inclusive pixels, +1; ``"xyxy"``; ``"xywh"``).

Shape shorthand: N = images; D_i, G_i = detections and objects of image i; C = classes.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from visiontasks.evaluation.box_match import FORMATS, greedy_match, pair_iou, same_image_pairs, stack, to_xywh

__all__ = ["detection_confusion_matrix", "confusion_result", "format_confusion", "IOU_THRESH", "SCORE_THRESH"]

#: The thresholds the tools state and use.
IOU_THRESH = 0.5
SCORE_THRESH = 0.5


def detection_confusion_matrix(
    pred_boxes: Sequence[Any],
    pred_labels: Sequence[Any],
    pred_scores: Sequence[Any],
    gt_boxes: Sequence[Any],
    gt_labels: Sequence[Any],
    gt_difficult: Sequence[Any] | None = None,
    num_classes: int | None = None,
    iou_thresh: float = IOU_THRESH,
    score_thresh: float = SCORE_THRESH,
    box_format: str = "voc",
) -> np.ndarray:
    """The (C + 1, C + 1) int64 confusion matrix of per-image detections (see the module docstring).

    ===============  =============  =============================================
    name             shape          meaning
    ===============  =============  =============================================
    pred_boxes[i]    (D_i, 4)       boxes in ``box_format``
    pred_labels[i]   (D_i,)         int in ``1..C``
    pred_scores[i]   (D_i,)         float
    gt_boxes[i]      (G_i, 4)       boxes in ``box_format``
    gt_labels[i]     (G_i,)         int in ``1..C``
    gt_difficult[i]  (G_i,)         bool (optional: none difficult)
    returns          (C + 1, C + 1) row: true class ``c - 1``, column: predicted class ``c - 1``;
                                    row and column ``C``: background
    ===============  =============  =============================================

    Args:
        num_classes: C; default the largest label seen.
        iou_thresh: overlap a detection needs to match an object.
        score_thresh: detections scoring below it are left out.
        box_format: ``"voc"``, ``"xyxy"`` or ``"xywh"``.

    Raises:
        ValueError: a label outside ``1..C``, an unknown box format, lists of different lengths.
    """
    if box_format not in FORMATS:
        raise ValueError(f"box_format must be one of {FORMATS}, got {box_format!r}")
    n = len(gt_boxes)
    if not len(pred_boxes) == len(pred_labels) == len(pred_scores) == len(gt_labels) == n:
        raise ValueError("per-image lists of predictions and ground truth differ in length")
    pb, p_img = stack(pred_boxes, 4, np.float64)
    pl, ps = stack(pred_labels, None, np.int64)[0], stack(pred_scores, None, np.float64)[0]
    gb, g_img = stack(gt_boxes, 4, np.float64)
    gl = stack(gt_labels, None, np.int64)[0]
    gd = stack(gt_difficult, None, bool)[0] if gt_difficult is not None else np.zeros(len(gl), bool)
    if not len(pb) == len(pl) == len(ps) or not len(gb) == len(gl) == len(gd):
        raise ValueError("boxes, labels and scores (or difficult flags) of an image differ in length")
    c = int(num_classes) if num_classes is not None else int(max(pl.max(initial=0), gl.max(initial=0)))
    for name, labels in (("prediction", pl), ("ground-truth", gl)):
        if labels.size and (labels.min() < 1 or labels.max() > c):
            raise ValueError(f"{name} labels must lie in 1..{c}, got {sorted(set(labels.tolist()))[:10]}")
    keep = ps >= score_thresh
    pb, pl, ps, p_img = pb[keep], pl[keep], ps[keep], p_img[keep]
    order = np.lexsort((np.arange(len(ps)), -ps, p_img))  # per image: descending score, ties in input order
    pb, pl, p_img = to_xywh(pb[order], box_format), pl[order], p_img[order]
    start = np.searchsorted(p_img, np.arange(n))
    rank = np.arange(len(p_img)) - start[p_img]
    pa, pg = same_image_pairs(p_img, g_img, n)
    iou = pair_iou(pb[pa], to_xywh(gb, box_format)[pg])
    matched = greedy_match(pa, pg, rank, iou, len(gl), len(pl), iou_thresh)
    hit = matched >= 0
    taken = np.zeros(len(gl), bool)
    taken[matched[hit]] = True
    on_difficult = np.zeros(len(pl), bool)
    on_difficult[hit] = gd[matched[hit]]
    matrix = np.zeros((c + 1, c + 1), np.int64)
    pairs = hit & ~on_difficult
    np.add.at(matrix, (gl[matched[pairs]] - 1, pl[pairs] - 1), 1)
    np.add.at(matrix, (np.full(int((~hit).sum()), c), pl[~hit] - 1), 1)
    missed = ~taken & ~gd
    np.add.at(matrix, (gl[missed] - 1, np.full(int(missed.sum()), c)), 1)
    return matrix


def confusion_result(preds: Sequence[Sequence[Any]], gts: Sequence[Sequence[Any]], classes: Sequence[str],
                     box_format: str = "voc", iou_thresh: float = IOU_THRESH,
                     score_thresh: float = SCORE_THRESH) -> dict[str, Any]:
    """The tools' ``"confusion"`` entry: ``{"iou", "score", "classes" (C names + "background"), "matrix"}``.

    Args:
        preds: ``(boxes, labels, scores)``, per-image lists (labels ``1..C``).
        gts: ``(boxes, labels, difficult)``, per-image lists.
        classes: the C class names.
    """
    matrix = detection_confusion_matrix(*preds, *gts, num_classes=len(classes), iou_thresh=iou_thresh,
                                        score_thresh=score_thresh, box_format=box_format)
    return {"iou": iou_thresh, "score": score_thresh, "classes": [*classes, "background"], "matrix": matrix.tolist()}


def format_confusion(confusion: dict[str, Any]) -> str:
    """The matrix as a table: a row per true class, a column per predicted class (names cut to 10 characters)."""
    names = [str(n)[:10] for n in confusion["classes"]]
    width = max(6, *(len(n) for n in names), *(len(str(v)) for row in confusion["matrix"] for v in row))
    lines = [f"confusion (rows: true class, columns: predicted; IoU >= {confusion['iou']:g}, "
             f"score >= {confusion['score']:g})",
             f"{'':>{width}s} " + " ".join(f"{n:>{width}s}" for n in names)]
    lines += [f"{name:>{width}s} " + " ".join(f"{v:>{width}d}" for v in row)
              for name, row in zip(names, confusion["matrix"])]
    return "\n".join(lines)
