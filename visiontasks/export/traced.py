"""Trace-friendly pieces of the detectors' test-time path (shapes kept as tensors, not Python ints).

``torch.onnx.export`` traces the model: a size read into a Python ``int``/``float`` becomes a
constant of the graph, right for the example image and silently wrong for any other size. These
helpers keep every size a tensor (``torch._shape_as_tensor``), the way torchvision's own
exportable detection code does, and reproduce the detectors' box selection step by step:
:func:`visiontasks.detection.predictor.select_detections` and the transforms' box rescaling.
The exporter checks each graph against the PyTorch model on several image sizes, so a step that
drifted from the model's would be reported, not shipped.
"""
from __future__ import annotations

import torch
from torchvision.ops import batched_nms, remove_small_boxes

__all__ = ["image_hw", "clip_boxes", "rescale_boxes", "select_boxes"]


def image_hw(image: torch.Tensor) -> torch.Tensor:
    """(H, W) of a (..., H, W) tensor as an int64 tensor (a graph value when traced)."""
    return torch._shape_as_tensor(image)[-2:]


def clip_boxes(boxes: torch.Tensor, size_hw: torch.Tensor) -> torch.Tensor:
    """Clips xyxy boxes (..., 4) to [0, W] × [0, H] (torchvision's ``clip_boxes_to_image`` bakes
    the size into a traced graph as a constant; this keeps it a graph value)."""
    h, w = size_hw[0].to(boxes.dtype), size_hw[1].to(boxes.dtype)
    x = torch.minimum(boxes[..., 0::2].clamp(min=0), w)
    y = torch.minimum(boxes[..., 1::2].clamp(min=0), h)
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)


def rescale_boxes(boxes: torch.Tensor, from_hw: torch.Tensor, to_hw: torch.Tensor) -> torch.Tensor:
    """Maps xyxy boxes from an image of size ``from_hw`` to one of ``to_hw`` (per axis)."""
    ratio = to_hw.float() / from_hw.float()  # (ry, rx)
    return boxes * torch.stack((ratio[1], ratio[0], ratio[1], ratio[0]))


def select_boxes(scores: torch.Tensor, boxes: torch.Tensor, size_hw: torch.Tensor, score_thresh: float,
                 nms_thresh: float, detections_per_img: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``select_detections`` for one image with a tensor size.

    Args:
        scores: (R, K) per-class scores, column 0 = background (dropped).
        boxes: (R, K, 4) class-specific boxes in input pixels.
        size_hw: (2,) int64 input size for clipping.
        score_thresh, nms_thresh, detections_per_img: the predictor's settings.

    Returns:
        ``(boxes (N, 4), scores (N,), labels (N,) int64)``, scores descending.
    """
    k = scores.shape[1]
    b = clip_boxes(boxes, size_hw)[:, 1:].reshape(-1, 4)
    s = scores[:, 1:].reshape(-1)
    labels = torch.arange(1, k, device=s.device).expand(scores.shape[0], k - 1).reshape(-1)
    keep = torch.where(s > score_thresh)[0]
    b, s, labels = b[keep], s[keep], labels[keep]
    keep = remove_small_boxes(b, 1e-2)
    b, s, labels = b[keep], s[keep], labels[keep]
    keep = batched_nms(b, s, labels, nms_thresh)[:detections_per_img]
    return b[keep], s[keep], labels[keep]
