"""RoI poolers: per-region feature extraction from one feature map.

Interface shared by every pooler::

    pooler(features, proposals, image_sizes) -> (R, C, P, P)   # or (R, D) for a flat pooler
    pooler.output_dim(C) -> D                                   # flattened width; the box head is sized from it

where ``proposals`` is a list of B tensors (R_i, 4) xyxy in input pixels and R = Σ R_i, rows in
image order. ``image_sizes`` (the resized, unpadded (h, w) of each image) is part of the
interface for poolers that need it; RoIPool / RoIAlign do not.

- ``RoIPool`` (Fast R-CNN §2.1, the default): ``torchvision.ops.roi_pool``, max pooling over a
  P × P grid; box corners are rounded to feature cells as in the Caffe layer.
- ``RoIAlign`` (Mask R-CNN; an option): ``torchvision.ops.roi_align`` with bilinear sampling,
  ``aligned=True`` (continuous coordinates, no half-pixel shift) and 2 samples per bin side.
- ``SpatialPyramidPool`` (SPP-net; ``visiontasks/detection/spp.py``): max pooling over the
  levels {6, 3, 2, 1} (50 bins per channel), flat output (R, C·50).

Shape shorthand: B = images, C = channels, P = output grid side, R = regions.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torchvision.ops import roi_align, roi_pool

from visiontasks.detection.roi_max_pool import roi_max_pool
from visiontasks.detection.spp import SpatialPyramidPool

__all__ = ["RoIPooler", "RoIPool", "RoIAlign", "build_pooler", "POOLERS"]


def _low_precision(features: torch.Tensor) -> torch.dtype | None:
    """The bf16/fp16 dtype to pool ``features`` in without autograd (autocast's, or the map's own
    where autocast is off), None where pooling must stay float32 (fp32 calls, training)."""
    if torch.is_grad_enabled() and features.requires_grad:
        return None  # training: torchvision's backward (its argmax) as before
    device_type = features.device.type
    if torch.is_autocast_enabled(device_type):
        low = torch.get_autocast_dtype(device_type)
        return low if low in (torch.bfloat16, torch.float16) else None
    return features.dtype if features.dtype in (torch.bfloat16, torch.float16) else None


class RoIPooler(nn.Module):
    """Base class: pools each proposal to a fixed-size feature.

    Args:
        output_size: P, the side of the output grid.
        spatial_scale: feature cells per input pixel (1/16 for stride 16).
    """

    #: Output only feeds the box head (fp32_boundaries leaves a bf16 output as it is).
    vt_low_precision_output = True

    def __init__(self, output_size: int, spatial_scale: float) -> None:
        super().__init__()
        if int(output_size) <= 0:
            raise ValueError(f"output_size must be a positive integer, got {output_size!r}")
        if spatial_scale <= 0:
            raise ValueError(f"spatial_scale must be positive, got {spatial_scale!r}")
        self.output_size = int(output_size)
        self.spatial_scale = float(spatial_scale)

    def forward(self, features: torch.Tensor, proposals: list[torch.Tensor],
                image_sizes: list[tuple[int, int]]) -> torch.Tensor:
        """Args:
            features: (B, C, H, W).
            proposals: B tensors (R_i, 4) xyxy in input pixels.
            image_sizes: B (h, w) of the unpadded inputs.

        Returns:
            (R, C, P, P) pooled features, in the order of ``proposals``.
        """
        # Pool in float32: fp16 box corners lose pixels, and the ops want one dtype (AMP included).
        boxes = [p.float() for p in proposals]
        return self._pool(features.float(), boxes).to(features.dtype)

    def output_dim(self, channels: int) -> int:
        """Flattened width of one pooled RoI for a ``channels``-deep feature map (C·P²)."""
        return int(channels) * self.output_size**2

    def _pool(self, features: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class RoIPool(RoIPooler):
    """Fast R-CNN's RoI max pooling (``torchvision.ops.roi_pool``).

    Under a bf16/fp16 autocast (inference, no autograd) it pools the low-precision map directly
    (:func:`~visiontasks.detection.roi_max_pool.roi_max_pool`, the same values as pooling in
    float32 and rounding) and returns the low-precision result that fc6 consumes: no float32
    copy of the map or of the (R, C, P, P) output (issue 24). float32 calls are unchanged.
    """

    def forward(self, features: torch.Tensor, proposals: list[torch.Tensor],
                image_sizes: list[tuple[int, int]]) -> torch.Tensor:
        """See :meth:`RoIPooler.forward`; bf16/fp16 output under a low-precision autocast."""
        low = _low_precision(features)
        if low is None:
            return super().forward(features, proposals, image_sizes)
        return roi_max_pool(features.to(low), [p.float() for p in proposals], self.output_size, self.spatial_scale)

    def _pool(self, features: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        return roi_pool(features, boxes, self.output_size, self.spatial_scale)


class RoIAlign(RoIPooler):
    """Bilinear RoIAlign (``torchvision.ops.roi_align``, aligned, sampling ratio 2)."""

    def _pool(self, features: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        return roi_align(features, boxes, self.output_size, self.spatial_scale, sampling_ratio=2, aligned=True)


#: Poolers selectable by name (``faster_rcnn(pooler=...)``, ``fast_rcnn(pooler=...)``).
POOLERS: dict[str, type[nn.Module]] = {"roi_pool": RoIPool, "roi_align": RoIAlign, "spp": SpatialPyramidPool}


def build_pooler(name: str, output_size: int | Sequence[int], spatial_scale: float) -> nn.Module:
    """The pooler called ``name``.

    Args:
        name: "roi_pool", "roi_align" or "spp".
        output_size: P for the grid poolers; the pyramid levels for "spp" (an int n means the
            SPP-net default levels (6, 3, 2, 1) when n = 6).
        spatial_scale: feature cells per input pixel.
    """
    if name not in POOLERS:
        raise ValueError(f"pooler must be one of {sorted(POOLERS)}, got {name!r}")
    return POOLERS[name](output_size, spatial_scale)
