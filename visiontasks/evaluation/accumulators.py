"""Accumulator for VOC detection AP in the training loop: ``update(predictions, targets)``, ``compute()``.

Shape shorthand: D = detections of an image, G = its ground-truth boxes.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from visiontasks.evaluation.arrays import to_numpy
from visiontasks.evaluation.voc.ap import eval_detection_voc

__all__ = ["VOCDetectionEvaluator"]


class VOCDetectionEvaluator:
    """Collects per-image detections and ground truth; ``compute()`` runs :func:`eval_detection_voc`.

    ===========  ===================================================  ===================
    argument     per-image dict keys and shapes                       dtype
    ===========  ===================================================  ===================
    predictions  ``boxes`` (D, 4), ``labels`` (D,), ``scores`` (D,)   tensors or arrays
    targets      ``boxes`` (G, 4), ``labels`` (G,),                   tensors or arrays
                 ``difficult`` (G,) (optional: none difficult)
    ===========  ===================================================  ===================

    Boxes are ``xyxy`` 0-based pixels of the same image; labels ``1..C``.

    Args:
        num_classes: C, the number of object classes (background excluded).
        metric: ``"voc07"`` (11-point) or ``"voc12"`` (all-point).
        iou_thresh: overlap a true positive needs.
        reference: ``"devkit"`` (``>=`` the threshold, MATLAB's 11 recall points) or ``"voc_eval"``
            (py-faster-rcnn: ``>``, ``np.arange``'s points); see :mod:`visiontasks.evaluation.voc.ap`.
    """

    def __init__(self, num_classes: int, metric: str = "voc07", iou_thresh: float = 0.5,
                 reference: str = "devkit") -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes!r}")
        if metric not in ("voc07", "voc12"):
            raise ValueError(f"metric must be 'voc07' or 'voc12', got {metric!r}")
        self.num_classes = num_classes
        self.metric = metric
        self.iou_thresh = iou_thresh
        self.reference = reference
        self.reset()

    def reset(self) -> None:
        """Forgets every image added so far."""
        self._fields: dict[str, list[np.ndarray]] = {k: [] for k in ("pb", "pl", "ps", "gb", "gl", "gd")}

    def __len__(self) -> int:
        return len(self._fields["gb"])

    def update(self, predictions: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]) -> None:
        """Adds a batch of images (one prediction dict and one target dict per image)."""
        if len(predictions) != len(targets):
            raise ValueError(f"{len(predictions)} predictions but {len(targets)} targets")
        for pred, tgt in zip(predictions, targets):
            gt_labels = to_numpy(tgt["labels"], np.int64).reshape(-1)
            difficult = tgt.get("difficult")
            self._fields["pb"].append(to_numpy(pred["boxes"], np.float64).reshape(-1, 4))
            self._fields["pl"].append(to_numpy(pred["labels"], np.int64).reshape(-1))
            self._fields["ps"].append(to_numpy(pred["scores"], np.float64).reshape(-1))
            self._fields["gb"].append(to_numpy(tgt["boxes"], np.float64).reshape(-1, 4))
            self._fields["gl"].append(gt_labels)
            self._fields["gd"].append(np.zeros(len(gt_labels), dtype=bool) if difficult is None
                                      else to_numpy(difficult, bool).reshape(-1))

    def arrays(self) -> tuple[list[np.ndarray], ...]:
        """Every image added: ``(pred boxes, labels, scores, gt boxes, labels, difficult)``, lists of arrays."""
        f = self._fields
        return f["pb"], f["pl"], f["ps"], f["gb"], f["gl"], f["gd"]

    def compute(self) -> dict[str, Any]:
        """:func:`eval_detection_voc` over every image added: ``{"ap", "map", "precision", "recall", "npos"}``."""
        f = self._fields
        return eval_detection_voc(f["pb"], f["pl"], f["ps"], f["gb"], f["gl"], f["gd"],
                                  num_classes=self.num_classes, iou_thresh=self.iou_thresh, metric=self.metric,
                                  reference=self.reference)
