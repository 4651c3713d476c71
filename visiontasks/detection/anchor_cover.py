"""The anchors a two-stage detector lays on an image, for the data doctor's anchor-coverage check.

:func:`anchor_fn` turns a built detector into ``fn(H, W) -> (anchors, (sx, sy))``: the image is
resized as the detector's transform does at test time (shorter side ``min_size[-1]``, longer at most
``max_size``; ``floor(side * scale)`` as torchvision's ``_resize_image_and_masks``), padded to the
stride, and the RPN's :class:`~visiontasks.detection.anchors.AnchorGenerator` fills the stride-``s``
feature map; anchors crossing the image border are left out unless the RPN ``allow_border`` s them
(py-faster-rcnn's anchor_target_layer.py ``inds_inside``), as in training.

Shape shorthand: A = anchors of an image.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from visiontasks.detection.sampling import inside_image

__all__ = ["anchor_fn"]


def anchor_fn(model: torch.nn.Module) -> Callable[[int, int], tuple[torch.Tensor, tuple[float, float]]] | None:
    """The anchor function of ``model``, or None when it has no RPN anchors (one-stage, proposals)."""
    proposer = getattr(model, "proposer", None)
    generator = getattr(proposer, "anchor_generator", None)
    transform = getattr(model, "transform", None)
    if generator is None or transform is None or not hasattr(transform, "min_size"):
        return None
    min_size, max_size = int(transform.min_size[-1]), int(transform.max_size)
    stride, allow = int(generator.stride), bool(getattr(proposer, "allow_border", False))

    def fn(h: int, w: int) -> tuple[torch.Tensor, tuple[float, float]]:
        scale = min(min_size / min(h, w), max_size / max(h, w))
        rh, rw = int(math.floor(h * scale)), int(math.floor(w * scale))
        anchors = generator((math.ceil(rh / stride), math.ceil(rw / stride)), torch.device("cpu"))
        if not allow:
            anchors = anchors[inside_image(anchors, (rh, rw))]
        return anchors, (rw / w, rh / h)

    return fn
