"""Semantic segmentation scores from one dataset-level confusion matrix (FCN / VOC convention).

Pixels whose ground truth is ``ignore_index`` (VOC: 255, the object borders) are not counted.
With TP, FP, FN taken from the confusion matrix over the whole dataset (not averaged per image):

* IoU_c = TP / (TP + FP + FN), NaN when the class is absent from both ground truth and prediction;
* pixel accuracy = trace / total;
* class accuracy_c = TP / (TP + FN), NaN when the class is absent from the ground truth;
* means are NaN-means (classes with nothing to score are left out).

Shape shorthand: B = batch, K = classes (background included), H, W = mask height and width.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from visiontasks.evaluation.arrays import to_numpy

__all__ = ["confusion_matrix", "segmentation_scores", "SegmentationEvaluator", "split_background", "BACKGROUND_NAMES"]

#: Names that, first in a class list, name label 0 of a segmentation (the rest are 1..C).
BACKGROUND_NAMES = ("background", "_background_", "__background__", "bg", "void", "unlabeled", "unlabelled")


def split_background(classes: Sequence[str] | None) -> tuple[str, list[str] | None]:
    """``(name of label 0, names of labels 1..C)`` from a class list whose first name may name label 0.

    Args:
        classes: names of labels 1..C, optionally preceded by one of :data:`BACKGROUND_NAMES`;
            None: VOC's (the second item is then None).

    Raises:
        ValueError: ``["auto"]`` (a detection option) or a list naming only label 0.
    """
    if classes is not None and list(classes) == ["auto"]:
        raise ValueError("--classes auto applies to detection; give the names of mask labels 1..C")
    if classes and classes[0].lower() in BACKGROUND_NAMES:
        if len(classes) == 1:
            raise ValueError(f"--classes names only label 0 ({classes[0]!r}); add the names of labels 1..C")
        return classes[0], list(classes[1:])
    return "background", None if classes is None else list(classes)


def _check_range(name: str, values: np.ndarray, num_classes: int) -> None:
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        bad = np.unique(values[(values < 0) | (values >= num_classes)])
        raise ValueError(f"{name} has values {bad[:10].tolist()!r} outside 0..{num_classes - 1}")


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int | None = 255) -> np.ndarray:
    """Counts (ground truth, prediction) pixel pairs.

    ============  ===========  ==================================
    name          shape        dtype
    ============  ===========  ==================================
    pred          (..., H, W)  int, values in ``0..K-1``
    gt            (..., H, W)  int, ``0..K-1`` or ``ignore_index``
    returns       (K, K)       int64, rows = gt, columns = pred
    ============  ===========  ==================================

    Args:
        pred: predicted labels.
        gt: ground-truth labels, same shape as ``pred``.
        num_classes: K.
        ignore_index: ground-truth value whose pixels are skipped (None: none).

    Raises:
        ValueError: shapes differ, or a value lies outside ``0..K-1`` (``ignore_index`` allowed in ``gt`` only).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes!r}")
    pred = to_numpy(pred)
    gt = to_numpy(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt shapes differ: {pred.shape!r} vs {gt.shape!r}")
    if pred.dtype.kind not in "iub" or gt.dtype.kind not in "iub":
        raise ValueError(f"labels must be integers, got dtypes {pred.dtype} and {gt.dtype}")
    pred = pred.reshape(-1).astype(np.int64)
    gt = gt.reshape(-1).astype(np.int64)
    _check_range("pred", pred, num_classes)  # every predicted pixel, ignored ones included
    if ignore_index is not None:
        keep = gt != ignore_index
        pred, gt = pred[keep], gt[keep]
    _check_range("gt", gt, num_classes)
    counts = np.bincount(gt * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _nanmean(values: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN -> NaN, quietly
        return float(np.nanmean(values)) if values.size else float("nan")


def segmentation_scores(conf: np.ndarray) -> dict[str, Any]:
    """IoU, accuracies and their means from a (K, K) confusion matrix (rows = gt, columns = pred).

    Returns:
        ===================  ============  ============================================
        key                  shape         meaning
        ===================  ============  ============================================
        iou                  (K,) float64  NaN where gt and pred both lack the class
        miou                 float         NaN-mean of ``iou``
        pixel_accuracy       float         trace / total (NaN when nothing was counted)
        class_accuracy       (K,) float64  recall per class, NaN where gt lacks it
        mean_class_accuracy  float         NaN-mean of ``class_accuracy``
        ===================  ============  ============================================
    """
    conf = np.asarray(conf, dtype=np.float64)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f"confusion matrix must be square (K, K), got shape {conf.shape!r}")
    tp = np.diag(conf)
    gt_count = conf.sum(1)
    union = gt_count + conf.sum(0) - tp
    iou = np.divide(tp, union, out=np.full_like(tp, np.nan), where=union > 0)
    class_acc = np.divide(tp, gt_count, out=np.full_like(tp, np.nan), where=gt_count > 0)
    total = conf.sum()
    return {
        "iou": iou,
        "miou": _nanmean(iou),
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
        "class_accuracy": class_acc,
        "mean_class_accuracy": _nanmean(class_acc),
    }


class SegmentationEvaluator:
    """Accumulates a confusion matrix over a dataset; ``compute()`` gives :func:`segmentation_scores`.

    Args:
        num_classes: K, background included.
        ignore_index: ground-truth value to skip.

    Example::

        ev = SegmentationEvaluator(21)
        for images, masks in loader:
            ev.update(model(images)["out"], masks)   # logits (B, K, H, W) or labels (B, H, W)
        scores = ev.compute()
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        """Forgets everything counted so far."""
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, preds: Any, gts: Any) -> None:
        """Adds predictions (labels (H, W)/(B, H, W), or logits (K, H, W)/(B, K, H, W)) and their ground truth.

        Args:
            preds: tensors or arrays; logits are recognised by having one more dimension than ``gts``.
            gts: ground-truth labels (H, W) or (B, H, W).
        """
        preds = to_numpy(preds)
        gts = to_numpy(gts)
        if preds.ndim == gts.ndim + 1:
            preds = preds.argmax(axis=-3)
        self.confusion += confusion_matrix(preds, gts, self.num_classes, self.ignore_index)

    def compute(self) -> dict[str, Any]:
        """Scores of everything added so far, plus ``"confusion"`` (K, K) int64."""
        return {**segmentation_scores(self.confusion), "confusion": self.confusion.copy()}
