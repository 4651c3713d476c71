"""SPP-net's multi-scale feature extraction (He et al. 2014, §4.2): conv5 once per image and scale.

The image is resized so that min(w, h) = s for each s ∈ {480, 576, 688, 864, 1200}, conv5 is
computed once per scale, and each window is pooled at the single scale where its scaled area is
closest to 224² (the paper's rule). Two parts, both plugged into ``TwoStageDetector`` slots:

- :class:`ScalePyramid` — the backbone slot: wraps a backbone, takes the ``ImageList`` (it needs
  the unpadded sizes), returns :class:`PyramidFeatures` (one padded feature batch per scale and
  the per-image resize factors);
- :class:`MultiScaleSPP` — the pooler slot: chooses each window's scale, maps the window into
  that scale's pixels and pools it with :class:`~visiontasks.detection.spp.SpatialPyramidPool`.

With one scale both reduce to the single-scale path (``min_size: 688``). Under autocast (bf16)
each scale's batch enters the body in the autocast dtype and channels-last, as R-CNN's crops
(``rcnn.warp.autocast_input``); without it nothing changes. The detector's transform
must not resize (``build_transform("none")``): windows stay in original-image pixels.

Shape shorthand: B = images, C = channels, S = scales, R = windows, D = C · Σ n².
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.detection.image_list import ImageList

from visiontasks.backbones.base import Backbone
from visiontasks.detection.rcnn.warp import autocast_input
from visiontasks.detection.spp import SPP_LEVELS, SpatialPyramidPool

__all__ = ["ScalePyramid", "PyramidFeatures", "MultiScaleSPP", "SPP_SCALES", "choose_scales"]

#: The five scales of SPP-net's detection experiments (shorter image side).
SPP_SCALES = (480, 576, 688, 864, 1200)


@dataclass
class PyramidFeatures:
    """Feature maps of every scale: ``maps[s]`` (B, C, H_s, W_s); ``factors[s]`` (B,) resize factors."""

    maps: list[torch.Tensor]
    factors: list[torch.Tensor]

    @property
    def device(self) -> torch.device:
        return self.maps[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.maps[0].dtype


def _resize_factor(h: int, w: int, scale: int, max_size: int) -> float:
    f = scale / min(h, w)
    return min(f, max_size / max(h, w))


class ScalePyramid(Backbone):
    """Runs ``backbone`` on each image at each scale (shorter side = s, longer ≤ ``max_size``).

    Args:
        backbone: a ``Backbone`` (its ``stride``, ``out_channels``, ``pool_size``, ``box_head`` are exposed);
            the pyramid is a ``Backbone`` that declares ``takes_image_list`` (it needs the unpadded sizes).
        scales: shorter sides.
        max_size: cap on the longer side at any scale.
    """

    takes_image_list = True

    def __init__(self, backbone: nn.Module, scales: Sequence[int] = SPP_SCALES, max_size: int = 2000) -> None:
        super().__init__()
        self.scales = tuple(int(s) for s in scales)
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales must be positive integers, got {scales!r}")
        self.max_size = int(max_size)
        self.body = backbone
        self.stride = backbone.stride
        self.out_channels = backbone.out_channels
        self.pool_size = backbone.pool_size

    def box_head(self, in_features: int | None = None) -> tuple[nn.Module, int]:
        return self.body.box_head(in_features)

    def forward(self, images: ImageList) -> PyramidFeatures:
        maps, factors = [], []
        for scale in self.scales:
            resized, fs = [], []
            for img, (h, w) in zip(images.tensors, images.image_sizes):
                f = _resize_factor(h, w, scale, self.max_size)
                size = (max(1, round(h * f)), max(1, round(w * f)))
                resized.append(F.interpolate(img[None, :, :h, :w], size=size, mode="bilinear", align_corners=False)[0])
                fs.append(f)
            hmax = max(r.shape[-2] for r in resized)
            wmax = max(r.shape[-1] for r in resized)
            batch = images.tensors.new_zeros(len(resized), 3, hmax, wmax)
            for i, r in enumerate(resized):
                batch[i, :, : r.shape[-2], : r.shape[-1]] = r
            maps.append(self.body(autocast_input(batch)))  # bf16 channels-last under autocast
            factors.append(torch.tensor(fs, dtype=torch.float32, device=images.tensors.device))
        return PyramidFeatures(maps, factors)


def choose_scales(boxes: torch.Tensor, factors: torch.Tensor, target_area: float = 224.0**2) -> torch.Tensor:
    """Index of the scale whose resized window area is closest to ``target_area``.

    Args:
        boxes: (R, 4) windows in original pixels.
        factors: (S,) resize factors of the window's image, one per scale.

    Returns:
        (R,) int64 scale indices (ties: the smaller scale).
    """
    area = ((boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0))
    scaled = area[:, None] * factors[None, :] ** 2
    return (scaled - target_area).abs().argmin(dim=1)


class MultiScaleSPP(nn.Module):
    """SPP pooling of each window at its chosen scale of a :class:`PyramidFeatures`.

    Args:
        levels: pyramid levels (default 6, 3, 2, 1).
        stride: input pixels per feature cell.
        target_area: the window area (in resized pixels) a scale should give (224²).
        offset: centre of feature cell 0 in resized pixels (the backbone's padding offset of the
            appendix's projection; ``receptive_field(backbone).offset``, 0 for the paper's padding).
    """

    def __init__(self, levels: Sequence[int] = SPP_LEVELS, stride: int = 16, target_area: float = 224.0**2,
                 offset: float = 0.0) -> None:
        super().__init__()
        self.spp = SpatialPyramidPool(levels, 1.0 / stride, offset)
        self.target_area = float(target_area)

    def output_dim(self, channels: int) -> int:
        return self.spp.output_dim(channels)

    def forward(self, features: PyramidFeatures | torch.Tensor, proposals: list[torch.Tensor],
                image_sizes: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """Args:
            features: the pyramid (a plain tensor is pooled as one scale).
            proposals: B tensors (R_i, 4) in original pixels.

        Returns:
            (R, D) in the order of ``proposals``.
        """
        if torch.is_tensor(features):
            return self.spp(features, proposals, image_sizes)
        channels = features.maps[0].shape[1]
        total = sum(len(p) for p in proposals)
        out = features.maps[0].new_zeros(total, self.output_dim(channels), dtype=torch.float32)
        offsets = [0]
        for p in proposals:
            offsets.append(offsets[-1] + len(p))
        factors = torch.stack(features.factors, dim=1)  # (B, S)
        choice = [choose_scales(p.float(), factors[i], self.target_area) for i, p in enumerate(proposals)]
        for s, fmap in enumerate(features.maps):
            boxes, rows = [], []
            for i, p in enumerate(proposals):
                pick = torch.nonzero(choice[i] == s).squeeze(1)
                boxes.append(p[pick].float() * factors[i, s])
                rows.append(pick + offsets[i])
            rows_s = torch.cat(rows)
            if rows_s.numel():
                out[rows_s] = self.spp(fmap, boxes).float()
        return out.to(features.dtype)
