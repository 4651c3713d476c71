"""Input/output transform of the two-stage detectors: torchvision's ``GeneralizedRCNNTransform``.

It normalises each (3, H, W) image in [0, 1] with the ImageNet mean/std, resizes it so that the
shorter side is ``min_size`` (600) unless the longer would exceed ``max_size`` (1000) — bilinear,
like py-faster-rcnn's ``cv2.resize`` — scales the target boxes alike, zero-pads the batch to a
multiple of the backbone stride, and maps test boxes back to original-image pixels
(``postprocess``). A list of ``min_size`` values gives multi-scale training (one drawn per image;
the last is used at test time). This module adds the two conversions the detector needs for
proposals given in original-image pixels and for the RPN's minimum box size.

:class:`WarpTransform` is the other input convention of the lineage: every image warped
(anisotropically) to one fixed size, YOLOv1's 448 × 448, boxes scaled per axis and mapped back
per axis by ``postprocess``. :func:`build_transform` picks one of the two from plain arguments.

Shape shorthand: B = images, R = proposals of an image.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes

from visiontasks.backbones.base import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["DetectionTransform", "NormalizeTransform", "WarpTransform", "build_transform", "IMAGENET_MEAN",
           "IMAGENET_STD"]


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


class NormalizeTransform(DetectionTransform):
    """Normalises and pads the batch but keeps every image at its own size (R-CNN warps regions
    from the original image; SPP-net's scale pyramid resizes inside its backbone)."""

    def __init__(self, size_divisible: int = 16) -> None:
        super().__init__(1, 1, size_divisible=size_divisible)

    def resize(self, image: torch.Tensor, target: dict | None = None) -> tuple[torch.Tensor, dict | None]:
        return image, target


class WarpTransform(nn.Module):
    """Warps every image to one fixed (height, width), ignoring the aspect ratio (YOLOv1's input).

    Same interface as :class:`DetectionTransform`: ``transform(images, targets) -> (ImageList,
    targets)`` with boxes in input pixels, ``postprocess(detections, sizes, original_sizes)``
    mapping boxes back to original pixels, and the two proposal helpers.

    Args:
        size: output side (int) or (height, width); 448 in the YOLO paper.
        mean: per-channel mean subtracted after warping (None: no normalisation, as darknet feeds
            pixels in [0, 1]).
        std: per-channel standard deviation (with ``mean``).
    """

    def __init__(self, size: int | Sequence[int] = 448, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        super().__init__()
        hw = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(int(s) for s in size)
        if len(hw) != 2 or min(hw) <= 0:
            raise ValueError(f"size must be a positive int or (height, width), got {size!r}")
        if (mean is None) != (std is None):
            raise ValueError(f"give both mean and std or neither, got mean={mean!r}, std={std!r}")
        self.size = hw
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None
                ) -> tuple[ImageList, list[dict] | None]:
        """Warps and stacks B images (3, H, W) in [0, 1]; scales the target boxes per axis."""
        out = []
        for img in images:
            x = img.float()
            if self.mean is not None:
                x = (x - self.mean.to(x.device)) / self.std.to(x.device)
            out.append(F.interpolate(x[None], size=self.size, mode="bilinear", align_corners=False)[0])
        if targets is not None:
            targets = [{**t, "boxes": resize_boxes(t["boxes"].float(), tuple(img.shape[-2:]), self.size)}
                       for t, img in zip(targets, images)]
        return ImageList(torch.stack(out), [self.size] * len(out)), targets

    @staticmethod
    def postprocess(detections: list[dict], image_sizes: Sequence[tuple[int, int]],
                    original_sizes: Sequence[tuple[int, int]]) -> list[dict]:
        """Maps each detection's ``boxes`` from input pixels back to original-image pixels."""
        return [{**d, "boxes": resize_boxes(d["boxes"], tuple(s), tuple(o))}
                for d, s, o in zip(detections, image_sizes, original_sizes)]

    scale_factors = staticmethod(DetectionTransform.scale_factors)
    resize_proposals = staticmethod(DetectionTransform.resize_proposals)


def build_transform(kind: str = "resize", min_size: int | Sequence[int] = 600, max_size: int = 1000,
                    size_divisible: int = 16, warp_size: int | Sequence[int] = 448,
                    normalize: bool = True) -> nn.Module:
    """The input transform of a detector from plain (config) arguments.

    Args:
        kind: "resize" (keep aspect: shorter side ``min_size``, longer ≤ ``max_size``, padded to
            ``size_divisible``; the R-CNN family), "none" (normalise and pad only) or "warp"
            (fixed ``warp_size``; YOLO).
        min_size, max_size, size_divisible: see :class:`DetectionTransform`.
        warp_size: see :class:`WarpTransform`.
        normalize: "warp" only: subtract the ImageNet mean / divide by the std (for backbones
            pretrained that way); "resize" always normalises.

    Returns:
        A :class:`DetectionTransform` or :class:`WarpTransform`.
    """
    if kind == "resize":
        return DetectionTransform(min_size, max_size, size_divisible=size_divisible)
    if kind == "none":
        return NormalizeTransform(size_divisible)
    if kind == "warp":
        return WarpTransform(warp_size, IMAGENET_MEAN if normalize else None, IMAGENET_STD if normalize else None)
    raise ValueError(f"transform kind must be 'resize', 'none' or 'warp', got {kind!r}")
