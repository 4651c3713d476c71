"""Input/output transform of the two-stage detectors: torchvision's ``GeneralizedRCNNTransform``.

It normalises each (3, H, W) image in [0, 1] with the ImageNet mean/std, resizes it so that the
shorter side is ``min_size`` (600) unless the longer would exceed ``max_size`` (1000) — bilinear,
like py-faster-rcnn's ``cv2.resize`` — scales the target boxes alike, zero-pads the batch to a
multiple of the backbone stride, and maps test boxes back to original-image pixels
(``postprocess``). A list of ``min_size`` values gives multi-scale training (one drawn per image;
the last is used at test time). This module adds the two conversions the detector needs for
proposals given in original-image pixels and for the RPN's minimum box size.

Shape shorthand: B = images, R = proposals of an image.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes

__all__ = ["DetectionTransform", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DetectionTransform(GeneralizedRCNNTransform):
    """``GeneralizedRCNNTransform`` with ImageNet statistics and two helpers.

    Args:
        min_size: shorter side after resizing (or a list of them for multi-scale training).
        max_size: cap on the longer side.
        size_divisible: batch padding multiple (the backbone stride).
    """

    def __init__(self, min_size: int | Sequence[int] = 600, max_size: int = 1000, size_divisible: int = 16) -> None:
        sizes = tuple(int(s) for s in min_size) if isinstance(min_size, (list, tuple)) else (int(min_size),)
        if not sizes or any(s <= 0 for s in sizes):
            raise ValueError(f"min_size must be a positive integer or a list of them, got {min_size!r}")
        if int(max_size) < max(sizes):
            raise ValueError(f"max_size must be >= min_size, got max_size={max_size!r}, min_size={min_size!r}")
        super().__init__(sizes, int(max_size), list(IMAGENET_MEAN), list(IMAGENET_STD),
                         size_divisible=int(size_divisible))

    @staticmethod
    def scale_factors(original_sizes: Sequence[tuple[int, int]],
                      image_sizes: Sequence[tuple[int, int]]) -> list[float]:
        """Input pixels per original pixel of each image (geometric mean of the two axes)."""
        return [((h / oh) * (w / ow)) ** 0.5 for (oh, ow), (h, w) in zip(original_sizes, image_sizes)]

    @staticmethod
    def resize_proposals(proposals: Sequence[torch.Tensor], original_sizes: Sequence[tuple[int, int]],
                         image_sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
        """Maps B tensors (R, 4) from original-image pixels to input pixels."""
        return [resize_boxes(p.float(), tuple(o), tuple(s)) for p, o, s in zip(proposals, original_sizes, image_sizes)]
