"""Externally computed proposals (selective search, EdgeBoxes …) as a two-stage ``proposer``.

Fast R-CNN (Girshick 2015) is ``TwoStageDetector`` with this proposer instead of the RPN: the
caller passes ``proposals`` — per image an (R, 4) xyxy tensor in original-image pixels — to
``model(images, targets, proposals=...)``; the detector maps them to input pixels, and this
module clips them to the image, drops boxes with a side below ``min_size`` (original pixels;
empty boxes always) and optionally keeps only the first ``max_proposals`` (in the given order,
which for selective search is its ranking). It has no parameters and no losses.

Shape shorthand: B = images, R = proposals of an image.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import clip_boxes_to_image

__all__ = ["PrecomputedProposals"]


class PrecomputedProposals(nn.Module):
    """Passes given proposals through, cleaned up.

    Args:
        min_size: smallest box side kept, in original-image pixels (0 keeps every non-empty box).
        max_proposals: keep at most this many per image (None: all).
    """

    def __init__(self, min_size: float = 0.0, max_proposals: int | None = None) -> None:
        super().__init__()
        if min_size < 0:
            raise ValueError(f"min_size must be >= 0, got {min_size!r}")
        if max_proposals is not None and int(max_proposals) <= 0:
            raise ValueError(f"max_proposals must be positive or None, got {max_proposals!r}")
        self.min_size = float(min_size)
        self.max_proposals = None if max_proposals is None else int(max_proposals)

    def forward(self, images: ImageList, features: torch.Tensor, targets: list[dict] | None = None,
                proposals: list[torch.Tensor] | None = None,
                scales: Sequence[float] | None = None) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Cleans the given proposals.

        Args:
            images: the batched input (``image_sizes``: resized, unpadded sizes).
            features: (B, C, H, W) backbone features (only their device is used).
            targets: unused (the proposer has no loss).
            proposals: B tensors (R_i, 4) xyxy, already in input pixels (the detector maps them).
            scales: per image, input pixels per original pixel (default 1).

        Returns:
            ``(proposals, {})``: B tensors (R'_i, 4) float32 in input pixels.
        """
        n = len(images.image_sizes)
        if proposals is None:
            raise ValueError("PrecomputedProposals needs proposals=[(R, 4) tensor per image]")
        if len(proposals) != n:
            raise ValueError(f"got proposals for {len(proposals)} images but {n} images")
        if scales is None:
            scales = [1.0] * n
        out = []
        for boxes, size, scale in zip(proposals, images.image_sizes, scales):
            if boxes.dim() != 2 or boxes.shape[1] != 4:
                raise ValueError(f"each proposals tensor must be (R, 4), got shape {tuple(boxes.shape)}")
            boxes = clip_boxes_to_image(boxes.to(device=features.device, dtype=torch.float32), size)
            side = torch.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
            boxes = boxes[(side > 0) & (side >= self.min_size * float(scale))]
            out.append(boxes[: self.max_proposals] if self.max_proposals else boxes)
        return out, {}
