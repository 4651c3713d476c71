"""Proposal quality: recall at IoU thresholds, average recall, MABO, recall against proposal count.

Overlap is the VOC devkit's pixel-inclusive IoU (:func:`visiontasks.evaluation.box_iou_voc`,
``+1`` on widths and heights), the convention of both the loaded VOC ground truth and the
proposals of :func:`visiontasks.detection.proposals.selective_search` (inclusive 0-based pixel
corners); Uijlings et al.'s evaluation code also adds 1. A ground-truth box counts as recalled
at threshold t when its best overlap is ``>= t``.

* recall@t: fraction of (non-difficult) ground-truth boxes with best overlap ``>= t``.
* average recall (Hosang et al. 2016): mean of recall@t over t = 0.50, 0.55, ..., 0.95.
* MABO (Uijlings et al. 2013): for each class, the mean over its ground-truth boxes of the
  best overlap (ABO); MABO is the mean of the ABOs of the classes that have ground truth.
* boxes per image: mean number of proposals used per image (after ``top_n``).

``difficult`` ground truth is left out of every figure (as the VOC devkit leaves it out of AP).

===============  =============  ======================================================
name             shape          dtype
===============  =============  ======================================================
proposals[i]     (R_i, 4)       float, ``xyxy`` inclusive pixels, rank order
gt_boxes[i]      (G_i, 4)       float, ``xyxy`` same convention
gt_labels[i]     (G_i,)         int, 1..C
gt_difficult[i]  (G_i,)         bool (optional; all False when None)
best_overlaps    (G,)           float64 in [0, 1]
===============  =============  ======================================================

Shape shorthand: R = proposals of an image, G = ground-truth boxes of an image, C = classes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from visiontasks.evaluation.iou import box_iou_voc
from visiontasks.io import atomic_write

__all__ = [
    "AR_THRESHOLDS", "DEFAULT_COUNTS", "best_overlaps", "plot_recall_vs_proposals", "proposal_recall",
    "recall_vs_proposals",
]

AR_THRESHOLDS: np.ndarray = np.round(0.5 + 0.05 * np.arange(10), 2)
"""IoU thresholds 0.50, 0.55, ..., 0.95 of the average recall."""
DEFAULT_COUNTS: tuple[int | None, ...] = (10, 20, 50, 100, 200, 500, 1000, 2000, None)
"""Proposal counts of :func:`recall_vs_proposals` (None = all)."""


def best_overlaps(proposals: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Best pixel-inclusive IoU of each ground-truth box with any proposal.

    Args:
        proposals: (R, 4) ``xyxy`` boxes (R may be 0: every overlap is 0).
        gt: (G, 4) ``xyxy`` boxes.

    Returns:
        (G,) float64.
    """
    iou = box_iou_voc(np.asarray(proposals, dtype=np.float64).reshape(-1, 4), gt)
    return iou.max(axis=0) if len(iou) else np.zeros(iou.shape[1])


def _prepare(proposals: Sequence[np.ndarray], gt_boxes: Sequence[np.ndarray], gt_labels: Sequence[np.ndarray],
             gt_difficult: Sequence[np.ndarray] | None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per image: (proposals (R, 4), kept GT boxes (G, 4), their labels (G,))."""
    n = len(proposals)
    if not len(gt_boxes) == len(gt_labels) == n or (gt_difficult is not None and len(gt_difficult) != n):
        lens = (n, len(gt_boxes), len(gt_labels), None if gt_difficult is None else len(gt_difficult))
        raise ValueError(f"proposals, gt_boxes, gt_labels, gt_difficult must list the same images, got lengths {lens}")
    out = []
    for i in range(n):
        props = np.asarray(proposals[i], dtype=np.float64)
        boxes = np.asarray(gt_boxes[i], dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(gt_labels[i]).reshape(-1).astype(np.int64)
        if props.ndim != 2 or props.shape[1] != 4:
            raise ValueError(f"proposals of image {i} must be (R, 4), got shape {props.shape}")
        if len(labels) != len(boxes):
            raise ValueError(f"image {i} has {len(boxes)} gt boxes but {len(labels)} labels")
        keep = np.ones(len(boxes), bool)
        if gt_difficult is not None:
            difficult = np.asarray(gt_difficult[i]).reshape(-1).astype(bool)
            if len(difficult) != len(boxes):
                raise ValueError(f"image {i} has {len(boxes)} gt boxes but {len(difficult)} difficult flags")
            keep = ~difficult
        out.append((props, boxes[keep], labels[keep]))
    return out


def _scores(overlaps: np.ndarray, labels: np.ndarray, thresholds: Sequence[float]) -> dict[str, Any]:
    """Recall figures from the best overlaps of all GT boxes (G,) and their labels (G,)."""
    if len(overlaps) == 0:
        nan = float("nan")
        return {"recall": {float(t): nan for t in thresholds}, "recall_50": nan, "recall_70": nan,
                "average_recall": nan, "mabo": nan, "abo_per_class": {}}
    abo = {int(c): float(overlaps[labels == c].mean()) for c in np.unique(labels)}
    return {
        "recall": {float(t): float((overlaps >= t).mean()) for t in thresholds},
        "recall_50": float((overlaps >= 0.5).mean()),
        "recall_70": float((overlaps >= 0.7).mean()),
        "average_recall": float(np.mean([(overlaps >= t).mean() for t in AR_THRESHOLDS])),
        "mabo": float(np.mean(list(abo.values()))),
        "abo_per_class": abo,
    }


def proposal_recall(proposals: Sequence[np.ndarray], gt_boxes: Sequence[np.ndarray],
                    gt_labels: Sequence[np.ndarray], gt_difficult: Sequence[np.ndarray] | None = None,
                    iou_thresholds: Sequence[float] = (0.5, 0.7), top_n: int | None = None) -> dict[str, Any]:
    """Recall, average recall and MABO of per-image proposals against the ground truth.

    Args:
        proposals: per image, (R_i, 4) proposals in rank order.
        gt_boxes: per image, (G_i, 4) ground-truth boxes.
        gt_labels: per image, (G_i,) class labels (for MABO).
        gt_difficult: per image, (G_i,) difficult flags; difficult boxes are left out.
        iou_thresholds: thresholds of the ``recall`` dict.
        top_n: use only the first ``top_n`` proposals of each image (None: all).

    Returns:
        ``{"recall": {t: fraction}, "recall_50", "recall_70", "average_recall", "mabo",
        "abo_per_class": {label: ABO}, "boxes_per_image", "num_images", "num_gt"}``; fractions
        in [0, 1], NaN when there is no (non-difficult) ground truth.
    """
    if top_n is not None and top_n < 1:
        raise ValueError(f"top_n must be positive or None, got {top_n!r}")
    images = _prepare(proposals, gt_boxes, gt_labels, gt_difficult)
    overlaps, labels, counts = [], [], []
    for props, boxes, lab in images:
        props = props[:top_n] if top_n is not None else props
        overlaps.append(best_overlaps(props, boxes))
        labels.append(lab)
        counts.append(len(props))
    all_overlaps = np.concatenate(overlaps) if overlaps else np.zeros(0)
    result = _scores(all_overlaps, np.concatenate(labels) if labels else np.zeros(0, np.int64), iou_thresholds)
    result.update(boxes_per_image=float(np.mean(counts)) if counts else float("nan"), num_images=len(images),
                  num_gt=int(len(all_overlaps)))
    return result


def recall_vs_proposals(proposals: Sequence[np.ndarray], gt_boxes: Sequence[np.ndarray],
                        gt_labels: Sequence[np.ndarray], gt_difficult: Sequence[np.ndarray] | None = None,
                        counts: Sequence[int | None] = DEFAULT_COUNTS) -> dict[str, list]:
    """The figures of :func:`proposal_recall` for the first N proposals of each image, for each N.

    One IoU matrix per image: the best overlap with the first N proposals is its running
    maximum down the rank order, read at row N (only those rows are kept).

    Args:
        proposals, gt_boxes, gt_labels, gt_difficult: as :func:`proposal_recall`.
        counts: the N values (None: all proposals).

    Returns:
        ``{"counts": [...], "boxes_per_image", "recall_50", "recall_70", "average_recall",
        "mabo"}``, each a list aligned with ``counts``.
    """
    for n in counts:
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
            raise ValueError(f"counts must be positive ints or None, got {n!r}")
    images = _prepare(proposals, gt_boxes, gt_labels, gt_difficult)
    used = np.zeros((len(counts), len(images)), np.int64)  # proposals used per count and image
    best = []  # per image: (len(counts), G) best overlaps with the first N proposals
    for j, (props, boxes, _) in enumerate(images):
        iou = box_iou_voc(props.reshape(-1, 4), boxes)
        running = np.concatenate([np.zeros((1, len(boxes))), np.maximum.accumulate(iou, axis=0)])
        used[:, j] = [len(props) if n is None else min(int(n), len(props)) for n in counts]
        best.append(running[used[:, j]])
    labels = np.concatenate([lab for _, _, lab in images]) if images else np.zeros(0, np.int64)
    keys = ("recall_50", "recall_70", "average_recall", "mabo")
    out: dict[str, list] = {"counts": list(counts), "boxes_per_image": [], **{k: [] for k in keys}}
    for k_count in range(len(counts)):
        overlaps = np.concatenate([b[k_count] for b in best]) if best else np.zeros(0)
        scores = _scores(overlaps, labels, ())
        out["boxes_per_image"].append(float(used[k_count].mean()) if len(images) else float("nan"))
        for k in keys:
            out[k].append(scores[k])
    return out


def plot_recall_vs_proposals(curve: Mapping[str, Sequence], path: str | os.PathLike[str],
                             title: str | None = None) -> Path:
    """Draws recall@0.5, recall@0.7, average recall and MABO against proposals per image (log x).

    Args:
        curve: the dict of :func:`recall_vs_proposals`.
        path: where the PNG goes (written atomically; parent folders are created).
        title: the plot's title (default: "recall vs number of proposals").

    Returns:
        The path written.
    """
    x = np.asarray(curve["boxes_per_image"], dtype=np.float64)
    fig = Figure(figsize=(7, 5), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.add_subplot(1, 1, 1)
    for key, label, style in (("recall_50", "recall @ IoU 0.5", "o-"), ("recall_70", "recall @ IoU 0.7", "s-"),
                              ("average_recall", "average recall (0.5:0.95)", "^-"), ("mabo", "MABO", "d--")):
        axes.plot(x, curve[key], style, label=label)
    axes.set_xscale("log")
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("proposals per image")
    axes.set_ylabel("fraction")
    axes.set_title(title or "recall vs number of proposals")
    axes.grid(alpha=0.3, which="both")
    axes.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png")
    return Path(path)
