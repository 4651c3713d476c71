"""YOLOv1 inference: grid predictions → class-specific scored boxes → per-class NMS.

For every cell (row i, column j) and predictor b, the box is (§2, darknet's
``convert_yolo_detections``)::

    cx = (x + j) / S,  cy = (y + i) / S,  w = sqrt_w²,  h = sqrt_h²     (fractions of the image)

and its class-specific confidence scores (§2, "At test time we multiply the conditional class
probabilities and the individual box confidence predictions")::

    score_c = Pr(class_c | object) × confidence

Scores above ``score_thresh`` are kept (> , as darknet; darknet validates at 0.001 and displays at
0.2; our default 0.005 is for evaluation — the presets of ``visiontasks.load_model`` set the
threshold for users), boxes are clipped to the image, zero-size boxes dropped, and per-class
NMS at ``nms_thresh`` (0.5, darknet's ``do_nms_sort`` in ``validate_yolo`` and ``test_yolo``) keeps
at most ``detections_per_img`` (100) boxes, as :func:`select_detections` does for the R-CNN family.
The boxes are in *input* pixels; the detector maps them back to the original image.

Shape shorthand: N = images, S = grid side, B = boxes per cell, C = classes.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from visiontasks.detection.predictor import select_detections

__all__ = ["grid_boxes", "cxcywh_to_xyxy", "class_scores", "YOLODecoder"]


def grid_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """(N, S, S, B, 4) raw ``(x, y, sqrt_w, sqrt_h)`` → (N, S, S, B, 4) ``(cx, cy, w, h)`` in image fractions."""
    s = boxes.shape[1]
    if boxes.shape[2] != s:
        raise ValueError(f"the grid must be square (N, S, S, B, 4), got {tuple(boxes.shape)}")
    idx = torch.arange(s, device=boxes.device, dtype=boxes.dtype)
    col = idx.view(1, 1, s, 1)
    row = idx.view(1, s, 1, 1)
    cx = (boxes[..., 0] + col) / s
    cy = (boxes[..., 1] + row) / s
    return torch.stack([cx, cy, boxes[..., 2] ** 2, boxes[..., 3] ** 2], dim=-1)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``(cx, cy, w, h)`` → ``(x0, y0, x1, y1)`` on the last dimension."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def class_scores(pred: torch.Tensor, num_boxes: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Splits (N, S, S, 5B+C) predictions into boxes and class-specific confidences.

    Returns:
        ``boxes`` (N, S, S, B, 4) xyxy in image fractions and ``scores`` (N, S, S, B, C) =
        Pr(class | object) × confidence.
    """
    n, s = pred.shape[0], pred.shape[1]
    if pred.dim() != 4 or pred.shape[2] != s or pred.shape[3] != 5 * num_boxes + num_classes:
        raise ValueError(f"predictions must be (N, S, S, 5B+C) = (N, S, S, {5 * num_boxes + num_classes}) for "
                         f"B={num_boxes}, C={num_classes}; got {tuple(pred.shape)}")
    per_box = pred[..., : 5 * num_boxes].reshape(n, s, s, num_boxes, 5)
    probs = pred[..., 5 * num_boxes:]
    boxes = cxcywh_to_xyxy(grid_boxes(per_box[..., :4]))
    scores = probs.unsqueeze(3) * per_box[..., 4:5]
    return boxes, scores


class YOLODecoder(nn.Module):
    """Predictions (N, S, S, 5B+C) → N dicts ``boxes`` (in input pixels), ``labels`` (1..C), ``scores``.

    Args:
        num_boxes: B.
        num_classes: C (no background).
        score_thresh: class-specific confidences above this are kept.
        nms_thresh: per-class NMS IoU threshold.
        detections_per_img: most detections per image.
    """

    def __init__(self, num_boxes: int = 2, num_classes: int = 20, score_thresh: float = 0.005,
                 nms_thresh: float = 0.5, detections_per_img: int = 100) -> None:
        super().__init__()
        if not 0.0 <= float(score_thresh) < 1.0:
            raise ValueError(f"score_thresh must be in [0, 1), got {score_thresh!r}")
        if not 0.0 < float(nms_thresh) <= 1.0:
            raise ValueError(f"nms_thresh must be in (0, 1], got {nms_thresh!r}")
        if int(detections_per_img) <= 0:
            raise ValueError(f"detections_per_img must be positive, got {detections_per_img!r}")
        self.num_boxes, self.num_classes = int(num_boxes), int(num_classes)
        self.score_thresh = float(score_thresh)
        self.nms_thresh = float(nms_thresh)
        self.detections_per_img = int(detections_per_img)

    @torch.no_grad()
    def forward(self, pred: torch.Tensor, image_sizes: list[tuple[int, int]]) -> list[dict]:
        """Detections per image in the pixels of ``image_sizes`` (the network's input, (h, w) each)."""
        pred = pred.float()
        boxes, scores = class_scores(pred, self.num_boxes, self.num_classes)
        n = pred.shape[0]
        boxes = boxes.reshape(n, -1, 4)
        scores = scores.reshape(n, -1, self.num_classes)
        r = boxes.shape[1]
        scale = torch.tensor([[w, h, w, h] for h, w in image_sizes], dtype=boxes.dtype, device=boxes.device)
        boxes = boxes * scale[:, None, :]
        # select_detections' layout: column 0 = background (never kept), class-specific boxes.
        k = self.num_classes + 1
        flat_scores = torch.cat([scores.new_zeros(n, r, 1), scores], dim=2).reshape(n * r, k)
        flat_boxes = boxes.reshape(n * r, 1, 4).expand(n * r, k, 4)
        return select_detections(flat_scores, flat_boxes, [r] * n, [tuple(s) for s in image_sizes],
                                 self.score_thresh, self.nms_thresh, self.detections_per_img)
